//! Start-up: the queue's lock (one postern-send per queue), the configuration, the
//! threads that turn the trigger FIFO and signals into events, and recovery — the
//! schedule rebuilt from what the queue holds.

use super::*;

/// Take the queue, recover it and build the scheduler; the receiver gets its events.
pub(super) fn start() -> Result<(Scheduler, Lock, mpsc::Receiver<Event>)> {
    let home = postern_common::home::postern_home();
    let q = Queue::new(home.join("queue"));
    q.prepare()?;
    let lock_path = q.path("lock", "sendmutex");
    let lock_file = postern_common::lock::open(&lock_path, 0o666)
        .temp(format!("unable to open {}", lock_path.display()))?;
    let Ok(Ok(lock)) = Lock::try_take(lock_file) else {
        return Err(Error::temp(format!(
            "another postern-send is running on this queue ({} is locked)",
            lock_path.display()
        )));
    };
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
    let recovered = queue_dirs::recover(&s.q, &s.home, &s.cfg)?;
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
    Ok((s, lock, rx))
}

pub(super) fn remote_ids(cfg: &Config) -> Option<(u32, u32)> {
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
