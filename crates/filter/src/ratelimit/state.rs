//! The small state file that makes a restart neither lose nor re-count lines: where each
//! followed log directory was read up to, and the authenticated users' moving averages
//! (the hijack rule needs their history). Written atomically after every poll that read
//! something; lines it does not understand are ignored (the state is an optimisation of
//! correctness, never a reason not to start).
//!
//! On a clean stop (TERM) the window counts are written too, so that a restart carries on
//! counting where it was; they are read once at start and dropped from the file by the
//! next regular write.
//!
//! ```text
//! pos DEV INODE OFFSET DIR
//! base PERIOD COUNT SEEN AVERAGE USER
//! window SECONDS
//! count KIND LAST WARN BLOCK PARANOID HOLD SLOT:MSGS:RCPTS… KEY
//! ```
//!
//! (`WARN`…`HOLD`: when that level last fired, unix seconds, or `-`.)

use super::policy::{Baseline, Kind};
use super::window::{Saved, LEVELS};
use postern_common::atomic::write_atomic;
use postern_common::follow::Position;
use postern_common::{Result, ResultExt};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

/// The default state file, in the control directory.
pub const FILE: &str = "ratelimit.state";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub positions: HashMap<String, Position>,
    pub baselines: HashMap<String, Baseline>,
    /// The window the counts were kept for.
    pub window: Option<u64>,
    pub counts: Vec<(Kind, Saved)>,
}

fn parse_count(words: &[&str]) -> Option<(Kind, Saved)> {
    let (kind, rest) = words.split_first()?;
    let kind = Kind::from_name(kind)?;
    let (last, rest) = rest.split_first()?;
    let (key, rest) = rest.split_last()?;
    if rest.len() < LEVELS {
        return None;
    }
    let mut fired = [None; LEVELS];
    for (f, w) in fired.iter_mut().zip(&rest[..LEVELS]) {
        *f = match *w {
            "-" => None,
            n => Some(n.parse().ok()?),
        };
    }
    let mut slots = Vec::new();
    for w in &rest[LEVELS..] {
        let mut p = w.split(':');
        let (Some(s), Some(m), Some(r), None) = (p.next(), p.next(), p.next(), p.next()) else {
            return None;
        };
        slots.push((s.parse().ok()?, m.parse().ok()?, r.parse().ok()?));
    }
    Some((
        kind,
        Saved {
            key: key.to_string(),
            last: last.parse().ok()?,
            slots,
            fired,
        },
    ))
}

impl State {
    pub fn parse(text: &str) -> State {
        let mut state = State::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("pos ") {
                let mut w = rest.splitn(4, ' ');
                let (Some(dev), Some(ino), Some(offset), Some(dir)) =
                    (w.next(), w.next(), w.next(), w.next())
                else {
                    continue;
                };
                if let (Ok(dev), Ok(ino), Ok(offset)) = (dev.parse(), ino.parse(), offset.parse()) {
                    state
                        .positions
                        .insert(dir.to_string(), Position { dev, ino, offset });
                }
            } else if let Some(rest) = line.strip_prefix("window ") {
                state.window = rest.trim().parse().ok();
            } else if let Some(rest) = line.strip_prefix("count ") {
                let words: Vec<&str> = rest.split(' ').collect();
                if let Some(c) = parse_count(&words) {
                    state.counts.push(c);
                }
            } else if let Some(rest) = line.strip_prefix("base ") {
                let w: Vec<&str> = rest.split(' ').collect();
                if let [period, count, seen, average, user] = w.as_slice() {
                    if let (Ok(period), Ok(count), Ok(seen), Ok(average)) = (
                        period.parse(),
                        count.parse(),
                        seen.parse(),
                        average.parse::<f64>(),
                    ) {
                        if average.is_finite() && average >= 0.0 {
                            state.baselines.insert(
                                user.to_string(),
                                Baseline {
                                    period,
                                    count,
                                    average,
                                    seen,
                                },
                            );
                        }
                    }
                }
            }
        }
        state
    }

    pub fn render(&self) -> String {
        let mut out =
            String::from("# postern-ratelimit state: read positions and users' averages\n");
        let mut dirs: Vec<_> = self.positions.iter().collect();
        dirs.sort_by(|a, b| a.0.cmp(b.0));
        for (dir, p) in dirs {
            out.push_str(&format!("pos {} {} {} {}\n", p.dev, p.ino, p.offset, dir));
        }
        let mut users: Vec<_> = self.baselines.iter().collect();
        users.sort_by(|a, b| a.0.cmp(b.0));
        for (user, b) in users {
            out.push_str(&format!(
                "base {} {} {} {} {}\n",
                b.period, b.count, b.seen, b.average, user
            ));
        }
        if let (Some(window), false) = (self.window, self.counts.is_empty()) {
            out.push_str(&format!("window {window}\n"));
            for (kind, c) in &self.counts {
                out.push_str(&format!("count {} {}", kind.name(), c.last));
                for f in c.fired {
                    match f {
                        Some(t) => out.push_str(&format!(" {t}")),
                        None => out.push_str(" -"),
                    }
                }
                for (slot, m, r) in &c.slots {
                    out.push_str(&format!(" {slot}:{m}:{r}"));
                }
                out.push_str(&format!(" {}\n", c.key));
            }
        }
        out
    }

    /// Read the state; a missing file is a first start.
    pub fn load(path: &Path) -> Result<State> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(State::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(State::default()),
            Err(e) => Err(e).temp(format!("unable to read {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.render().as_bytes(), 0o600)
            .temp(format!("unable to write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_junk_is_ignored() {
        let mut s = State::default();
        s.positions.insert(
            "/var/postern/log/smtp d".into(),
            Position {
                dev: 2049,
                ino: 77,
                offset: 1234,
            },
        );
        s.baselines.insert(
            "alice@example.test".into(),
            Baseline {
                period: 480_000,
                count: 3,
                average: 4.25,
                seen: 30,
            },
        );
        let text = s.render();
        assert_eq!(State::parse(&text), s);
        let mut with_counts = s.clone();
        with_counts.window = Some(3600);
        with_counts.counts = vec![
            (
                Kind::Auth,
                Saved {
                    key: "alice@example.test".into(),
                    last: 1_700_000_000,
                    slots: vec![(28_333_332, 4, 9), (28_333_333, 1, 1)],
                    fired: [Some(1_699_999_000), None, None, Some(1_700_000_000)],
                },
            ),
            (
                Kind::Ip,
                Saved {
                    key: "192.0.2.1".into(),
                    last: 5,
                    slots: vec![],
                    fired: [None; LEVELS],
                },
            ),
        ];
        assert_eq!(State::parse(&with_counts.render()), with_counts);
        assert_eq!(
            State::parse("count sender 5 - - - 1:2:3 a@b\ncount bogus 1 - - - - k\n").counts,
            vec![],
            "too few marks, unknown kind"
        );
        let junk = format!("{text}pos x y z\nbase 1 2\nbase 1 2 3 NaN u\nwhatever\n");
        assert_eq!(State::parse(&junk), s);
    }
}
