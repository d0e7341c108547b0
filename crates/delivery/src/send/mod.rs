//! postern-send: the scheduler (docs/postern-send.md, docs/queue.md).
//!
//! One thread runs the schedule; helper threads only turn outside happenings into
//! [`Event`]s on one channel: the trigger FIFO, signals (through a signalfd, so no
//! signal handler and no unsafe code), and finished deliveries.
//!
//! - [`config`] — control files; [`state`] — the state file and the retry schedule.
//! - [`hold`] — the rate limiter's holds (`holdbulk`, `ratelimit.holdauth`): held
//!   messages are *parked* out of the schedule until their hold is over.
//! - [`schedule`] — the in-memory priority lane and bulk heap.
//! - [`takeover`] — the queue directories, takeover, recovery.
//! - [`jobs`] — running postern-local / postern-remote; [`bounce`] — QSBMF bounces.

pub mod bounce;
pub mod config;
pub mod hold;
pub mod jobs;
pub mod schedule;
pub mod state;
pub mod takeover;

use config::Config;
use jobs::{Job, Programs};
use postern_common::control::Control;
use postern_common::logline::LogLine;
use postern_common::{Error, Result, ResultExt};
use schedule::Schedule;
use state::{Channel, State, Status};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;
use takeover::Queue;

/// new/ and ctl/ are rescanned this often even without a trigger (qmail: 25 minutes).
pub const RESCAN_SECS: u64 = 1500;
/// tmp/ is cleaned this often (qmail: about 21 hours).
pub const CLEANUP_SECS: u64 = 76_431;
/// A message whose bounce could not be queued, or whose state could not be read,
/// is retried after this long (qmail waits 123 s after a system error).
pub const TROUBLE_RETRY_SECS: u64 = 123;
/// Most initial states kept in memory between the takeover and the first attempt of
/// messages that have no state file (the others are rebuilt from their headers).
pub const MAX_FRESH: usize = 10_000;
/// Admin requests handled per pass.
pub const MAX_CTL: usize = 1000;
/// Message bytes read for a bounce (the copy itself is cut at bounce::MAX_COPY).
pub const MAX_BOUNCE_READ: u64 = 4 * 1024 * 1024;
const TEMP_EXPIRED: &str =
    "I'm not going to try again; this message has been in the queue too long.";

/// What wakes the scheduler.
pub enum Event {
    Trigger,
    Signal(i32),
    Done {
        job: Job,
        results: Vec<(u8, String)>,
    },
}

struct Active {
    state: State,
    /// Jobs still running or waiting, per channel.
    outstanding: [usize; 2],
    delete: bool,
}

/// A message kept out of the schedule by a hold of the rate limiter.
struct Parked {
    /// The channels it was due on when parked (where it goes back).
    channels: [bool; 2],
    priority: bool,
    reason: hold::Reason,
    /// Its submitter (for holdauth).
    user: String,
}

struct Scheduler {
    home: PathBuf,
    q: Queue,
    control: Control,
    cfg: Config,
    progs: Programs,
    /// One schedule per channel, as qmail-send's local and remote channels: a flood on
    /// one never holds up the other.
    sched: [Schedule; 2],
    held: HashSet<String>,
    /// The rate limiter's holds as last read, when to read them again, the last
    /// trouble reading them (logged once), and the messages they keep.
    holds: hold::Holds,
    next_holds: u64,
    hold_error: Option<String>,
    parked: HashMap<String, Parked>,
    corrupt: HashSet<String>,
    /// Messages whose `bounced=1` could not be undone after their bounce failed to
    /// queue (their bounce is still due).
    rebounce: HashSet<String>,
    active: HashMap<String, Active>,
    /// States of messages taken over (or recovered) with nothing recorded yet — no
    /// `state/ID` — until their first attempt starts. A message missing here and in
    /// state/ is rebuilt from its queue file's header ([`Scheduler::load_state`]).
    fresh: HashMap<String, State>,
    pending: [VecDeque<Job>; 2],
    running: [usize; 2],
    tx: mpsc::Sender<Event>,
    stopping: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const CHANNELS: [Channel; 2] = [Channel::Local, Channel::Remote];

fn lane(c: Channel) -> usize {
    match c {
        Channel::Local => 0,
        Channel::Remote => 1,
    }
}

fn error_event(text: &str) {
    LogLine::event("error").kv("text", text).emit();
}

/// Whether the bounce of a finished message with failures is still to be queued: not
/// when its state records it as queued (unless `undone`: the scheduler knows that the
/// record could not be taken back after a failed injection).
fn bounce_due(st: &State, undone: bool) -> bool {
    !st.bounced || undone
}

/// Whether `st` has recipients still to deliver on channel `c`.
fn pending_on(st: &State, c: Channel) -> bool {
    st.rcpts
        .iter()
        .any(|r| r.channel == c && r.status.pending())
}

impl Scheduler {
    fn limit(&self, c: Channel) -> usize {
        match c {
            Channel::Local => self.cfg.concurrency_local,
            Channel::Remote => self.cfg.concurrency_remote,
        }
    }

    /// Put a message in the schedule of every channel it still has recipients on, at
    /// `st.next` (a finished message goes in the local one, to be completed).
    fn schedule(&mut self, id: &str, st: &State) {
        if self.held.contains(id) {
            return;
        }
        let mut any = false;
        for c in CHANNELS {
            if pending_on(st, c) {
                self.sched[lane(c)].insert(id, st.next, st.priority);
                any = true;
            }
        }
        if !any {
            self.sched[0].insert(id, st.next, st.priority);
        }
    }

    fn unschedule(&mut self, id: &str) {
        for s in &mut self.sched {
            s.remove(id);
        }
    }

    /// Take over what is in new/ and carry out admin requests.
    fn scan(&mut self) {
        let (list, trouble) =
            takeover::take_over_new(&self.q, &self.home, &self.cfg, &mut self.corrupt);
        for (id, st) in list {
            self.schedule(&id, &st);
            self.keep_fresh(id, st);
        }
        if let Some(e) = trouble {
            error_event(&e.msg);
        }
        // After the takeover, so a request for a message that was still in new/ finds it
        // in mess/; one for a message not taken over yet waits (see admin).
        self.admin();
    }

    /// Start due messages and jobs, within the concurrency limits of each channel.
    fn fill(&mut self) {
        if self.stopping {
            return;
        }
        let t = now();
        for c in CHANNELS {
            let l = lane(c);
            while self.pending[l].len() < self.limit(c) {
                let Some(id) = self.sched[l].pop_due(t) else {
                    break;
                };
                self.start_message(&id, c, t);
            }
            while self.running[l] < self.limit(c) {
                let Some(job) = self.pending[l].pop_front() else {
                    break;
                };
                self.running[l] += 1;
                jobs::start(self.q.clone(), self.progs.clone(), job, self.tx.clone());
            }
        }
    }

    /// Queue the jobs of message `id` on channel `c` — unless a hold of the rate limiter
    /// is in force for it: then it is parked instead.
    fn start_message(&mut self, id: &str, c: Channel, t: u64) {
        if self.held.contains(id) {
            return;
        }
        let l = lane(c);
        let mut a = match self.active.remove(id) {
            Some(a) => a,
            None => {
                let mut st = match self.load_state(id) {
                    Ok(Some(st)) => st,
                    Ok(None) => return, // removed meanwhile
                    Err(e) => {
                        error_event(&e.msg);
                        self.sched[l].insert(id, t + TROUBLE_RETRY_SECS, false);
                        return;
                    }
                };
                if st.finished() {
                    self.complete(id, st);
                    return;
                }
                if st.from.is_none() {
                    // A state file written without from=: the queue file knows.
                    st.from = takeover::read_sender(&self.q, id).ok();
                }
                Active {
                    state: st,
                    outstanding: [0, 0],
                    delete: false,
                }
            }
        };
        if a.outstanding[l] > 0 || a.delete {
            self.active.insert(id.to_string(), a);
            return; // this channel's attempt is still running
        }
        // Under holdbulk a held message still goes to its priority recipients (only):
        // `only` lists them, and the message is parked for the others.
        let mut only = None;
        let reason = self
            .hold_reason(&a.state, t)
            .filter(|&r| !(r == hold::Reason::Bulk && self.only_priority_rcpts(&a.state)));
        if let Some(reason) = reason {
            let released = match reason {
                hold::Reason::Bulk => self.bulk_released(&a.state, c),
                hold::Reason::Auth => Vec::new(),
            };
            self.park(id, c, &mut a.state, reason, t);
            if released.is_empty() {
                if a.outstanding != [0, 0] {
                    self.active.insert(id.to_string(), a);
                }
                return;
            }
            only = Some(released);
        } else {
            if let Some(since) = a.state.holdsince.take() {
                // A hold ended: its time does not count towards queuelifetime.
                a.state.held = a.state.held.saturating_add(t.saturating_sub(since));
            }
            if self.parked.contains_key(id) {
                self.unpark(id, t); // the hold is over for its other channel too
            }
        }
        // Past queuelifetime at the start of an attempt: this is the last one.
        let expired = t
            >= a.state
                .birth
                .saturating_add(a.state.held)
                .saturating_add(self.cfg.queue_lifetime);
        let mut new_jobs: Vec<Job> = Vec::new();
        let mut by_domain: HashMap<String, usize> = HashMap::new();
        for (i, r) in a.state.rcpts.iter().enumerate() {
            if r.channel != c || !r.status.pending() {
                continue;
            }
            if only.as_ref().is_some_and(|o| !o.contains(&i)) {
                continue; // held by holdbulk
            }
            let domain = match c {
                Channel::Local => String::new(),
                Channel::Remote => r
                    .addr
                    .rsplit_once('@')
                    .map(|(_, d)| d)
                    .unwrap_or("")
                    .to_ascii_lowercase(),
            };
            if c == Channel::Remote {
                if let Some(&j) = by_domain.get(&domain) {
                    let job: &mut Job = &mut new_jobs[j];
                    job.idxs.push(i);
                    job.addrs.push(r.addr.clone());
                    continue;
                }
                by_domain.insert(domain.clone(), new_jobs.len());
            }
            new_jobs.push(Job {
                id: id.to_string(),
                channel: c,
                idxs: vec![i],
                addrs: vec![r.addr.clone()],
                domain,
                expired,
            });
        }
        a.outstanding[l] = new_jobs.len();
        let priority = a.state.priority;
        self.active.insert(id.to_string(), a);
        for job in new_jobs {
            // The priority lane also jumps the line of jobs already waiting for a slot.
            if priority {
                self.pending[l].push_front(job);
            } else {
                self.pending[l].push_back(job);
            }
        }
        self.maybe_finish(id);
    }

    /// Keep the initial state of a message without a state file for its first attempt,
    /// up to [`MAX_FRESH`] of them (beyond, it is rebuilt from the header when due).
    fn keep_fresh(&mut self, id: String, st: State) {
        if self.fresh.len() < MAX_FRESH {
            self.fresh.insert(id, st);
        }
    }

    /// The state of a message not active: the one kept since its takeover, else
    /// `state/ID`, else — `mess/ID` without a state means "taken over, nothing recorded
    /// yet" (docs/queue.md) — its initial state built from the queue file's header.
    /// `None` when the message is gone.
    fn load_state(&mut self, id: &str) -> Result<Option<State>> {
        if let Some(st) = self.fresh.remove(id) {
            return Ok(Some(st));
        }
        let path = self.q.path("state", id);
        match State::load(&path) {
            Ok(st) => return Ok(Some(st)),
            Err(e) if !takeover::absent(&path) => {
                return if takeover::exists(&self.q.path("mess", id)) {
                    Err(e)
                } else {
                    Ok(None)
                }
            }
            Err(_) => {}
        }
        if takeover::absent(&self.q.path("mess", id)) {
            return Ok(None);
        }
        let mut hosted = takeover::Hosted::new(&self.home);
        takeover::initial_state(&self.q, "mess", id, &self.cfg, &mut hosted)
            .map(|(st, _, _)| Some(st))
    }

    /// Whether a hold of the rate limiter keeps `st` at `t`, and why.
    fn hold_reason(&self, st: &State, t: u64) -> Option<hold::Reason> {
        let msg = hold::Message {
            // Only Ipriority=1: prioritysenders/prioritysubject can be forged.
            trusted: st.trusted,
            sender: st.from.as_deref().unwrap_or(""),
            auth: st.auth.as_deref(),
            rcpts: st
                .rcpts
                .iter()
                .map(|r| (r.addr.as_str(), r.channel == Channel::Local))
                .collect(),
        };
        if st.from.is_none() && st.auth.is_none() {
            // Sender unknown (the queue file could not be read): holdbulk still applies
            // by the other rules; holdauth cannot, and the bounce rule must not.
            let unknown = hold::Message { sender: "?", ..msg };
            return unknown.held(&self.holds, t);
        }
        msg.held(&self.holds, t)
    }

    /// Whether every recipient `st` still has is a priority one: `holdbulk` does not
    /// hold the message at all.
    fn only_priority_rcpts(&self, st: &State) -> bool {
        st.rcpts
            .iter()
            .filter(|r| r.status.pending())
            .all(|r| hold::priority_rcpt(&r.addr, r.channel == Channel::Local, &self.cfg.alert_to))
    }

    /// The recipients of `st` on channel `c` that `holdbulk` lets go although it holds
    /// the message: pending priority recipients (postmaster@, abuse@, alertto).
    fn bulk_released(&self, st: &State, c: Channel) -> Vec<usize> {
        st.rcpts
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.channel == c
                    && r.status.pending()
                    && hold::priority_rcpt(&r.addr, r.channel == Channel::Local, &self.cfg.alert_to)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Keep message `id` off channel `c` while its hold is in force: it leaves the
    /// schedule and waits in `parked` until [`Self::refresh_holds`] finds the hold over.
    /// The start of a hold is written to its state (`holdsince`) and logged once.
    fn park(&mut self, id: &str, c: Channel, st: &mut State, reason: hold::Reason, t: u64) {
        let user = st
            .auth
            .as_deref()
            .or(st.from.as_deref())
            .unwrap_or("")
            .to_string();
        let p = self.parked.entry(id.to_string()).or_insert(Parked {
            channels: [false, false],
            priority: st.priority,
            reason,
            user,
        });
        p.reason = reason;
        p.channels[lane(c)] = true;
        if st.holdsince.is_none() {
            st.holdsince = Some(t);
            if let Err(e) = st.store(&self.q.dir("state"), id) {
                error_event(&e.msg);
            }
            LogLine::event("hold")
                .kv("id", id)
                .kv("reason", reason.name())
                .emit();
        }
    }

    /// Put a parked message back in the schedule of the channels it was parked on, due
    /// at `t` (its next attempt decides whether it is still held).
    fn unpark(&mut self, id: &str, t: u64) {
        let Some(p) = self.parked.remove(id) else {
            return;
        };
        if self.held.contains(id) {
            return;
        }
        for c in CHANNELS {
            if p.channels[lane(c)] {
                self.sched[lane(c)].insert(id, t, p.priority);
            }
        }
    }

    /// Reread the hold files, and put back in the schedule every parked message whose
    /// hold is over. Called at start, on SIGHUP, every [`hold::REREAD_SECS`] and when an
    /// entry in force runs out.
    fn refresh_holds(&mut self, t: u64) {
        let (holds, errors) = hold::Holds::load(&self.control, &self.holds);
        if errors.is_empty() {
            self.hold_error = None;
        }
        for e in errors {
            if self.hold_error.as_deref() != Some(e.msg.as_str()) {
                error_event(&e.msg);
                self.hold_error = Some(e.msg);
            }
        }
        self.holds = holds;
        // In memory only: each parked message knows what holds it.
        let over: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| match p.reason {
                hold::Reason::Bulk => !self.holds.bulk_in_force(t),
                hold::Reason::Auth => !self.holds.auth_in_force(&p.user, t),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in over {
            self.unpark(&id, t);
        }
        let next = t + hold::REREAD_SECS;
        self.next_holds = self.holds.next_expiry(t).map_or(next, |u| u.min(next));
    }

    fn done(&mut self, job: Job, results: Vec<(u8, String)>) {
        let l = lane(job.channel);
        self.running[l] -= 1;
        let Some(a) = self.active.get_mut(&job.id) else {
            return;
        };
        for (k, &i) in job.idxs.iter().enumerate() {
            let (letter, text) = results
                .get(k)
                .cloned()
                .unwrap_or((b'Z', "no result (#4.3.0)".into()));
            let r = &mut a.state.rcpts[i];
            r.tries += 1;
            let (status, text, word) = match letter {
                b'K' => (Status::Done, text, "ok"),
                b'D' => (Status::Failed, text, "fail"),
                _ if job.expired => (
                    Status::Failed,
                    format!("{}\n{TEMP_EXPIRED}", text.trim_end()),
                    "fail",
                ),
                _ => (Status::Deferred, text, "defer"),
            };
            r.status = status;
            r.last = text;
            LogLine::event("delivery")
                .kv("id", &job.id)
                .kv("rcpt", format!("<{}>", r.addr))
                .kv("kind", job.channel.name())
                .kv("result", word)
                .kv("tries", r.tries)
                .kv("text", r.last.replace('\n', " "))
                .emit();
        }
        a.outstanding[l] -= 1;
        // A message whose last recipients all succeeded is removed at once
        // (maybe_finish → complete): rewriting its state first would cost a file and two
        // fsyncs only to narrow the window in which a crash repeats a delivery. Skipping
        // it keeps "at least once": a crash before the removal means one duplicate.
        let done_clean =
            a.outstanding == [0, 0] && a.state.rcpts.iter().all(|r| r.status == Status::Done);
        if !a.delete && !done_clean {
            if let Err(e) = a.state.store(&self.q.dir("state"), &job.id) {
                error_event(&e.msg);
            }
        }
        if a.outstanding[l] == 0
            && !a.delete
            && pending_on(&a.state, job.channel)
            && !self.held.contains(&job.id)
        {
            // This channel's attempt is over: its next one, on qmail's schedule.
            let t = now();
            let next = state::next_try(a.state.birth, t, job.channel).max(t + 1);
            let priority = a.state.priority;
            self.sched[l].insert(&job.id, next, priority);
        }
        self.maybe_finish(&job.id);
    }

    /// When no channel has work left for the message: complete it, or record the retry.
    fn maybe_finish(&mut self, id: &str) {
        if self.active.get(id).is_none_or(|a| a.outstanding != [0, 0]) {
            return;
        }
        let Some(mut a) = self.active.remove(id) else {
            return;
        };
        if a.delete {
            self.delete(id);
            return;
        }
        if a.state.finished() {
            self.unschedule(id);
            self.complete(id, a.state);
            return;
        }
        a.state.tries += 1;
        let nexts: Vec<u64> = self.sched.iter().filter_map(|s| s.next_of(id)).collect();
        match nexts.into_iter().min() {
            Some(next) => a.state.next = next,
            // Parked by a hold: it comes back when the hold is over.
            None if self.parked.contains_key(id) => a.state.next = now(),
            None => {
                // Scheduled on no channel (after trouble): make sure it comes back.
                a.state.next = now() + TROUBLE_RETRY_SECS;
                self.schedule(id, &a.state);
            }
        }
        if let Err(e) = a.state.store(&self.q.dir("state"), id) {
            error_event(&e.msg);
        }
        LogLine::event("retry")
            .kv("id", id)
            .kv("next", a.state.next)
            .kv("tries", a.state.tries)
            .emit();
    }

    /// Every recipient is done or failed: bounce the failures once, then remove.
    ///
    /// "Bounced" is recorded in `state/ID` (stored and fsynced) *before* the bounce is
    /// queued, and a state that has it is only removed: a crash, or a failed removal,
    /// between queueing the bounce and removing the message never bounces again. If the
    /// bounce cannot be queued the record is undone and the message tried again later.
    fn complete(&mut self, id: &str, mut st: State) {
        let failures: Vec<(String, String)> = st
            .rcpts
            .iter()
            .filter(|r| r.status == Status::Failed)
            .map(|r| (r.addr.clone(), r.last.clone()))
            .collect();
        if !failures.is_empty() && bounce_due(&st, self.rebounce.contains(id)) {
            st.bounced = true;
            if let Err(e) = st.store(&self.q.dir("state"), id) {
                error_event(&format!("bounce of {id} not queued: {}", e.msg));
                self.sched[0].insert(id, now() + TROUBLE_RETRY_SECS, st.priority);
                return;
            }
            if let Err(e) = self.bounce(id, &failures) {
                error_event(&format!("bounce of {id} not queued: {}", e.msg));
                st.bounced = false;
                if let Err(e) = st.store(&self.q.dir("state"), id) {
                    // The file still says bounced: remember here that it is not.
                    error_event(&e.msg);
                    self.rebounce.insert(id.to_string());
                }
                self.sched[0].insert(id, now() + TROUBLE_RETRY_SECS, st.priority);
                return;
            }
            self.rebounce.remove(id);
        }
        match self.q.remove(id) {
            Ok(()) => LogLine::event("done").kv("id", id).emit(),
            Err(e) => error_event(&e.msg),
        }
    }

    fn bounce(&self, id: &str, failures: &[(String, String)]) -> Result<()> {
        let (sender, message) = takeover::read_message(&self.q, id, MAX_BOUNCE_READ)?;
        let sender = String::from_utf8_lossy(&sender).into_owned();
        match bounce::plan(&sender, &self.cfg.double_bounce_to) {
            bounce::Plan::Drop => {
                LogLine::event("drop")
                    .kv("id", id)
                    .kv("reason", "triple bounce: discarding")
                    .emit();
                Ok(())
            }
            bounce::Plan::Send {
                sender: env_from,
                to,
                double,
            } => {
                let date = chrono::Utc::now()
                    .format("%a, %d %b %Y %H:%M:%S +0000")
                    .to_string();
                let head = bounce::Head {
                    host: &self.cfg.me,
                    from: &self.cfg.bounce_from,
                    to: &to,
                    double,
                    original_sender: &sender,
                    date: &date,
                };
                let text = bounce::compose(&head, failures, &message);
                crate::progs::inject(
                    &text,
                    &mut std::io::empty(),
                    env_from.as_bytes(),
                    &[to.as_bytes()],
                )?;
                LogLine::event("bounce")
                    .kv("id", id)
                    .kv("to", format!("<{to}>"))
                    .kv("kind", if double { "double" } else { "bounce" })
                    .kv("rcpts", failures.len())
                    .emit();
                Ok(())
            }
        }
    }

    fn delete(&mut self, id: &str) {
        self.unschedule(id);
        self.held.remove(id);
        self.parked.remove(id);
        self.fresh.remove(id);
        match self.q.remove(id) {
            Ok(()) => LogLine::event("admin")
                .kv("id", id)
                .kv("action", "delete")
                .emit(),
            Err(e) => error_event(&e.msg),
        }
    }

    /// Carry out `ctl/ACTION.ID` requests. postern-qread accepts IDs still in new/: a
    /// request for a message not taken over yet stays in ctl/ until it is (the next
    /// scan), except for a corrupt file we will never take over, which a `delete`
    /// removes and any other action reports.
    fn admin(&mut self) {
        let Ok(names) = self.q.list("ctl") else {
            return;
        };
        for name in names.into_iter().take(MAX_CTL) {
            let request = self.q.path("ctl", &name);
            let (action, id) = name.split_once('.').unwrap_or((name.as_str(), ""));
            let in_mess = takeover::valid_id(id) && takeover::exists(&self.q.path("mess", id));
            let in_new = takeover::valid_id(id) && takeover::exists(&self.q.path("new", id));
            if !in_mess && in_new && !self.corrupt.contains(id) {
                continue; // not taken over yet: the request waits
            }
            let _ = fs::remove_file(&request);
            if !in_mess {
                let result = if in_new && action == "delete" {
                    self.delete_new(id)
                } else if in_new {
                    Some("the message is corrupt")
                } else {
                    Some("no such message")
                };
                let mut line = LogLine::event("admin").kv("id", id).kv("action", action);
                if let Some(r) = result {
                    line = line.kv("result", r);
                }
                line.emit();
                continue;
            }
            let t = now();
            match action {
                "delete" => match self.active.get_mut(id) {
                    // Dropped when the deliveries in flight are back.
                    Some(a) => {
                        a.delete = true;
                        self.unschedule(id);
                        self.parked.remove(id);
                    }
                    None => self.delete(id),
                },
                "hold" => {
                    // The marker is the record of the hold (a message may have no
                    // state file yet): durable before the request is gone.
                    let written = fs::write(self.q.path("hold", id), b"")
                        .and_then(|()| postern_common::atomic::fsync_dir(&self.q.dir("hold")));
                    if let Err(e) = written {
                        error_event(&format!("unable to write hold/{id}: {e}"));
                        continue;
                    }
                    self.held.insert(id.to_string());
                    self.unschedule(id);
                    self.parked.remove(id);
                }
                "release" => {
                    let _ = fs::remove_file(self.q.path("hold", id));
                    if self.held.remove(id) && !self.active.contains_key(id) {
                        match self.load_state(id) {
                            Ok(Some(mut st)) => {
                                st.next = t;
                                self.schedule(id, &st);
                                // Kept for its attempt (it may have no state file).
                                self.keep_fresh(id.to_string(), st);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                error_event(&e.msg);
                                self.sched[0].insert(id, t + TROUBLE_RETRY_SECS, false);
                            }
                        }
                    }
                }
                "requeue" => {
                    for sc in &mut self.sched {
                        sc.advance(id, t);
                    }
                    // A message parked by a hold is looked at again (and parked again
                    // while the hold is in force).
                    self.unpark(id, t);
                }
                _ => {
                    LogLine::event("admin")
                        .kv("id", id)
                        .kv("action", action)
                        .kv("result", "unknown action")
                        .emit();
                    continue;
                }
            }
            if action != "delete" {
                LogLine::event("admin")
                    .kv("id", id)
                    .kv("action", action)
                    .emit();
            }
        }
    }

    /// Delete a corrupt message still in new/ (with the state an interrupted takeover
    /// may have left). `None` when done, else the reason it was not.
    fn delete_new(&mut self, id: &str) -> Option<&'static str> {
        let _ = fs::remove_file(self.q.path("state", id));
        match fs::remove_file(self.q.path("new", id)) {
            Ok(()) => {
                self.corrupt.remove(id);
                None
            }
            Err(e) => {
                error_event(&format!("unable to remove new/{id}: {e}"));
                Some("not removed")
            }
        }
    }

    fn reload(&mut self) {
        match Config::load(&self.control) {
            Ok(cfg) => {
                self.cfg = cfg;
                self.progs.remote_ids = remote_ids(&self.cfg);
                LogLine::event("reload").emit();
            }
            Err(e) => error_event(&format!("control files not reloaded: {}", e.msg)),
        }
        self.refresh_holds(now());
    }

    fn running(&self) -> usize {
        self.running[0] + self.running[1]
    }
}

/// The account postern-remote runs as when we are root: `control/remoteuser`, else
/// `postern-remote`, else `nobody`.
fn remote_ids(cfg: &Config) -> Option<(u32, u32)> {
    if !postern_common::privilege::is_root() {
        return None;
    }
    let names: Vec<&str> = match &cfg.remote_user {
        Some(n) => vec![n.as_str()],
        None => vec!["postern-remote", "nobody"],
    };
    names
        .into_iter()
        .find_map(|n| postern_common::privilege::lookup_account(n).ok())
        .map(|a| (a.uid, a.gid))
}

fn spawn_trigger_reader(path: PathBuf, tx: mpsc::Sender<Event>) -> Result<()> {
    // O_RDWR keeps a writer open, so the FIFO never reports EOF between injections.
    let mut fifo = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .temp(format!("unable to open {}", path.display()))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = fifo.read(&mut buf) {
            if n > 0 && tx.send(Event::Trigger).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn spawn_signal_reader(tx: mpsc::Sender<Event>) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::SignalFd;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGALRM,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
    ] {
        mask.add(s);
    }
    // Blocked in every thread (threads inherit the mask); delivered through the fd.
    mask.thread_block().temp("unable to block signals")?;
    let sfd = SignalFd::new(&mask).temp("unable to create a signalfd")?;
    std::thread::spawn(move || {
        while let Ok(Some(info)) = sfd.read_signal() {
            if tx.send(Event::Signal(info.ssi_signo as i32)).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// postern-send's main.
pub fn main() -> Result<()> {
    let (_, args) =
        postern_common::getopt::parse(&postern_common::getopt::args(), "", "postern-send")?;
    if !args.is_empty() {
        return Err(Error::usage("postern-send"));
    }
    let home = postern_common::home::postern_home();
    let q = Queue::new(home.join("queue"));
    q.prepare()?;
    let lock_path = q.path("lock", "sendmutex");
    let lock_file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .temp(format!("unable to open {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| {
            Error::temp(format!(
                "another postern-send is running on this queue ({} is locked)",
                lock_path.display()
            ))
        })?;
    let control = Control::for_home(&home);
    let cfg = Config::load(&control)?;
    let (tx, rx) = mpsc::channel();
    spawn_signal_reader(tx.clone())?;
    spawn_trigger_reader(q.path("lock", "trigger"), tx.clone())?;
    let progs = Programs::new(
        crate::progs::sibling("postern-local"),
        crate::progs::sibling("postern-remote"),
        remote_ids(&cfg),
    );
    let mut s = Scheduler {
        home,
        q,
        control,
        cfg,
        progs,
        sched: [Schedule::default(), Schedule::default()],
        held: HashSet::new(),
        holds: hold::Holds::default(),
        next_holds: 0,
        hold_error: None,
        parked: HashMap::new(),
        corrupt: HashSet::new(),
        rebounce: HashSet::new(),
        active: HashMap::new(),
        fresh: HashMap::new(),
        pending: [VecDeque::new(), VecDeque::new()],
        running: [0, 0],
        tx,
        stopping: false,
    };
    let recovered = takeover::recover(&s.q, &s.home, &s.cfg)?;
    // Every marker (after recovery, which removes those of finished messages): one left
    // out would let a held message go.
    for id in s.q.list_all("hold")? {
        s.held.insert(id);
    }
    s.refresh_holds(now());
    // Only the schedule is kept: a message without a state file gets its initial state
    // again from its header when its attempt starts (load_state), so a large queue
    // costs no memory per message beyond the schedule.
    for (id, st) in recovered.states {
        s.schedule(&id, &st);
    }
    for id in recovered.retry {
        // Its header could not be read yet: start_message rebuilds it, or retries later.
        s.sched[0].insert(&id, now() + TROUBLE_RETRY_SECS, false);
    }
    s.scan();
    LogLine::event("start")
        .kv("pid", std::process::id())
        .kv(
            "queued",
            s.sched[0]
                .ids()
                .chain(s.sched[1].ids())
                .collect::<HashSet<_>>()
                .len(),
        )
        .kv("held", s.held.len())
        .emit();
    let mut next_scan = now() + RESCAN_SECS;
    let mut next_cleanup = now() + CLEANUP_SECS;
    loop {
        s.fill();
        if s.stopping && s.running() == 0 {
            break;
        }
        let t = now();
        let wake = if s.stopping {
            t + 1
        } else {
            s.sched
                .iter_mut()
                .filter_map(|sc| sc.next_due())
                .min()
                .unwrap_or(u64::MAX)
                .min(next_scan)
                .min(s.next_holds)
        };
        let timeout = Duration::from_secs(wake.saturating_sub(t)).max(Duration::from_millis(50));
        let ev = match rx.recv_timeout(timeout) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Err(Error::temp("event channel closed")),
        };
        let mut scan = false;
        let mut pending = ev.into_iter().collect::<Vec<_>>();
        // Take whatever else is waiting, so one scan serves many triggers.
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        for ev in pending {
            match ev {
                Event::Trigger => scan = true,
                Event::Done { job, results } => s.done(job, results),
                Event::Signal(sig) if sig == libc::SIGALRM => {
                    for sc in &mut s.sched {
                        sc.all_now(now());
                    }
                    scan = true;
                }
                Event::Signal(sig) if sig == libc::SIGHUP => s.reload(),
                Event::Signal(_) => {
                    if !s.stopping {
                        LogLine::event("stopping").kv("running", s.running()).emit();
                    }
                    s.stopping = true;
                }
            }
        }
        let t = now();
        if t >= next_scan {
            scan = true;
            next_scan = t + RESCAN_SECS;
        }
        if t >= s.next_holds {
            s.refresh_holds(t);
        }
        if t >= next_cleanup {
            takeover::clean_tmp(&s.q);
            next_cleanup = t + CLEANUP_SECS;
        }
        if scan && !s.stopping {
            s.scan();
        }
    }
    LogLine::event("stop").emit();
    Ok(())
}
