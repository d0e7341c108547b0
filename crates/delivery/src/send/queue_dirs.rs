//! The queue directories and the scheduler's side of the state machine (docs/queue.md):
//! taking over `new/ID` (rename to `mess/ID`, one fsync of `mess/` per batch; no state
//! file: `mess/ID` without `state/ID` means "taken over, nothing recorded yet"),
//! recovering every state at start-up (S0–S4), and removing a finished message
//! (`mess/ID` first — the commit point of "done" — then hold, bounce, state).

use super::config::Config;
use postern_common::atomic::fsync_dir;
use postern_common::logline::LogLine;
use postern_common::{Result, ResultExt};
use postern_wire::queue_file;
use postern_wire::send_state::{Channel, Rcpt, State, Status};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Leftovers in tmp/ older than this are removed (qmail: 36 hours).
pub const STALE_TMP_SECS: u64 = 129_600;
/// Takeovers per batch (one fsync of mess/ per batch).
pub const BATCH: usize = 256;
/// Bytes of a message read to find its Subject.
pub const SUBJECT_SCAN: u64 = 64 * 1024;
/// Most entries handled per directory scan of new/ and ctl/ (the rest wait for the next
/// scan). Never a bound on what recovery looks at: a decision to delete rests on the
/// whole directory and on the exact path (see [`recover`]).
pub const MAX_SCAN: usize = 100_000;

/// The queue directory of an instance.
#[derive(Debug, Clone)]
pub struct Queue {
    pub root: PathBuf,
    /// Most entries a re-scanned listing ([`Queue::list`]) returns: [`MAX_SCAN`] (tests
    /// make it small).
    pub scan_max: usize,
}

impl Queue {
    pub fn new(root: PathBuf) -> Queue {
        Queue {
            root,
            scan_max: MAX_SCAN,
        }
    }
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn path(&self, dir: &str, id: &str) -> PathBuf {
        self.root.join(dir).join(id)
    }
    /// Make the queue's directories and trigger if they are missing (postern-queue's
    /// own layout code, so modes match the contract).
    pub fn prepare(&self) -> Result<()> {
        let home = self.root.parent().unwrap_or(Path::new("/"));
        postern_queue::layout::create(home).map(|_| ())
    }
    /// At most `scan_max` entry names of a directory (hidden names skipped), for the
    /// scans that are repeated (new/, ctl/): what is left out is seen by a later scan.
    /// Never use it to decide that a file is missing.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        self.list_max(dir, self.scan_max)
    }
    /// Every entry name of a directory (hidden names skipped): for recovery and the hold
    /// markers, where a name left out would be taken for a missing file.
    pub fn list_all(&self, dir: &str) -> Result<Vec<String>> {
        self.list_max(dir, usize::MAX)
    }
    fn list_max(&self, dir: &str, max: usize) -> Result<Vec<String>> {
        let p = self.dir(dir);
        let mut out = Vec::new();
        for e in fs::read_dir(&p)
            .temp(format!("unable to read {}", p.display()))?
            .take(max)
        {
            let e = e.temp(format!("unable to read {}", p.display()))?;
            if let Some(name) = e.file_name().to_str() {
                if !name.starts_with('.') {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
    /// Remove a finished (or deleted) message: `mess/ID` first — from then on the
    /// message is finished even if a crash follows (S4: a state without its message is
    /// removed by recovery) — then hold, bounce, and the state last.
    ///
    /// When a record is left (a state or a hold marker: never on the fast path), `mess/`
    /// is fsynced before it goes: a power cut must not keep `mess/ID` while losing its
    /// state, which would make it a fresh message again — delivered again, and its
    /// failures bounced a second time although the state said `bounced=1`.
    pub fn remove(&self, id: &str) -> Result<()> {
        let unlink = |d: &str| match fs::remove_file(self.path(d, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).temp(format!("unable to remove {d}/{id}"))
            }
            _ => Ok(()),
        };
        unlink("mess")?;
        if !absent(&self.path("state", id)) || !absent(&self.path("hold", id)) {
            fsync_dir(&self.dir("mess")).temp("unable to fsync mess/")?;
        }
        for d in ["hold", "bounce", "state"] {
            unlink(d)?;
        }
        Ok(())
    }
}

/// Whether an ID has the shape the injector makes (digits and dots), so it is safe as
/// a file name.
pub fn valid_id(id: &str) -> bool {
    postern_queue::layout::Id::parse(id).is_some()
}

/// Which domains are hosted here (users/aliases), cached per scan.
pub struct Hosted<'a> {
    home: &'a Path,
    cache: HashMap<String, bool>,
    have_db: bool,
}

impl<'a> Hosted<'a> {
    pub fn new(home: &'a Path) -> Hosted<'a> {
        // No database: nothing is hosted here, everything is remote. (An empty one is
        // read as such by the lookups.)
        let db = home
            .join("control")
            .join(postern_mailstore::userdb::RECIPIENTS_CDB);
        let have_db = exists(&db);
        Hosted {
            home,
            cache: HashMap::new(),
            have_db,
        }
    }
    pub fn channel(&mut self, rcpt: &str) -> Result<Channel> {
        let Some((_, domain)) = rcpt.rsplit_once('@') else {
            return Ok(Channel::Local);
        };
        let domain = domain.to_ascii_lowercase();
        if !self.have_db {
            return Ok(Channel::Remote);
        }
        if let Some(&h) = self.cache.get(&domain) {
            return Ok(if h { Channel::Local } else { Channel::Remote });
        }
        let h = postern_mailstore::is_hosted_domain(self.home, &domain)?;
        self.cache.insert(domain, h);
        Ok(if h { Channel::Local } else { Channel::Remote })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Build the initial state of `DIR/ID` (`new/` at takeover; `mess/` for a message taken
/// over without a state file yet): every recipient todo, the rest from the queue file's
/// header, which never changes. Returns the state, the sender and the message size.
pub fn initial_state(
    q: &Queue,
    dir: &str,
    id: &str,
    cfg: &Config,
    hosted: &mut Hosted,
) -> Result<(State, String, u64)> {
    let mut qf = queue_file::open(&q.path(dir, id))?;
    let mtime = qf
        .file
        .metadata()
        .map(|m| m.mtime() as u64)
        .unwrap_or_else(|_| now());
    let mut head = Vec::new();
    (&mut qf.file)
        .take(SUBJECT_SCAN)
        .read_to_end(&mut head)
        .temp("unable to read the message")?;
    let env = &qf.envelope;
    let birth = env.time.unwrap_or(mtime);
    let sender = String::from_utf8_lossy(&env.sender).into_owned();
    let subject = super::bounce::subject(&head);
    let priority = env.priority || cfg.is_priority(&sender, subject.as_deref());
    let mut rcpts = Vec::with_capacity(env.recipients.len());
    for r in &env.recipients {
        let addr = String::from_utf8_lossy(r).into_owned();
        rcpts.push(Rcpt {
            channel: hosted.channel(&addr)?,
            addr,
            status: Status::Todo,
            tries: 0,
            last: String::new(),
        });
    }
    let auth = env
        .extra
        .iter()
        .find(|(k, _)| k == b"auth")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .filter(|a| !a.is_empty());
    let state = State {
        birth,
        tries: 0,
        next: now(),
        priority,
        held: 0,
        holdsince: None,
        from: Some(sender.clone()),
        auth,
        trusted: env.priority,
        bounced: false,
        rcpts,
    };
    Ok((state, sender, qf.message_len()))
}

/// Take over every message in new/ (S1, and a legacy S2). Returns the states to
/// schedule, and the trouble that stopped the scan early, if any: what was taken over
/// before it is returned all the same (it is in mess/ now and must be scheduled). A
/// corrupt file is logged once and left alone (`corrupt` remembers it).
pub fn take_over_new(
    q: &Queue,
    home: &Path,
    cfg: &Config,
    corrupt: &mut std::collections::HashSet<String>,
) -> (Vec<(String, State)>, Option<postern_common::Error>) {
    let mut out = Vec::new();
    let ids: Vec<String> = match q.list("new") {
        Ok(ids) => ids.into_iter().filter(|id| !corrupt.contains(id)).collect(),
        Err(e) => return (out, Some(e)),
    };
    let mut hosted = Hosted::new(home);
    for chunk in ids.chunks(BATCH) {
        let mut taken = Vec::new();
        let mut trouble = None;
        for id in chunk {
            match take_one(q, id, cfg, &mut hosted, corrupt) {
                Ok(Some(t)) => taken.push(t),
                Ok(None) => {}
                Err(e) => {
                    // Finish the batch so far, then stop.
                    trouble = Some(e);
                    break;
                }
            }
        }
        if !taken.is_empty() {
            if let Err(e) = commit_batch(q, taken, corrupt, &mut out) {
                return (out, Some(e));
            }
        }
        if trouble.is_some() {
            return (out, trouble);
        }
    }
    (out, None)
}

/// A message taken over: its ID, state, and (when new, not a legacy S2) the sender
/// and size for the `new` log line.
type Taken = (String, State, Option<(String, u64)>);

fn log_corrupt(id: &str, text: &str, corrupt: &mut std::collections::HashSet<String>) {
    LogLine::event("corrupt")
        .kv("id", id)
        .kv("text", text)
        .emit();
    corrupt.insert(id.to_string());
}

/// Prepare the takeover of `new/ID`: its initial state, in memory only (or the state
/// file an interrupted takeover of an older postern-send left, which wrote one first).
/// `None` when the file is not ours to take (logged as corrupt).
fn take_one(
    q: &Queue,
    id: &str,
    cfg: &Config,
    hosted: &mut Hosted,
    corrupt: &mut std::collections::HashSet<String>,
) -> Result<Option<Taken>> {
    if !valid_id(id) {
        log_corrupt(id, "not a queue ID", corrupt);
        return Ok(None);
    }
    let state_path = q.path("state", id);
    if state_path.exists() && absent(&q.path("mess", id)) {
        // Legacy S2 (an older postern-send wrote the state before the rename): finish
        // the rename with it (which refuses to replace a mess/ID, see commit_batch).
        return match State::load(&state_path) {
            Ok(st) => Ok(Some((id.to_string(), st, None))),
            Err(e) => {
                log_corrupt(id, &e.msg, corrupt);
                Ok(None)
            }
        };
    }
    if exists(&q.path("mess", id)) {
        // IDs are unique: a message of that name is already taken over. The rename would
        // refuse anyway (RENAME_NOREPLACE); say so without reading the file.
        log_corrupt(id, "a message with this ID is already in mess/", corrupt);
        return Ok(None);
    }
    match initial_state(q, "new", id, cfg, hosted) {
        // No state file: `mess/ID` alone means "every recipient todo" (docs/queue.md).
        Ok((st, sender, size)) => Ok(Some((id.to_string(), st, Some((sender, size))))),
        Err(e) if e.kind == postern_common::Kind::Perm => {
            log_corrupt(id, &e.msg, corrupt);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Move each `new/ID` to `mess/ID` — never replacing an existing `mess/ID`
/// (RENAME_NOREPLACE, as postern-queue commits) — fsync mess/ once, log `new`.
fn commit_batch(
    q: &Queue,
    taken: Vec<Taken>,
    corrupt: &mut std::collections::HashSet<String>,
    out: &mut Vec<(String, State)>,
) -> Result<()> {
    if taken.iter().any(|t| t.2.is_none()) {
        // A legacy S2 state must be durable before its message moves.
        fsync_dir(&q.dir("state")).temp("unable to fsync state/")?;
    }
    let mut moved = Vec::with_capacity(taken.len());
    let mut trouble = None;
    for t in taken {
        let id = &t.0;
        match rename_noreplace(&q.path("new", id), &q.path("mess", id)) {
            Ok(()) => moved.push(t),
            Err(nix::errno::Errno::EEXIST) => {
                // A message of that ID is already taken over (and any state/ID is its);
                // the file in new/ stays where it is for the admin to look at.
                log_corrupt(id, "a message with this ID is already in mess/", corrupt);
            }
            Err(e) => {
                trouble = Some(postern_common::Error::temp(format!(
                    "unable to move new/{id} to mess/: {}",
                    e.desc().to_lowercase()
                )));
                break;
            }
        }
    }
    if !moved.is_empty() {
        fsync_dir(&q.dir("mess")).temp("unable to fsync mess/")?;
    }
    for (id, st, fresh) in moved {
        if let Some((sender, size)) = fresh {
            let local = st
                .rcpts
                .iter()
                .filter(|r| r.channel == Channel::Local)
                .count();
            LogLine::event("new")
                .kv("id", &id)
                .kv("from", format!("<{sender}>"))
                .kv("rcpts", st.rcpts.len())
                .kv("local", local)
                .kv("remote", st.rcpts.len() - local)
                .kv("size", size)
                .kv("priority", u8::from(st.priority))
                .emit();
        }
        out.push((id, st));
    }
    trouble.map_or(Ok(()), Err)
}

/// `renameat2(from, to, RENAME_NOREPLACE)`: fails with EEXIST instead of replacing.
pub fn rename_noreplace(from: &Path, to: &Path) -> nix::Result<()> {
    postern_common::sys::rename_noreplace(from, to)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// What start-up recovery found to schedule.
#[derive(Default)]
pub struct Recovered {
    /// Messages in mess/ with their state: from `state/ID` (S3), or built from the queue
    /// file's header when nothing is recorded yet (S2).
    pub states: Vec<(String, State)>,
    /// Messages in mess/ without a state whose header could not be read for a reason
    /// that may pass (the user database unreadable…): tried again later.
    pub retry: Vec<String>,
}

/// Start-up recovery of S0, S2 (taken over, nothing recorded), S3, S4 (finished, being
/// removed) and stray files. Returns the messages to schedule (S1 and a legacy
/// `new/ID` + `state/ID` are [`take_over_new`]'s).
pub fn recover(q: &Queue, home: &Path, cfg: &Config) -> Result<Recovered> {
    // Half-written state files from a crash.
    let state_dir = q.dir("state");
    for e in fs::read_dir(&state_dir)
        .temp("unable to read state/")?
        .flatten()
    {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            let _ = fs::remove_file(e.path());
        }
    }
    let mut out = Recovered::default();
    // Whole listings, never a bounded scan: an ID missing from a truncated list would be
    // taken for a missing file and its mail deleted. And before any deletion the exact
    // path is looked at again (`absent`: only a real ENOENT counts).
    let mess: std::collections::HashSet<String> = q.list_all("mess")?.into_iter().collect();
    let new: std::collections::HashSet<String> = q.list_all("new")?.into_iter().collect();
    let mut with_state = std::collections::HashSet::new();
    for id in q.list_all("state")? {
        let in_mess = mess.contains(&id) || !absent(&q.path("mess", &id));
        let in_new = new.contains(&id) || !absent(&q.path("new", &id));
        if in_new && !in_mess {
            continue; // legacy S2: take_over_new finishes it
        }
        if !in_mess {
            // S4: finished (mess/ID is unlinked first), removal interrupted.
            let _ = fs::remove_file(q.path("hold", &id));
            let _ = fs::remove_file(q.path("bounce", &id));
            let _ = fs::remove_file(q.path("state", &id));
            continue;
        }
        with_state.insert(id.clone());
        match State::load(&q.path("state", &id)) {
            Ok(st) => out.states.push((id, st)),
            Err(e) => {
                LogLine::event("corrupt")
                    .kv("id", &id)
                    .kv("text", &e.msg)
                    .emit();
            }
        }
    }
    // S2: taken over, nothing recorded yet — every recipient todo, as a fresh takeover.
    let mut hosted = Hosted::new(home);
    let mut fresh: Vec<&String> = mess.iter().filter(|id| !with_state.contains(*id)).collect();
    fresh.sort();
    for id in fresh {
        if !valid_id(id) || !absent(&q.path("state", id)) {
            continue;
        }
        match initial_state(q, "mess", id, cfg, &mut hosted) {
            Ok((st, _, _)) => out.states.push((id.clone(), st)),
            Err(e) if e.kind == postern_common::Kind::Perm => {
                LogLine::event("corrupt")
                    .kv("id", id)
                    .kv("text", &e.msg)
                    .emit();
            }
            Err(e) => {
                LogLine::event("error").kv("text", &e.msg).emit();
                out.retry.push(id.clone());
            }
        }
    }
    // Hold markers of messages that are gone (a removal interrupted after mess/ID).
    for id in q.list_all("hold")? {
        if !mess.contains(&id)
            && !new.contains(&id)
            && absent(&q.path("mess", &id))
            && absent(&q.path("new", &id))
            && absent(&q.path("state", &id))
        {
            let _ = fs::remove_file(q.path("hold", &id));
        }
    }
    clean_tmp(q);
    Ok(out)
}

/// Remove tmp/ files older than [`STALE_TMP_SECS`] (S0 leftovers).
pub fn clean_tmp(q: &Queue) {
    let Ok(entries) = fs::read_dir(q.dir("tmp")) else {
        return;
    };
    let limit = now().saturating_sub(STALE_TMP_SECS) as i64;
    for e in entries.flatten().take(MAX_SCAN) {
        if e.metadata().map(|m| m.mtime() < limit).unwrap_or(false) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The sender and the message bytes (up to `max`) of `mess/ID`.
pub fn read_message(q: &Queue, id: &str, max: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut qf = queue_file::open(&q.path("mess", id))?;
    let mut body = Vec::new();
    (&mut qf.file)
        .take(max)
        .read_to_end(&mut body)
        .temp(format!("unable to read mess/{id}"))?;
    Ok((qf.envelope.sender, body))
}

/// The envelope sender of `mess/ID` (for state files written without `from=`).
pub fn read_sender(q: &Queue, id: &str) -> Result<String> {
    let qf = queue_file::open(&q.path("mess", id))?;
    Ok(String::from_utf8_lossy(&qf.envelope.sender).into_owned())
}

/// Whether a path exists (false on errors).
pub fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// Whether a path certainly does not exist (ENOENT; any other error counts as "there"),
/// the test every deletion by recovery passes first.
pub fn absent(p: &Path) -> bool {
    matches!(fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_wire::send_state::{Channel, Rcpt, State, Status};

    fn state() -> State {
        State {
            birth: 1,
            tries: 0,
            next: 1,
            priority: false,
            held: 0,
            holdsince: None,
            from: Some("a@x.test".into()),
            auth: None,
            bounced: false,
            trusted: false,
            rcpts: vec![Rcpt {
                addr: "b@y.test".into(),
                channel: Channel::Remote,
                status: Status::Todo,
                tries: 0,
                last: String::new(),
            }],
        }
    }

    /// Regression: recovery built its view of mess/ from a listing cut at MAX_SCAN
    /// entries, so the state of a message beyond the cut was deleted as "state without
    /// message", and at the next start the message as "finished" (S4): mail lost.
    #[test]
    fn large_queue_recovery_loses_no_message_beyond_the_scan_bound() {
        let dir = tempfile::tempdir().unwrap();
        postern_queue::layout::create(dir.path()).unwrap();
        let q = Queue {
            root: dir.path().join("queue"),
            scan_max: 3,
        };
        let ids: Vec<String> = (0..20).map(|i| format!("1700000000.{i:09}.4242")).collect();
        for id in &ids {
            fs::write(q.path("mess", id), b"message").unwrap();
            state().store(&q.dir("state"), id).unwrap();
        }
        // The real leftovers are still cleaned: a state without message (S4, with its
        // hold marker). A message without state (S2) is kept and scheduled.
        state()
            .store(&q.dir("state"), "1700000001.000000000.1")
            .unwrap();
        fs::write(q.path("hold", "1700000001.000000000.1"), b"").unwrap();
        let fresh = "1700000002.000000000.1";
        let env = postern_wire::queue_file::Envelope::new(
            b"s@x.test".to_vec(),
            vec![b"b@y.test".to_vec(), b"c@z.test".to_vec()],
        );
        fs::write(
            q.path("mess", fresh),
            postern_wire::queue_file::encode_file(&env, b"Subject: s\n\nbody\n"),
        )
        .unwrap();
        let cfg = Config::load(&postern_common::control::Control::for_home(dir.path())).unwrap();
        for restart in 0..2 {
            let r = recover(&q, dir.path(), &cfg).unwrap();
            assert!(r.retry.is_empty());
            let mut got: Vec<String> = r.states.iter().map(|(i, _)| i.clone()).collect();
            got.sort();
            let mut want = ids.clone();
            want.push(fresh.to_string());
            want.sort();
            assert_eq!(got, want, "restart {restart}");
            let (_, st) = r.states.iter().find(|(i, _)| i == fresh).unwrap();
            assert_eq!(st.rcpts.len(), 2);
            assert!(st
                .rcpts
                .iter()
                .all(|r| r.status == Status::Todo && r.tries == 0));
            assert_eq!(st.from.as_deref(), Some("s@x.test"));
            assert!(absent(&q.path("state", fresh)), "recovery writes no state");
            for id in &ids {
                assert!(exists(&q.path("mess", id)), "mess/{id} lost");
                assert!(exists(&q.path("state", id)), "state/{id} lost");
            }
        }
        assert!(absent(&q.path("state", "1700000001.000000000.1")));
        assert!(absent(&q.path("hold", "1700000001.000000000.1")));
        assert!(exists(&q.path("mess", fresh)));
        // The re-scanned listing is still bounded.
        assert_eq!(q.list("mess").unwrap().len(), 3);
    }
}
