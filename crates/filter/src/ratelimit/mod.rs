//! postern-ratelimit: follow the smtpd logs and limit how much mail one sender address,
//! one client IP or one authenticated user can push through in a sliding window — what
//! spamguard did for qmail, plus blocking and hijacked-account holds. See
//! docs/postern-ratelimit.md for the contract files it writes. The logs are read by
//! [`postern_common::follow`], across multilog's rotations.
//!
//! - [`accept`]: reading smtpd's `event=accept` lines.
//! - [`window`]: sliding-window counters, bounded.
//! - [`policy`]: `control/ratelimit`, thresholds, the hijack rule.
//! - [`ignore`]: the whitelist, `control/ratelimit.ignore`.
//! - [`blocklist`]: keeping `control/ratelimit.blocked` and `control/ratelimit.holdauth`.
//! - [`alerts`]: alert mails through postern-queue.
//! - [`state`]: read positions and users' averages kept across restarts.
//!
//! The loop: wait up to [`TICK`] on a signalfd (HUP rereads the control files, TERM and
//! INT save the state and exit 0), read every log directory, act on each accepted
//! message, expire what is due, save the state.

pub mod accept;
pub mod alerts;
pub mod blocklist;
pub mod ignore;
pub mod policy;
pub mod state;
pub mod window;

use ignore::Ignore;
use policy::{Baseline, Kind, Level, Settings};
use postern_common::atomic::write_atomic;
use postern_common::control::Control;
use postern_common::follow::Follower;
use postern_common::logline::LogLine;
use postern_common::{getopt, Error, Result, ResultExt};
use postern_wire::ratelimit_lists::{self, Entry, Layout};
use state::State;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use window::{Counts, Windows};

/// How often the logs are looked at (like `tail -F`, but four times a second).
pub const TICK: u16 = 250;
/// The file postern-send honours: hold non-priority inbound mail while it exists.
pub const HOLDBULK: &str = "holdbulk";
/// Most events one alert digest lists; past it they are counted ("and N more") and
/// logged, so a storm from thousands of addresses does not become a storm of alerts.
pub const MAX_DIGEST: usize = 100;
/// The key the storm trigger counts all unauthenticated messages under.
const TOTAL_KEY: &str = "all";
/// Seconds before a failed write of a list is tried again.
pub const RETRY: u64 = 5;
const USAGE: &str = "postern-ratelimit [-s statefile] [logdir ...]";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything that decides and acts, apart from reading the logs.
pub struct Engine {
    control: Control,
    settings: Settings,
    ignore: Ignore,
    windows: Vec<Windows>,
    baselines: HashMap<String, Baseline>,
    /// Soonest UNTIL in the blocked list, the hold list, and of holdbulk.
    next: [Option<u64>; 3],
    baselines_changed: bool,
    /// Alert events not mailed yet (subject, body), at most [`MAX_DIGEST`], and how many
    /// more were left out; mailed as one digest per `alertinterval`.
    digest: (Vec<(String, String)>, u64),
    /// When the last alert mail went out.
    last_alert: Option<u64>,
    /// All unauthenticated messages, for the storm trigger (`total`).
    total: Windows,
    /// Entries not written yet because the write failed; retried.
    pending: [Vec<Entry>; 2],
}

impl Engine {
    pub fn new(control: Control, settings: Settings, ignore: Ignore) -> Engine {
        let window = settings.window;
        let windows = Kind::ALL
            .iter()
            .map(|_| Windows::new(settings.window, settings.maxkeys as usize))
            .collect();
        Engine {
            control,
            settings,
            ignore,
            windows,
            baselines: HashMap::new(),
            next: [Some(0); 3],
            baselines_changed: false,
            digest: (Vec::new(), 0),
            last_alert: None,
            total: Windows::new(window, 1),
            pending: [Vec::new(), Vec::new()],
        }
    }

    /// Reread `control/ratelimit` and the ignore list; on error keep the old ones.
    pub fn reload(&mut self) {
        let loaded =
            Settings::load(&self.control).and_then(|s| Ignore::load(&self.control).map(|i| (s, i)));
        match loaded {
            Ok((settings, ignore)) => {
                if settings.window != self.settings.window
                    || settings.maxkeys != self.settings.maxkeys
                {
                    // New window or size: start counting afresh.
                    self.windows = Kind::ALL
                        .iter()
                        .map(|_| Windows::new(settings.window, settings.maxkeys as usize))
                        .collect();
                    self.total = Windows::new(settings.window, 1);
                }
                self.settings = settings;
                self.ignore = ignore;
                self.next = [Some(0); 3];
                LogLine::event("reload").emit();
            }
            Err(e) => LogLine::event("error")
                .kv("what", "reload")
                .kv("error", &e.msg)
                .emit(),
        }
    }

    /// Count one log line, acting on what it crosses.
    pub fn handle_line(&mut self, line: &str, now: u64) {
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

    /// Queue an alert event; [`Engine::flush_alerts`] mails the digest.
    fn alert(&mut self, subject: &str, body: &str, now: u64) {
        if self.digest.0.len() >= MAX_DIGEST {
            self.digest.1 += 1;
            LogLine::event("alert")
                .kv("subject", subject)
                .kv("suppressed", self.digest.1)
                .emit();
        } else {
            self.digest.0.push((subject.to_string(), body.to_string()));
        }
        self.flush_alerts(now);
    }

    /// Mail the queued alert events as one message, unless one went out less than
    /// `alertinterval` seconds ago (then they wait: at most one alert mail per interval,
    /// listing every event). The first event after a quiet interval goes out at once.
    pub fn flush_alerts(&mut self, now: u64) {
        if self.digest.0.is_empty() {
            return;
        }
        if self
            .last_alert
            .is_some_and(|last| now < last + self.settings.alertinterval)
        {
            return;
        }
        let (events, more) = std::mem::take(&mut self.digest);
        self.last_alert = Some(now);
        let (subject, body) = match (&events[..], more) {
            ([(subject, body)], 0) => (subject.clone(), body.clone()),
            _ => {
                let n = events.len() as u64 + more;
                let mut body = format!(
                    "{n} rate-limit events since the last alert (one mail per {} seconds at \
                     most, alertinterval in control/ratelimit):\n\n",
                    self.settings.alertinterval
                );
                for (subject, _) in &events {
                    body.push_str(&format!("- {subject}\n"));
                }
                if more > 0 {
                    body.push_str(&format!("- and {more} more (in postern-ratelimit's log)\n"));
                }
                for (subject, text) in &events {
                    body.push_str(&format!("\n== {subject}\n\n{text}"));
                }
                (format!("[postern] rate limit: {n} events"), body)
            }
        };
        let result = crate::scan::alert::recipient(&self.control).and_then(|to| {
            let me = self
                .control
                .value_or("me", &postern_common::control::system_hostname())?;
            Ok((to, me))
        });
        let sent = match result {
            Ok((to, me)) => {
                alerts::send(&to, &alerts::compose(&me, &to, &subject, &body)).map(|_| to)
            }
            Err(e) => Err(e.msg),
        };
        match sent {
            Ok(to) => LogLine::event("alert")
                .kv("to", to)
                .kv("subject", &subject)
                .kv("events", events.len() as u64 + more)
                .emit(),
            Err(why) => LogLine::event("error")
                .kv("what", "alert")
                .kv("subject", &subject)
                .kv("error", why)
                .emit(),
        }
    }

    fn list_path(&self, layout: Layout) -> PathBuf {
        match layout {
            Layout::Blocked => self.control.path(ratelimit_lists::BLOCKED),
            Layout::Hold => self.control.path(ratelimit_lists::HOLDAUTH),
        }
    }

    /// Add an entry to a list file (which also drops what expired).
    fn add_entry(&mut self, layout: Layout, kind: Kind, key: &str, until: u64, now: u64) {
        let entry = Entry {
            kind: match layout {
                Layout::Blocked => kind.name().to_string(),
                Layout::Hold => String::new(),
            },
            key: key.to_string(),
            until,
        };
        self.update_list(layout, &[entry], now);
    }

    fn update_list(&mut self, layout: Layout, add: &[Entry], now: u64) {
        let path = self.list_path(layout);
        let mut add_all = std::mem::take(&mut self.pending[layout as usize]);
        add_all.extend_from_slice(add);
        match blocklist::update(&path, layout, &add_all, now) {
            Ok(u) => {
                self.next[layout as usize] = u.next;
                for e in u.expired {
                    let (kind, level) = match layout {
                        Layout::Blocked => (e.kind.as_str(), Level::Block),
                        Layout::Hold => ("auth", Level::Hold),
                    };
                    if let Some(k) = Kind::from_name(kind) {
                        // Blocked again if it goes on sending while still over.
                        self.windows[k.index()].reset_level(&e.key, level.index());
                    }
                    LogLine::event("ratelimit")
                        .kv("kind", kind)
                        .kv("key", &e.key)
                        .kv("action", "expire")
                        .kv(
                            "list",
                            if layout == Layout::Blocked {
                                "blocked"
                            } else {
                                "holdauth"
                            },
                        )
                        .kv("until", e.until)
                        .emit();
                }
                for bad in u.bad {
                    LogLine::event("error")
                        .kv("what", "badline")
                        .kv("file", path.display())
                        .kv("line", bad)
                        .emit();
                }
            }
            Err(e) => {
                // Keep what was to be added and try again shortly.
                add_all.truncate(blocklist::MAX_ENTRIES);
                self.pending[layout as usize] = add_all;
                self.next[layout as usize] = Some(now + RETRY);
                LogLine::event("error")
                    .kv("what", "write")
                    .kv("error", &e.msg)
                    .emit();
            }
        }
    }

    fn set_holdbulk_for(&mut self, kind: &str, key: &str, until: u64) {
        let path = self.control.path(HOLDBULK);
        let until = until.max(read_holdbulk(&path).unwrap_or(0));
        let text = format!(
            "{until}\n# postern-ratelimit: {kind} {key} went paranoid; postern-send holds non-priority inbound mail until then\n"
        );
        match write_atomic(&path, text.as_bytes(), blocklist::MODE) {
            Ok(()) => {
                self.next[2] = Some(until);
                LogLine::event("holdbulk")
                    .kv("action", "set")
                    .kv("until", until)
                    .emit();
            }
            Err(e) => LogLine::event("error")
                .kv("what", "write")
                .kv(
                    "error",
                    format!("unable to write {}: {}", path.display(), e),
                )
                .emit(),
        }
    }

    /// Drop whatever expired by `now` from the lists and holdbulk.
    pub fn expire(&mut self, now: u64) {
        for layout in [Layout::Blocked, Layout::Hold] {
            if self.next[layout as usize].is_some_and(|t| t <= now) {
                self.update_list(layout, &[], now);
            }
        }
        if self.next[2].is_some_and(|t| t <= now) {
            let path = self.control.path(HOLDBULK);
            self.next[2] = match read_holdbulk(&path) {
                Some(until) if until <= now => {
                    match fs::remove_file(&path) {
                        Ok(()) => LogLine::event("holdbulk")
                            .kv("action", "expire")
                            .kv("until", until)
                            .emit(),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => LogLine::event("error")
                            .kv("what", "write")
                            .kv("error", format!("unable to remove {}: {e}", path.display()))
                            .emit(),
                    }
                    None
                }
                Some(until) => Some(until),
                None => None,
            };
        }
    }
}

/// The UNTIL on holdbulk's first line, if the file exists and has one.
fn read_holdbulk(path: &std::path::Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let first = postern_common::control::parse_lines(&text)
        .into_iter()
        .next()?;
    first.text.split_whitespace().next()?.parse().ok()
}

/// Block the signals we read through the signalfd.
fn signals() -> Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    mask.thread_block().temp("unable to block signals")?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .temp("unable to create a signalfd")
}

/// postern-ratelimit's main.
pub fn main() -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let (opts, args) = getopt::parse(&getopt::args(), "s:", USAGE)?;
    let home = postern_common::home::postern_home();
    let control = Control::for_home(&home);
    let mut state_path = control.path(state::FILE);
    for o in &opts {
        if o.letter == 's' {
            state_path = PathBuf::from(o.arg.clone().unwrap_or_default());
        }
    }
    let dirs: Vec<PathBuf> = if args.is_empty() {
        vec![home.join("log/smtpd"), home.join("log/submission")]
    } else {
        args.into_iter().map(PathBuf::from).collect()
    };
    let mut labels: Vec<String> = Vec::new();
    for d in &dirs {
        match d.to_str() {
            Some(s) if !s.contains('\n') && !s.is_empty() => {
                if labels.iter().any(|l| l == s) {
                    // The same log twice would count every line twice.
                    return Err(Error::usage(USAGE));
                }
                labels.push(s.to_string());
            }
            _ => return Err(Error::usage(USAGE)),
        }
    }
    let settings = Settings::load(&control)?;
    let ignore = Ignore::load(&control)?;
    let sfd = signals()?;
    let mut st = State::load(&state_path)?;
    let mut followers: Vec<(String, Follower)> = dirs
        .iter()
        .zip(&labels)
        .map(|(d, l)| (l.clone(), Follower::new(d, st.positions.get(l).copied())))
        .collect();
    let mut engine = Engine::new(control, settings, ignore);
    engine.baselines = std::mem::take(&mut st.baselines);
    if st.window == Some(engine.settings.window) {
        for (kind, saved) in std::mem::take(&mut st.counts) {
            engine.windows[kind.index()].restore(saved);
        }
    }
    st.window = None;
    st.counts.clear();
    LogLine::event("start")
        .kv("dirs", labels.join(","))
        .kv("window", engine.settings.window)
        .emit();
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(TICK)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::temp(format!("unable to poll: {}", e.desc()))),
            }
        }
        let mut stop = false;
        while let Ok(Some(info)) = sfd.read_signal() {
            match info.ssi_signo as i32 {
                libc::SIGHUP => engine.reload(),
                _ => stop = true,
            }
        }
        let t = now();
        for (label, f) in followers.iter_mut() {
            if let Err(e) = f.poll(&mut |line| engine.handle_line(line, t)) {
                LogLine::event("error")
                    .kv("what", "read")
                    .kv("dir", label.as_str())
                    .kv("error", &e.msg)
                    .emit();
            }
        }
        engine.expire(t);
        engine.flush_alerts(t);
        let mut changed = std::mem::take(&mut engine.baselines_changed);
        for (label, f) in &followers {
            if let Some(p) = f.position() {
                if st.positions.get(label) != Some(&p) {
                    st.positions.insert(label.clone(), p);
                    changed = true;
                }
            }
        }
        if stop {
            // Keep the counts, so that a restart carries on where we were.
            st.window = Some(engine.settings.window);
            st.counts = Kind::ALL
                .iter()
                .flat_map(|k| {
                    engine.windows[k.index()]
                        .save()
                        .into_iter()
                        .map(|c| (*k, c))
                })
                .collect();
        }
        if changed || stop {
            st.baselines = engine.baselines.clone();
            if let Err(e) = st.save(&state_path) {
                LogLine::event("error")
                    .kv("what", "state")
                    .kv("error", &e.msg)
                    .emit();
            }
        }
        if stop {
            LogLine::event("stop").emit();
            return Ok(());
        }
    }
}
