//! `control/ratelimit`: the window, the thresholds per kind of key, and the decisions
//! they lead to (pure: no I/O beyond reading the file through [`Control`]).
//!
//! ```text
//! window 3600
//! cooldown 3600
//! sender warn 200 block 500 paranoid 2000
//! sender rcpts warn 1000 block 2500 paranoid 10000
//! auth warn 100 block 300 paranoid 1000
//! hijack factor 10 min 100 learn 24
//! holdbulk yes
//! ```
//!
//! A threshold is crossed when the count is **more than** it; 0 turns a level off.

use postern_common::control::{Control, Line};
use postern_common::logline::printable;
use postern_common::{Error, Result};

/// The settings file.
pub const FILE: &str = "ratelimit";

/// Most keys tracked per kind by default.
pub const DEFAULT_MAXKEYS: u64 = 50_000;
/// Never track fewer keys than this, whatever the file says.
pub const MIN_MAXKEYS: u64 = 100;
/// Most keys tracked per kind, whatever the file says (about 100 MB at worst).
pub const MAX_MAXKEYS: u64 = 1_000_000;
/// Default seconds between two alert mails (the digest interval).
pub const DEFAULT_ALERT_INTERVAL: u64 = 300;
/// Longest window or cooldown accepted: a week.
pub const MAX_SECONDS: u64 = 7 * 86_400;

/// What a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sender,
    Ip,
    Auth,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Sender, Kind::Ip, Kind::Auth];

    /// The word used in control files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sender => "sender",
            Kind::Ip => "ip",
            Kind::Auth => "auth",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What happens to a key; the number is its slot in the window's "fired" marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warn = 0,
    Block = 1,
    Paranoid = 2,
    /// Outbound mail of an authenticated user held (a hijacked account).
    Hold = 3,
}

impl Level {
    /// The `action=` word in the log.
    pub fn name(self) -> &'static str {
        match self {
            Level::Warn => "warn",
            Level::Block => "block",
            Level::Paranoid => "paranoid",
            Level::Hold => "hold",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The three thresholds for one measure; 0 = off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub warn: u64,
    pub block: u64,
    pub paranoid: u64,
}

impl Levels {
    const fn new(warn: u64, block: u64, paranoid: u64) -> Levels {
        Levels {
            warn,
            block,
            paranoid,
        }
    }

    /// The highest level `count` is over.
    pub fn reached(&self, count: u64) -> Option<Level> {
        let over = |t: u64| t > 0 && count > t;
        if over(self.paranoid) {
            Some(Level::Paranoid)
        } else if over(self.block) {
            Some(Level::Block)
        } else if over(self.warn) {
            Some(Level::Warn)
        } else {
            None
        }
    }
}

/// Thresholds for one kind of key: on messages and on recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub msgs: Levels,
    pub rcpts: Levels,
}

/// The "hijacked account" rule for authenticated users, besides `auth block`: more than
/// `min` messages in the window **and** more than `factor` times the user's own moving
/// average per window, once `learn` windows of history are known. `factor 0` = off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hijack {
    pub factor: u64,
    pub min: u64,
    pub learn: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Seconds counted.
    pub window: u64,
    /// Seconds a block lasts.
    pub cooldown: u64,
    /// Seconds a hijacked account's outbound mail is held.
    pub holdtime: u64,
    /// Keys tracked per kind.
    pub maxkeys: u64,
    /// Write `control/holdbulk` when a key goes paranoid.
    pub holdbulk: bool,
    /// The storm trigger: more than this many unauthenticated messages accepted in the
    /// window, over all senders together, writes `control/holdbulk` and alerts (0 = off).
    pub total: u64,
    /// Seconds between alert mails: the events of an interval go out as one digest.
    pub alertinterval: u64,
    pub limits: [Limits; 3],
    pub hijack: Hijack,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: 3600,
            cooldown: 3600,
            holdtime: 86_400,
            maxkeys: DEFAULT_MAXKEYS,
            holdbulk: false,
            total: 0,
            alertinterval: DEFAULT_ALERT_INTERVAL,
            limits: [
                Limits {
                    msgs: Levels::new(200, 500, 2000),
                    rcpts: Levels::new(1000, 2500, 10_000),
                },
                Limits {
                    msgs: Levels::new(500, 1500, 5000),
                    rcpts: Levels::new(2500, 7500, 25_000),
                },
                Limits {
                    msgs: Levels::new(100, 300, 1000),
                    rcpts: Levels::new(500, 1500, 5000),
                },
            ],
            hijack: Hijack {
                factor: 10,
                min: 100,
                learn: 24,
            },
        }
    }
}

impl Settings {
    /// Read `control/ratelimit`; missing = the defaults. A bad line is an error naming
    /// the file and line.
    pub fn load(control: &Control) -> Result<Settings> {
        let mut s = Settings::default();
        for line in control.list(FILE)? {
            s.apply(&line).map_err(|why| {
                Error::temp(format!(
                    "control/{FILE}:{}: {why}: {}",
                    line.number,
                    printable(&line.text)
                ))
            })?;
        }
        Ok(s)
    }

    pub fn limits(&self, kind: Kind) -> &Limits {
        &self.limits[kind.index()]
    }

    fn apply(&mut self, line: &Line) -> std::result::Result<(), &'static str> {
        let words: Vec<&str> = line.text.split_whitespace().collect();
        let (name, rest) = words.split_first().ok_or("empty line")?;
        let seconds = |rest: &[&str]| -> std::result::Result<u64, &'static str> {
            match rest {
                [n] => match n.parse::<u64>() {
                    Ok(v) if (1..=MAX_SECONDS).contains(&v) => Ok(v),
                    _ => Err("needs a number of seconds from 1 to 604800"),
                },
                _ => Err("needs one number of seconds"),
            }
        };
        match *name {
            "window" => self.window = seconds(rest)?,
            "cooldown" => self.cooldown = seconds(rest)?,
            "holdtime" => self.holdtime = seconds(rest)?,
            // 0: no digest; postern-scan mails each refusal itself (and the rate
            // limiter each of its events at once, as with any interval after a quiet one).
            "alertinterval" => {
                self.alertinterval = match rest {
                    ["0"] => 0,
                    _ => seconds(rest)?,
                }
            }
            "total" => match rest {
                [n] => self.total = n.parse().map_err(|_| "total needs a number")?,
                _ => return Err("total needs one number (0 = off)"),
            },
            "maxkeys" => match rest {
                [n] => {
                    let v: u64 = n.parse().map_err(|_| "maxkeys needs a number")?;
                    self.maxkeys = v.clamp(MIN_MAXKEYS, MAX_MAXKEYS);
                }
                _ => return Err("maxkeys needs one number"),
            },
            "holdbulk" => {
                self.holdbulk = match rest {
                    [] => true,
                    [w] => match w.to_ascii_lowercase().as_str() {
                        "yes" | "1" | "on" | "true" => true,
                        "no" | "0" | "off" | "false" => false,
                        _ => return Err("holdbulk needs yes or no"),
                    },
                    _ => return Err("holdbulk needs yes or no"),
                }
            }
            "hijack" => {
                for (word, value) in pairs(rest)? {
                    match word {
                        "factor" => self.hijack.factor = value,
                        "min" => self.hijack.min = value,
                        "learn" => self.hijack.learn = value,
                        _ => return Err("hijack takes factor, min and learn"),
                    }
                }
            }
            kind => {
                let kind = Kind::from_name(kind).ok_or("unknown setting")?;
                let limits = &mut self.limits[kind.index()];
                let (levels, rest) = match rest.split_first() {
                    Some((&"rcpts", r)) => (&mut limits.rcpts, r),
                    Some((&"msgs", r)) => (&mut limits.msgs, r),
                    _ => (&mut limits.msgs, rest),
                };
                for (word, value) in pairs(rest)? {
                    match word {
                        "warn" => levels.warn = value,
                        "block" => levels.block = value,
                        "paranoid" => levels.paranoid = value,
                        _ => return Err("thresholds are warn, block and paranoid"),
                    }
                }
            }
        }
        Ok(())
    }
}

/// `word number word number …`.
fn pairs<'a>(words: &[&'a str]) -> std::result::Result<Vec<(&'a str, u64)>, &'static str> {
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err("needs NAME NUMBER pairs");
    }
    words
        .chunks(2)
        .map(|c| {
            c[1].parse::<u64>()
                .map(|v| (c[0], v))
                .map_err(|_| "not a whole number")
        })
        .collect()
}

/// The levels a key with `msgs` messages and `rcpts` recipients in the window is over,
/// lowest first (a level set to 0 is never over). For authenticated users, crossing
/// `block` also holds their outbound mail.
pub fn decide(kind: Kind, limits: &Limits, msgs: u64, rcpts: u64) -> Vec<Level> {
    let over = |t: u64, count: u64| t > 0 && count > t;
    let (m, r) = (&limits.msgs, &limits.rcpts);
    let crossed = [
        over(m.warn, msgs) || over(r.warn, rcpts),
        over(m.block, msgs) || over(r.block, rcpts),
        over(m.paranoid, msgs) || over(r.paranoid, rcpts),
    ];
    let mut levels: Vec<Level> = [Level::Warn, Level::Block, Level::Paranoid]
        .into_iter()
        .zip(crossed)
        .filter_map(|(l, c)| c.then_some(l))
        .collect();
    if kind == Kind::Auth && crossed[1] {
        levels.push(Level::Hold);
    }
    levels
}

/// One authenticated user's sending history: an exponential moving average of messages
/// per window, fed lazily as windows go by (`alpha = 2 / (learn + 1)`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Baseline {
    /// The window (`t / window`) being counted.
    pub period: u64,
    /// Messages in that window so far.
    pub count: u64,
    /// Average messages per window before it.
    pub average: f64,
    /// Windows of history folded into the average.
    pub seen: u64,
}

/// Empty windows folded in one go at most (the average is 0 long before this).
const MAX_GAP: u64 = 10_000;

impl Baseline {
    /// Count one message at `t`.
    pub fn observe(&mut self, t: u64, window: u64, learn: u64) {
        let period = t / window.max(1);
        if self.seen == 0 && self.count == 0 {
            self.period = period;
        }
        if period > self.period {
            let alpha = 2.0 / (learn.max(1) as f64 + 1.0);
            self.average = alpha * self.count as f64 + (1.0 - alpha) * self.average;
            let gap = (period - self.period - 1).min(MAX_GAP);
            self.average *= (1.0 - alpha).powi(gap as i32);
            self.seen = self.seen.saturating_add(period - self.period);
            self.period = period;
            self.count = 0;
        }
        if period == self.period {
            self.count += 1;
        }
    }

    /// Whether `msgs` in the window is far above this user's normal rate.
    pub fn hijacked(&self, msgs: u64, rule: &Hijack) -> bool {
        rule.factor > 0
            && self.seen >= rule.learn
            && msgs > rule.min
            && msgs as f64 > rule.factor as f64 * self.average
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn load(text: &str) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), text).unwrap();
        Settings::load(&Control::at(dir.path()))
    }

    #[test]
    fn defaults_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(&Control::at(dir.path())).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.window, 3600);
        assert_eq!(s.limits(Kind::Sender).msgs, Levels::new(200, 500, 2000));
    }

    #[test]
    fn reads_every_setting() {
        let s = load(
            "# test\nwindow 60\ncooldown 5\nholdtime 30\nmaxkeys 10\nholdbulk yes\n\
             sender warn 2 block 4 paranoid 8\nip rcpts block 9\nauth msgs paranoid 0\n\
             hijack factor 3 min 7 learn 2\n",
        )
        .unwrap();
        assert_eq!((s.window, s.cooldown, s.holdtime), (60, 5, 30));
        assert_eq!(s.maxkeys, MIN_MAXKEYS, "clamped");
        assert!(s.holdbulk);
        assert_eq!(s.limits(Kind::Sender).msgs, Levels::new(2, 4, 8));
        assert_eq!(s.limits(Kind::Ip).rcpts, Levels::new(2500, 9, 25_000));
        assert_eq!(s.limits(Kind::Auth).msgs.paranoid, 0);
        assert_eq!(
            s.hijack,
            Hijack {
                factor: 3,
                min: 7,
                learn: 2
            }
        );
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, want) in [
            (
                "window 0\n",
                "control/ratelimit:1: needs a number of seconds",
            ),
            (
                "\nsender warn x\n",
                "control/ratelimit:2: not a whole number",
            ),
            (
                "sender warn\n",
                "control/ratelimit:1: needs NAME NUMBER pairs",
            ),
            (
                "frobnicate 3\n",
                "control/ratelimit:1: unknown setting: frobnicate 3",
            ),
            ("ip stop 3\n", "control/ratelimit:1: thresholds are warn"),
            (
                "holdbulk maybe\n",
                "control/ratelimit:1: holdbulk needs yes or no",
            ),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.msg.starts_with(want), "{text:?}: {}", err.msg);
        }
    }

    #[test]
    fn levels_are_crossed_when_over() {
        let l = Levels::new(2, 4, 0);
        assert_eq!(l.reached(2), None);
        assert_eq!(l.reached(3), Some(Level::Warn));
        assert_eq!(l.reached(5), Some(Level::Block));
        assert_eq!(l.reached(1_000_000), Some(Level::Block), "paranoid off");
    }

    #[test]
    fn decisions_include_every_lower_level() {
        let limits = Limits {
            msgs: Levels::new(2, 4, 8),
            rcpts: Levels::new(10, 20, 0),
        };
        assert_eq!(decide(Kind::Sender, &limits, 1, 1), vec![]);
        assert_eq!(
            decide(Kind::Sender, &limits, 9, 1),
            vec![Level::Warn, Level::Block, Level::Paranoid]
        );
        assert_eq!(
            decide(Kind::Ip, &limits, 1, 21),
            vec![Level::Warn, Level::Block],
            "recipients count too"
        );
        assert_eq!(
            decide(Kind::Auth, &limits, 5, 1),
            vec![Level::Warn, Level::Block, Level::Hold]
        );
        assert_eq!(decide(Kind::Auth, &limits, 3, 1), vec![Level::Warn]);
        let paranoid_only = Limits {
            msgs: Levels::new(0, 0, 3),
            rcpts: Levels::new(0, 0, 0),
        };
        assert_eq!(
            decide(Kind::Ip, &paranoid_only, 4, 4),
            vec![Level::Paranoid],
            "a level that is off is never taken"
        );
    }

    #[test]
    fn the_moving_average_learns_a_users_normal_rate() {
        let rule = Hijack {
            factor: 10,
            min: 20,
            learn: 4,
        };
        let window = 100;
        let mut b = Baseline::default();
        // Five windows of 5 messages each.
        for p in 0..5u64 {
            for i in 0..5 {
                b.observe(1_000 + p * window + i, window, rule.learn);
            }
        }
        assert_eq!(b.seen, 4);
        assert!(b.average > 4.0 && b.average < 5.0, "{}", b.average);
        assert!(!b.hijacked(30, &rule), "30 is not 10x their 5 an hour");
        assert!(b.hijacked(60, &rule));
        // Before enough history, only `auth block` applies.
        let mut young = Baseline::default();
        young.observe(1_000, window, rule.learn);
        assert!(!young.hijacked(1_000, &rule));
        // A long silence decays the average; min still guards small bursts.
        b.observe(1_000 + 100 * window, window, rule.learn);
        assert!(b.average < 0.01);
        assert!(!b.hijacked(20, &rule));
        assert!(b.hijacked(21, &rule));
        assert!(!b.hijacked(1_000, &Hijack { factor: 0, ..rule }));
    }
}
