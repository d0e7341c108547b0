//! postern-send: the scheduler (docs/postern-send.md, docs/queue.md).
//!
//! One thread runs the schedule; helper threads only turn outside happenings into
//! [`Event`]s on one channel: the trigger FIFO, signals (through a signalfd, so no
//! signal handler and no unsafe code), and finished deliveries.
//!
//! - [`config`] — control files; [`retry`] — qmail's retry schedule. The state file
//!   `state/ID` is `postern_wire::send_state`.
//! - [`hold`] — the rate limiter's holds (`holdbulk`, `ratelimit.holdauth`): held
//!   messages are *parked* out of the schedule until their hold is over.
//! - [`schedule`] — the in-memory priority lane and bulk heap.
//! - [`queue_dirs`] — the queue directories: takeover, recovery, removal.
//! - [`jobs`] — running postern-local / postern-remote; [`bounce`] — QSBMF bounces.
//!
//! The scheduler itself, in parts: `startup` (the lock, recovery), `event_loop`,
//! `scheduling` (what is due, filling the channels), `attempt` (one message's
//! deliveries and its end), `parking` (holds), `admin` (queue requests, reload).

mod admin;
mod attempt;
pub mod bounce;
pub mod config;
mod event_loop;
pub mod hold;
pub mod jobs;
mod parking;
pub mod queue_dirs;
pub mod retry;
pub mod schedule;
mod scheduling;
mod startup;

use config::Config;
use jobs::{Job, Programs};
use postern_common::control::Control;
use postern_common::logline::LogLine;
use postern_common::{Error, Result, ResultExt};
use postern_wire::send_state::{Channel, State, Status};
use postern_wire::verdict::{Outcome, Verdict};
use queue_dirs::Queue;
use schedule::Schedule;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

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
    Done { job: Job, results: Vec<Outcome> },
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

/// The account postern-remote runs as when we are root: `control/remoteuser`, else
/// `postern-remote`, else `nobody`.
/// The lock that makes this the queue's only postern-send, held while it runs.
type Lock = postern_common::lock::Lock;

/// postern-send's main.
pub fn main() -> Result<()> {
    let (_, args) =
        postern_common::getopt::parse(&postern_common::getopt::args(), "", "postern-send")?;
    if !args.is_empty() {
        return Err(Error::usage("postern-send"));
    }
    let (scheduler, _lock, events) = startup::start()?;
    event_loop::run(scheduler, events)
}
