//! Counting one accepted message (from smtpd's `event=accept` line; postern-scan's
//! `event=quarantine` lines become alert events, [`super::quarantined`]) against the
//! sender's, the client's and the user's windows and the storm trigger, and acting on
//! the level it crosses: warn, block, the paranoid hold of everything, hold the user.

use super::policy::{self, Kind, Level};
use super::window::Counts;
use super::{accept, Engine, TOTAL_KEY};
use postern_common::logline::LogLine;
use postern_wire::ratelimit_lists::{self, Layout};

impl Engine {
    /// Count one log line, acting on what it crosses.
    pub fn handle_line(&mut self, line: &str, now: u64) {
        // postern-scan's refusals go out as alert events, in the same digest — unless
        // alertinterval is 0, when postern-scan mails each one itself.
        if let Some((subject, text)) = super::quarantined::alert(line) {
            if self.settings.alertinterval > 0 {
                self.alert(&subject, &text, now);
            }
            return;
        }
        let Some(a) = accept::parse_accept(line) else {
            return;
        };
        let t = a.stamp.map_or(now, |s| s.min(now));
        if a.auth.is_none() {
            self.count_total(t, a.rcpts, now);
        }
        for kind in Kind::ALL {
            // Senders count with the client's network, and only when nobody logged in
            // (a login counts as itself): a forged sender cannot get its owner blocked
            // from everywhere (postern_wire::ratelimit_lists::keys).
            let key = match kind {
                Kind::Sender if a.auth.is_some() => None,
                Kind::Sender => a.sender.as_deref().map(|s| {
                    ratelimit_lists::keys::sender_key(s, a.ip.as_deref().unwrap_or_default())
                }),
                Kind::Ip => a.ip.clone(),
                Kind::Auth => a.auth.clone(),
            };
            let Some(key) = key.as_deref() else { continue };
            let ignored = match kind {
                Kind::Sender => a.sender.as_deref().is_some_and(|s| self.ignore.sender(s)),
                Kind::Ip => self.ignore.ip(key),
                Kind::Auth => self.ignore.auth(key),
            };
            if ignored {
                continue;
            }
            let counts = self.windows[kind.index()].add(key, t, 1, a.rcpts);
            let mut levels =
                policy::decide(kind, self.settings.limits(kind), counts.msgs, counts.rcpts);
            if kind == Kind::Auth && self.hijacked(key, t, counts.msgs) {
                for l in [Level::Block, Level::Hold] {
                    if !levels.contains(&l) {
                        levels.push(l);
                    }
                }
            }
            for level in levels {
                if self.windows[kind.index()].fire(key, level.index(), t) {
                    self.act(kind, key, level, counts, now);
                }
            }
        }
    }

    /// The storm trigger: all unauthenticated mail together, over `total` in the window,
    /// holds non-priority inbound mail (control/holdbulk) and alerts — a storm spread
    /// over thousands of senders and networks trips no per-key limit.
    fn count_total(&mut self, t: u64, rcpts: u32, now: u64) {
        let limit = self.settings.total;
        if limit == 0 {
            return;
        }
        let counts = self.total.add(TOTAL_KEY, t, 1, rcpts);
        let paranoid = Level::Paranoid.index();
        if counts.msgs <= limit || !self.total.fire(TOTAL_KEY, paranoid, t) {
            return;
        }
        let until = now + self.settings.cooldown;
        self.set_holdbulk_for("total", TOTAL_KEY, until);
        LogLine::event("ratelimit")
            .kv("kind", "total")
            .kv("key", TOTAL_KEY)
            .kv("count", counts.msgs)
            .kv("rcpts", counts.rcpts)
            .kv("window", self.settings.window)
            .kv("action", "holdbulk")
            .kv("until", until)
            .emit();
        self.alert(
            "[postern] STORM: inbound mail held",
            &format!(
                "{} messages to {} recipients were accepted from unauthenticated senders in the \
                 last {} seconds (the trigger is {limit}, `total` in control/ratelimit).\n\n\
                 control/holdbulk was written: postern-send holds all non-priority inbound mail\n\
                 until {until} (unix time). Delete control/holdbulk to release it sooner.\n",
                counts.msgs, counts.rcpts, self.settings.window
            ),
            now,
        );
    }

    /// Feed the user's moving average; whether this message makes them look hijacked.
    fn hijacked(&mut self, user: &str, t: u64, msgs: u64) -> bool {
        let cap = self.settings.maxkeys as usize;
        if !self.baselines.contains_key(user) && self.baselines.len() >= cap {
            if let Some(oldest) = self
                .baselines
                .iter()
                .min_by_key(|(_, b)| b.period)
                .map(|(k, _)| k.clone())
            {
                self.baselines.remove(&oldest);
            }
        }
        let rule = self.settings.hijack;
        let b = self.baselines.entry(user.to_string()).or_default();
        b.observe(t, self.settings.window, rule.learn);
        self.baselines_changed = true;
        b.hijacked(msgs, &rule)
    }

    fn log(&self, kind: Kind, key: &str, counts: Counts, action: &str) -> LogLine {
        LogLine::event("ratelimit")
            .kv("kind", kind.name())
            .kv("key", key)
            .kv("count", counts.msgs)
            .kv("rcpts", counts.rcpts)
            .kv("window", self.settings.window)
            .kv("action", action)
    }

    fn act(&mut self, kind: Kind, key: &str, level: Level, counts: Counts, now: u64) {
        let s = self.settings.clone();
        let what = format!(
            "{} {} sent {} messages to {} recipients in the last {} seconds",
            kind.name(),
            key,
            counts.msgs,
            counts.rcpts,
            s.window
        );
        let limits = s.limits(kind);
        let thresholds = format!(
            "Thresholds for {} (messages / recipients): warn {} / {}, block {} / {}, paranoid {} / {}.",
            kind.name(),
            limits.msgs.warn,
            limits.rcpts.warn,
            limits.msgs.block,
            limits.rcpts.block,
            limits.msgs.paranoid,
            limits.rcpts.paranoid
        );
        let (subject, body) = match level {
            Level::Warn => {
                self.log(kind, key, counts, "warn").emit();
                (
                    format!("[postern] rate limit warning: {} {}", kind.name(), key),
                    format!("{what}.\n\n{thresholds}\nNothing was blocked yet.\n"),
                )
            }
            Level::Block => {
                let until = now + s.cooldown;
                self.add_entry(Layout::Blocked, kind, key, until, now);
                self.log(kind, key, counts, "block")
                    .kv("until", until)
                    .emit();
                (
                    format!("[postern] rate limit: {} {} blocked", kind.name(), key),
                    format!(
                        "{what}.\n\n{thresholds}\n\npostern-smtpd now answers its MAIL commands with 451 until {until}\n\
                         (unix time; {cooldown} seconds from now). To lift the block, delete the line\n\
                         \"{kind} {key} {until}\" from control/ratelimit.blocked.\n",
                        kind = kind.name(),
                        cooldown = s.cooldown
                    ),
                )
            }
            Level::Paranoid => {
                let mut body =
                    format!("{what}.\n\n{thresholds}\n\nThis is far beyond the block threshold.\n");
                if s.holdbulk {
                    let until = now + s.cooldown;
                    self.set_holdbulk_for(kind.name(), key, until);
                    body.push_str(&format!(
                        "control/holdbulk was written: postern-send holds all non-priority inbound mail\n\
                         until {until} (unix time). Delete control/holdbulk to release it sooner.\n"
                    ));
                }
                self.log(kind, key, counts, "paranoid").emit();
                (format!("[postern] PARANOID: {} {}", kind.name(), key), body)
            }
            Level::Hold => {
                let until = now + s.holdtime;
                self.add_entry(Layout::Hold, kind, key, until, now);
                self.log(kind, key, counts, "hold")
                    .kv("until", until)
                    .emit();
                (
                    format!("[postern] HIJACKED? account {key}: outbound mail held"),
                    format!(
                        "The authenticated user {key} sent {} messages to {} recipients in the last {} seconds,\n\
                         far above their normal rate: the password may be stolen.\n\n{thresholds}\n\n\
                         - smtpd refuses further mail from {key} (control/ratelimit.blocked).\n\
                         - postern-send holds {key}'s queued outbound mail until {until} (unix time)\n\
                           (control/ratelimit.holdauth).\n\n\
                         Check the account, change its password, then delete its lines from both files\n\
                         to release the mail, or remove the held messages from the queue.\n",
                        counts.msgs, counts.rcpts, s.window
                    ),
                )
            }
        };
        self.alert(&subject, &body, now);
    }
}
