//! The queue directories and the scheduler's side of the state machine (docs/queue.md):
//! taking over `new/ID` (write `state/ID`, fsync, fsync `state/`, rename to `mess/ID`,
//! fsync `mess/`), recovering every state at start-up (S0–S4), and removing a finished
//! message (state, bounce, hold, then mess).

use super::config::Config;
use super::state::{Channel, Rcpt, State, Status};
use crate::queuefile;
use postern_common::atomic::fsync_dir;
use postern_common::logline::LogLine;
use postern_common::{Result, ResultExt};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Leftovers in tmp/ older than this are removed (qmail: 36 hours).
pub const STALE_TMP_SECS: u64 = 129_600;
/// Takeovers per batch (one fsync of state/ and of mess/ per batch).
pub const BATCH: usize = 256;
/// Bytes of a message read to find its Subject.
pub const SUBJECT_SCAN: u64 = 64 * 1024;
/// Most entries handled per directory scan of new/ (the rest wait for the next scan).
pub const MAX_SCAN: usize = 100_000;

/// The queue directory of an instance.
#[derive(Debug, Clone)]
pub struct Queue {
    pub root: PathBuf,
}

impl Queue {
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
    /// Entry names of a directory (hidden names skipped).
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let p = self.dir(dir);
        let mut out = Vec::new();
        for e in fs::read_dir(&p)
            .temp(format!("unable to read {}", p.display()))?
            .take(MAX_SCAN)
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
    /// Remove a finished (or deleted) message: state, bounce, hold, then mess (S3 → S4 →
    /// gone).
    pub fn remove(&self, id: &str) -> Result<()> {
        for d in ["state", "bounce", "hold"] {
            match fs::remove_file(self.path(d, id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).temp(format!("unable to remove {d}/{id}"))
                }
                _ => {}
            }
        }
        match fs::remove_file(self.path("mess", id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).temp(format!("unable to remove mess/{id}"))
            }
            _ => Ok(()),
        }
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
        // No database, or an empty one (which the cdb crate refuses to open): nothing
        // is hosted here.
        let db = home
            .join("control")
            .join(postern_mailstore::userdb::RECIPIENTS_CDB);
        let have_db = fs::metadata(db).is_ok_and(|m| m.len() > crate::resolve::EMPTY_CDB);
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

/// Build the initial state of `new/ID`.
fn initial_state(
    q: &Queue,
    id: &str,
    cfg: &Config,
    hosted: &mut Hosted,
) -> Result<(State, String, u64)> {
    let mut qf = queuefile::open(&q.path("new", id))?;
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
    let state = State {
        birth,
        tries: 0,
        next: now(),
        priority,
        rcpts,
    };
    Ok((state, sender, qf.message_len()))
}

/// Take over every message in new/ (S1, and S2 left by a crash). Returns the states to
/// schedule. A corrupt file is logged once and left alone (`corrupt` remembers it).
pub fn take_over_new(
    q: &Queue,
    home: &Path,
    cfg: &Config,
    corrupt: &mut std::collections::HashSet<String>,
) -> Result<Vec<(String, State)>> {
    let mut hosted = Hosted::new(home);
    let ids: Vec<String> = q
        .list("new")?
        .into_iter()
        .filter(|id| !corrupt.contains(id))
        .collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(BATCH) {
        let mut taken = Vec::new();
        for id in chunk {
            if !valid_id(id) {
                LogLine::event("corrupt")
                    .kv("id", id)
                    .kv("text", "not a queue ID")
                    .emit();
                corrupt.insert(id.clone());
                continue;
            }
            let state_path = q.path("state", id);
            if state_path.exists() {
                // S2: the state was written before a crash; finish the rename.
                match State::load(&state_path) {
                    Ok(st) => taken.push((id.clone(), st, None)),
                    Err(e) => {
                        LogLine::event("corrupt")
                            .kv("id", id)
                            .kv("text", &e.msg)
                            .emit();
                        corrupt.insert(id.clone());
                    }
                }
                continue;
            }
            match initial_state(q, id, cfg, &mut hosted) {
                Ok((st, sender, size)) => {
                    st.store(&q.dir("state"), id)?;
                    taken.push((id.clone(), st, Some((sender, size))));
                }
                Err(e) if e.kind == postern_common::Kind::Perm => {
                    LogLine::event("corrupt")
                        .kv("id", id)
                        .kv("text", &e.msg)
                        .emit();
                    corrupt.insert(id.clone());
                }
                Err(e) => return Err(e),
            }
        }
        if taken.is_empty() {
            continue;
        }
        fsync_dir(&q.dir("state")).temp("unable to fsync state/")?;
        for (id, _, _) in &taken {
            fs::rename(q.path("new", id), q.path("mess", id))
                .temp(format!("unable to move new/{id} to mess/"))?;
        }
        fsync_dir(&q.dir("mess")).temp("unable to fsync mess/")?;
        for (id, st, fresh) in taken {
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
    }
    Ok(out)
}

/// Start-up recovery of S0, S3, S4 and stray files. Returns the S3 messages to schedule
/// (S1/S2 are [`take_over_new`]'s).
pub fn recover(q: &Queue) -> Result<Vec<(String, State)>> {
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
    let mut out = Vec::new();
    let mess: std::collections::HashSet<String> = q.list("mess")?.into_iter().collect();
    let new: std::collections::HashSet<String> = q.list("new")?.into_iter().collect();
    for id in q.list("state")? {
        if new.contains(&id) {
            continue; // S2: take_over_new finishes it
        }
        if !mess.contains(&id) {
            // A state without its message (removed by hand): nothing to deliver.
            let _ = fs::remove_file(q.path("state", &id));
            continue;
        }
        match State::load(&q.path("state", &id)) {
            Ok(st) => out.push((id, st)),
            Err(e) => {
                LogLine::event("corrupt")
                    .kv("id", &id)
                    .kv("text", &e.msg)
                    .emit();
            }
        }
    }
    let with_state: std::collections::HashSet<&String> = out.iter().map(|(id, _)| id).collect();
    for id in &mess {
        if !with_state.contains(id) && !q.path("state", id).exists() {
            // S4: finished, removal interrupted.
            let _ = fs::remove_file(q.path("mess", id));
            let _ = fs::remove_file(q.path("bounce", id));
            let _ = fs::remove_file(q.path("hold", id));
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
    let mut qf = queuefile::open(&q.path("mess", id))?;
    let mut body = Vec::new();
    (&mut qf.file)
        .take(max)
        .read_to_end(&mut body)
        .temp(format!("unable to read mess/{id}"))?;
    Ok((qf.envelope.sender, body))
}

/// Whether a path exists (false on errors).
pub fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}
