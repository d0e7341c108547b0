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
//! - [`quarantined`]: postern-scan's refusals (`event=quarantine`) as alert events.
//! - [`state`]: read positions and users' averages kept across restarts.
//!
//! The loop: wait up to [`TICK`] on a signalfd (HUP rereads the control files, TERM and
//! INT save the state and exit 0), read every log directory, act on each accepted
//! message, expire what is due, save the state.
//!
//! This module keeps [`Engine`]'s state and the loop; acting on one accepted message is
//! in `counting`, the alert digest in `digest`, writing and expiring the lists and
//! holdbulk in `lists`.

pub mod accept;
pub mod alerts;
pub mod blocklist;
pub mod ignore;
pub mod policy;
pub mod quarantined;
pub mod state;
pub mod window;

mod counting;
mod digest;
mod lists;

use ignore::Ignore;
use policy::{Baseline, Kind, Settings};
use postern_common::control::Control;
use postern_common::follow::Follower;
use postern_common::logline::LogLine;
use postern_common::{getopt, Error, Result, ResultExt};
use postern_wire::ratelimit_lists::Entry;
use state::State;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use window::Windows;

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
