//! Where things are in `$POSTERN_HOME/queue/` (docs/queue.md, *Layout*), how message IDs
//! are made, creating the directories with their modes, pulling the trigger, and the
//! names of admin requests in `ctl/`.

use postern_common::{Error, Result, ResultExt};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The queue's directories under `queue/`, and their modes (docs/queue.md).
pub const DIRECTORIES: &[(&str, u32)] = &[
    ("lock", 0o750),
    ("tmp", 0o700),
    ("new", 0o750),
    ("mess", 0o750),
    ("state", 0o700),
    ("bounce", 0o700),
    ("hold", 0o700),
    ("ctl", 0o730),
];
/// Mode of `queue/` itself.
pub const QUEUE_MODE: u32 = 0o750;
/// Mode of the `lock/trigger` FIFO.
pub const TRIGGER_MODE: u32 = 0o622;
/// Longest message ID we accept from a command line or a directory entry.
pub const MAX_ID_LEN: usize = 64;

/// The queue directory of an instance (`HOME/queue`) and every path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    root: PathBuf,
}

impl Queue {
    /// The queue of the instance at `home`.
    pub fn for_home(home: &Path) -> Self {
        Queue {
            root: home.join("queue"),
        }
    }
    /// A queue directory given directly.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Queue { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir("tmp")
    }
    pub fn new_dir(&self) -> PathBuf {
        self.dir("new")
    }
    pub fn mess(&self) -> PathBuf {
        self.dir("mess")
    }
    pub fn state(&self) -> PathBuf {
        self.dir("state")
    }
    pub fn bounce(&self) -> PathBuf {
        self.dir("bounce")
    }
    pub fn hold(&self) -> PathBuf {
        self.dir("hold")
    }
    pub fn ctl(&self) -> PathBuf {
        self.dir("ctl")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir("lock")
    }
    pub fn trigger(&self) -> PathBuf {
        self.root.join("lock/trigger")
    }
    pub fn sendmutex(&self) -> PathBuf {
        self.root.join("lock/sendmutex")
    }
    pub fn tmp_file(&self, id: &str) -> PathBuf {
        self.tmp().join(id)
    }
    pub fn new_file(&self, id: &str) -> PathBuf {
        self.new_dir().join(id)
    }
    pub fn mess_file(&self, id: &str) -> PathBuf {
        self.mess().join(id)
    }
    pub fn state_file(&self, id: &str) -> PathBuf {
        self.state().join(id)
    }
    pub fn bounce_file(&self, id: &str) -> PathBuf {
        self.bounce().join(id)
    }
    pub fn hold_file(&self, id: &str) -> PathBuf {
        self.hold().join(id)
    }
    pub fn ctl_file(&self, action: Action, id: &str) -> PathBuf {
        self.ctl().join(action.request_name(id))
    }

    /// Where message `id` is now: `mess/ID` if taken over, else `new/ID`, else `None`.
    pub fn locate(&self, id: &str) -> Option<PathBuf> {
        [self.mess_file(id), self.new_file(id)]
            .into_iter()
            .find(|p| p.symlink_metadata().is_ok())
    }
}

/// A message ID: `<unix seconds>.<nanoseconds>.<pid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id {
    pub secs: u64,
    pub nanos: u32,
    pub pid: u32,
}

impl Id {
    /// A fresh ID for this process, from the clock.
    pub fn generate() -> Id {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Id {
            secs: now.as_secs(),
            nanos: now.subsec_nanos(),
            pid: std::process::id(),
        }
    }

    /// Parse an ID; `None` unless it is exactly three decimal fields (so an ID can never
    /// name another path: no `/`, no `.` or `..`).
    pub fn parse(text: &str) -> Option<Id> {
        if text.len() > MAX_ID_LEN {
            return None;
        }
        let mut parts = text.split('.');
        let field = |s: Option<&str>| -> Option<u64> {
            let s = s?;
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let secs = field(parts.next())?;
        let nanos = u32::try_from(field(parts.next())?)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        let pid = u32::try_from(field(parts.next())?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Id { secs, nanos, pid })
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}.{}", self.secs, self.nanos, self.pid)
    }
}

/// An admin request (docs/queue.md, *Admin actions*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Drop the message without a bounce.
    Delete,
    /// No deliveries until released.
    Hold,
    /// Undo a hold.
    Release,
    /// Retry every pending recipient now.
    Requeue,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Delete,
        Action::Hold,
        Action::Release,
        Action::Requeue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::Requeue => "requeue",
        }
    }

    /// The file name of a request: `ACTION.ID`.
    pub fn request_name(self, id: &str) -> String {
        format!("{}.{id}", self.name())
    }

    /// Read a `ctl/` entry name back: the action and the message ID.
    pub fn parse_request(name: &str) -> Option<(Action, Id)> {
        let (action, id) = name.split_once('.')?;
        let action = Action::ALL.into_iter().find(|a| a.name() == action)?;
        Some((action, Id::parse(id)?))
    }
}

/// Wake the scheduler: write one byte to `lock/trigger` without blocking. Returns false
/// when nobody is listening (postern-send not running) or the FIFO is missing; callers
/// that only want to nudge ignore the result.
pub fn pull_trigger(queue: &Queue) -> bool {
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(queue.trigger());
    match opened {
        Ok(mut fifo) => {
            // A full FIFO (EAGAIN) still means the scheduler will wake up.
            let _ = fifo.write(b"\0");
            true
        }
        Err(_) => false,
    }
}

/// Create the queue of the instance at `home` with the documented modes: `queue/`, its
/// directories and the `lock/trigger` FIFO. Only what is missing is made (an existing
/// directory keeps its owner and mode), so running it again is safe. Returns what it
/// created. Owners are the install script's business (docs/queue.md, *Layout*).
pub fn create(home: &Path) -> Result<Vec<PathBuf>> {
    let queue = Queue::for_home(home);
    let mut created = Vec::new();
    make_dir(queue.root(), QUEUE_MODE, &mut created)?;
    for (name, mode) in DIRECTORIES {
        make_dir(&queue.dir(name), *mode, &mut created)?;
    }
    let trigger = queue.trigger();
    match trigger.symlink_metadata() {
        Ok(meta) if meta.file_type().is_fifo() => {}
        Ok(_) => {
            return Err(Error::perm(format!(
                "{}: exists and is not a FIFO",
                trigger.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            nix::unistd::mkfifo(
                &trigger,
                nix::sys::stat::Mode::from_bits_truncate(TRIGGER_MODE),
            )
            .temp(format!("unable to make {}", trigger.display()))?;
            // mkfifo is subject to the umask; the mode is part of the contract.
            fs::set_permissions(&trigger, fs::Permissions::from_mode(TRIGGER_MODE))
                .temp(format!("unable to chmod {}", trigger.display()))?;
            created.push(trigger);
        }
        Err(e) => {
            return Err(Error::io(
                format!("unable to stat {}", trigger.display()),
                &e,
            ))
        }
    }
    Ok(created)
}

fn make_dir(path: &Path, mode: u32, created: &mut Vec<PathBuf>) -> Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::perm(format!(
                "{}: exists and is not a directory",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("unable to stat {}", path.display()), &e)),
    }
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .temp(format!("unable to make {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .temp(format!("unable to chmod {}", path.display()))?;
    created.push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_arrival() {
        let a = Id {
            secs: 1_790_000_000,
            nanos: 5,
            pid: 42,
        };
        assert_eq!(a.to_string(), "1790000000.000000005.42");
        assert_eq!(Id::parse(&a.to_string()), Some(a));
        let b = Id {
            secs: 1_790_000_000,
            nanos: 60,
            pid: 7,
        };
        assert!(a.to_string() < b.to_string() && a < b);
        let g = Id::generate();
        assert_eq!(Id::parse(&g.to_string()), Some(g));
    }

    #[test]
    fn ids_never_name_another_path() {
        for bad in [
            "",
            ".",
            "..",
            "1.2",
            "1.2.3.4",
            "1/2.3",
            "../1.2.3",
            "1.2.x",
            "a.b.c",
            "1.1000000000.3",
            " 1.2.3",
        ] {
            assert_eq!(Id::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn requests_round_trip() {
        let id = Id {
            secs: 1,
            nanos: 2,
            pid: 3,
        };
        for a in Action::ALL {
            let name = a.request_name(&id.to_string());
            assert_eq!(Action::parse_request(&name), Some((a, id)));
        }
        assert_eq!(Action::parse_request("zap.1.000000002.3"), None);
        assert_eq!(Action::parse_request("delete.1.2"), None);
        assert_eq!(Action::parse_request(".hold.1.2.3.tmp"), None);
    }

    #[test]
    fn create_makes_the_documented_modes_and_is_idempotent() {
        let home = tempfile::tempdir().unwrap();
        let made = create(home.path()).unwrap();
        assert_eq!(made.len(), 1 + DIRECTORIES.len() + 1);
        let q = Queue::for_home(home.path());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(q.root()), QUEUE_MODE);
        for (name, m) in DIRECTORIES {
            assert_eq!(mode(&q.dir(name)), *m, "{name}");
        }
        assert!(fs::metadata(q.trigger()).unwrap().file_type().is_fifo());
        assert_eq!(mode(&q.trigger()), TRIGGER_MODE);
        assert!(create(home.path()).unwrap().is_empty());
        // Nobody reading the FIFO: the pull reports it.
        assert!(!pull_trigger(&q));
    }

    #[test]
    fn create_refuses_a_file_in_the_way() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join("queue"), b"").unwrap();
        assert_eq!(
            create(home.path()).unwrap_err().kind,
            postern_common::Kind::Perm
        );
    }
}
