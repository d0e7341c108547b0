//! postern-queue: put one message into the queue (docs/queue.md, *postern-queue steps*;
//! docs/postern-queue.md). Speaks the qmail-queue protocol: the message on fd 0, the
//! envelope on fd 1 ([`postern_wire::qmail_queue`]); answers only with an exit code
//! ([`qq`], qmail-queue's), prints nothing.
//!
//! It may be installed setuid to the queue owner, so it trusts nothing from its caller
//! but the two descriptors: `POSTERN_HOME` is honoured only when the real and effective
//! ids agree, and it execs nothing.

use crate::layout::{self, Id, Queue};
use nix::unistd::getuid;
use postern_common::exit::Error;
use postern_wire::qmail_queue::{self, exit_code as qq};
use postern_wire::queue_file::{self as file, Envelope};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The whole job must finish within this, as qmail-queue's alarm(86400): exit 52.
pub const TIME_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);
/// Room reserved for the header in front of the message. A larger envelope (about 60
/// recipients or more) costs one extra copy of the message into a second file.
pub const RESERVE: u64 = 4096;
/// Tries at a fresh ID when `tmp/ID` exists (O_EXCL), before giving up with 63.
pub const MAX_ID_TRIES: u32 = 100;
/// `control/databytes` when it is missing (the documented default, docs/control-files.md), for untrusted callers
/// of a setuid postern-queue.
pub const DEFAULT_DATABYTES: u64 = 10_240_000;
/// Added to `databytes` for untrusted callers: the trace fields (Received:, the
/// filter's) that a caller such as postern-smtpd adds after its own databytes check.
pub const TRACE_SLACK: u64 = 64 * 1024;
/// Attempts at fsyncing `new/` after the commit's rename, before exiting 64 (the file
/// stays in new/: see [`TmpFile::commit_with`]).
pub const FSYNC_TRIES: u32 = 2;
/// Mode of queue files.
pub const FILE_MODE: u32 = 0o640;
/// Read and write in pieces of this size.
const CHUNK: usize = 64 * 1024;

/// Whether the caller's environment may be trusted: not running setuid or setgid.
pub fn trusted_caller() -> bool {
    !postern_common::home::is_setid()
}

/// A failure: its exit code. Nothing is printed (qmail-queue prints no diagnostics).
type Fail = i32;

/// The program: run the job; a failure is its exit code alone, without a word (for
/// `postern_common::exit::run`).
///
/// After [`TIME_LIMIT`] the process exits 52 wherever it is. A file it was writing
/// stays in `tmp/`, where postern-send's sweep removes it after 36 hours (as
/// qmail-clean does for qmail-queue's).
pub fn main() -> postern_common::Result<()> {
    let silent = |code: Fail| Error::code(code, "");
    postern_common::sys::exit_on_alarm(TIME_LIMIT.as_secs() as u32, qq::TIMEOUT)
        .map_err(|_| silent(qq::HOME_TROUBLE))?;
    enqueue().map_err(silent)
}

fn enqueue() -> Result<(), Fail> {
    let trusted = trusted_caller();
    // Setuid: the instance the program is installed in, never the caller's choice.
    let home = postern_common::home::trusted_home();
    let uid = getuid().as_raw();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    std::env::set_current_dir(&home).map_err(|_| qq::HOME_TROUBLE)?;
    std::env::set_current_dir("queue").map_err(|_| qq::QUEUE_TROUBLE)?;
    let queue = Queue::at(".");

    let mut tmp = TmpFile::create(&queue)?;
    let received = received_line(std::process::id(), uid, SystemTime::now());
    tmp.file
        .seek(SeekFrom::Start(RESERVE))
        .map_err(|_| qq::WRITE_ERROR)?;
    tmp.file
        .write_all(received.as_bytes())
        .map_err(|_| qq::WRITE_ERROR)?;
    let limit = size_limit(trusted, uid, &home)?;
    copy_message(&mut io::stdin().lock(), &mut tmp.file, limit)?;

    let fd1 = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|_| qq::READ_ERROR)?;
    let qmail_queue::Envelope { sender, recipients } =
        qmail_queue::Envelope::read(&mut BufReader::new(File::from(fd1)))
            .map_err(|e| e.exit_code())?;
    if recipients.is_empty() {
        // qmail-queue queues such a message and qmail-send drops it at once; keeping
        // nothing is the same outcome without the round trip.
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let envelope = Envelope {
        sender,
        recipients,
        uid: Some(uid),
        time: Some(now),
        priority: wants_priority(trusted, uid, &home),
        extra: authenticated_user(trusted, uid, &home)
            .map(|user| vec![(b"auth".to_vec(), user)])
            .unwrap_or_default(),
    };
    let header = file::header(&envelope, RESERVE as usize);
    if header.len() as u64 > RESERVE {
        tmp = tmp.rewrite_with_header(&queue, &header)?;
    } else {
        file::write_header_at_start(&mut tmp.file, &header).map_err(|_| qq::WRITE_ERROR)?;
    }
    tmp.file.sync_all().map_err(|_| qq::WRITE_ERROR)?;
    tmp.commit(&queue)?;
    layout::pull_trigger(&queue);
    Ok(())
}

/// The trace line postern-queue puts in front of every message. Nothing in it comes
/// from the caller, so nothing can be injected into the header.
pub fn received_line(pid: u32, uid: u32, when: SystemTime) -> String {
    let date = chrono::DateTime::<chrono::Utc>::from(when).format("%a, %d %b %Y %H:%M:%S +0000");
    format!("Received: (postern-queue {pid} invoked by uid {uid}); {date}\n")
}

/// Whether the caller may tell us facts about the message through its environment:
/// we are not setuid (`trusted`), or it is root, or its uid is in `control/priorityuids`
/// (docs/queue.md). A stranger running postern-queue must not claim priority or a login.
fn may_describe(trusted: bool, uid: u32, home: &Path) -> bool {
    if trusted || uid == 0 {
        return true;
    }
    let control = postern_common::control::Control::for_home(home);
    match control.list("priorityuids") {
        Ok(lines) => lines.iter().any(|l| l.text.parse::<u32>() == Ok(uid)),
        Err(_) => false, // unreadable means untrusted
    }
}

/// `POSTERN_PRIORITY=1` counts only from a trusted caller.
fn wants_priority(trusted: bool, uid: u32, home: &Path) -> bool {
    std::env::var_os("POSTERN_PRIORITY").is_some_and(|v| v == "1")
        && may_describe(trusted, uid, home)
}

/// `Iauth=USER`: the login of the SMTP session (`AUTHUSER`, set by postern-smtpd), from a
/// trusted caller only; postern-send holds a hijacked account's mail by it
/// (`control/ratelimit.holdauth`).
fn authenticated_user(trusted: bool, uid: u32, home: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    let user = std::env::var_os("AUTHUSER")?.into_vec();
    let sane = !user.is_empty()
        && user.len() <= file::MAX_ADDRESS
        && user.iter().all(|b| b.is_ascii_graphic());
    (sane && may_describe(trusted, uid, home)).then_some(user)
}

/// The largest message (bytes on fd 0) a caller may queue, `None` for no bound.
///
/// Installed setuid, postern-queue would let any local user fill the queue's disk: a
/// caller that is not trusted (see [`may_describe`]: not setid, root, or listed in
/// `control/priorityuids`) gets `control/databytes` of the trusted home (default
/// [`DEFAULT_DATABYTES`]; 0 = no bound) plus [`TRACE_SLACK`]. A `databytes` that cannot
/// be read is a temporary failure (61), never "no bound".
fn size_limit(trusted: bool, uid: u32, home: &Path) -> Result<Option<u64>, Fail> {
    if may_describe(trusted, uid, home) {
        return Ok(None);
    }
    let control = postern_common::control::Control::for_home(home);
    let bytes = control
        .number("databytes", DEFAULT_DATABYTES)
        .map_err(|_| qq::HOME_TROUBLE)?;
    Ok((bytes > 0).then(|| bytes.saturating_add(TRACE_SLACK)))
}

/// Copy fd 0 to the file: read trouble is 54, write trouble 53. Over `limit`, nothing
/// more is written, the rest of fd 0 is read and dropped (so the caller is not cut off
/// in mid-write), and the answer is 31 (refused for good; the tmp file is removed).
fn copy_message(input: &mut impl Read, out: &mut File, limit: Option<u64>) -> Result<(), Fail> {
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    let mut over = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) if over => return Err(qq::REFUSED),
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(qq::READ_ERROR),
        };
        total = total.saturating_add(n as u64);
        if limit.is_some_and(|l| total > l) {
            over = true;
        }
        if !over {
            out.write_all(&buf[..n]).map_err(|_| qq::WRITE_ERROR)?;
        }
    }
}

/// `tmp/ID` while it is being written: removed on drop unless committed.
struct TmpFile {
    id: Id,
    path: PathBuf,
    file: File,
    done: bool,
}

impl TmpFile {
    /// Create a fresh `tmp/ID` with O_EXCL, trying new IDs while the name is taken.
    fn create(queue: &Queue) -> Result<TmpFile, Fail> {
        TmpFile::create_with(queue, Id::generate)
    }

    /// [`TmpFile::create`] with the IDs from `next_id` (tests force a collision).
    fn create_with(queue: &Queue, mut next_id: impl FnMut() -> Id) -> Result<TmpFile, Fail> {
        for _ in 0..MAX_ID_TRIES {
            let id = next_id();
            let path = queue.tmp_file(&id.to_string());
            let opened = OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path);
            match opened {
                Ok(file) => {
                    return Ok(TmpFile {
                        id,
                        path,
                        file,
                        done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if is_full(&e) => return Err(qq::WRITE_ERROR),
                Err(_) => return Err(qq::TMP_TROUBLE),
            }
        }
        Err(qq::TMP_TROUBLE)
    }

    /// The header did not fit the reservation: write header + message into a new file.
    fn rewrite_with_header(mut self, queue: &Queue, header: &[u8]) -> Result<TmpFile, Fail> {
        let mut next = TmpFile::create(queue)?;
        next.file.write_all(header).map_err(|_| qq::WRITE_ERROR)?;
        self.file
            .seek(SeekFrom::Start(RESERVE))
            .map_err(|_| qq::WRITE_ERROR)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(qq::WRITE_ERROR),
            };
            next.file
                .write_all(&buf[..n])
                .map_err(|_| qq::WRITE_ERROR)?;
        }
        Ok(next) // dropping `self` removes the first file
    }

    /// `rename(tmp/ID, new/ID)` (never replacing anything), then fsync `new/`.
    fn commit(self, queue: &Queue) -> Result<(), Fail> {
        self.commit_with(queue, postern_common::atomic::fsync_dir)
    }

    /// [`TmpFile::commit`] with the directory fsync given (tests make it fail).
    ///
    /// Once the rename is done it is never undone: postern-send may already have taken
    /// `new/ID` over (to `mess/ID`), and undoing it then would leave a half-removed
    /// message or, with the failure exit, a second copy on the client's retry. A failed
    /// fsync of `new/` is tried again [`FSYNC_TRIES`] times in all; if it still fails the
    /// exit is 64 (temporary): the client retries, and the message may then be
    /// delivered twice — never lost, never half there.
    fn commit_with(
        mut self,
        queue: &Queue,
        mut fsync: impl FnMut(&Path) -> io::Result<()>,
    ) -> Result<(), Fail> {
        let id = self.id.to_string();
        let target = queue.new_file(&id);
        postern_common::sys::rename_noreplace(&self.path, &target).map_err(|_| qq::NEW_TROUBLE)?;
        // The file is in new/ now: it is not ours to remove any more.
        self.done = true;
        let dir = queue.new_dir();
        if (0..FSYNC_TRIES).any(|_| fsync(&dir).is_ok()) {
            Ok(())
        } else {
            Err(qq::NEW_TROUBLE)
        }
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_makes_it_try_the_next_id() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::at(dir.path());
        fs::create_dir(queue.tmp()).unwrap();
        let (a, b) = (
            Id {
                secs: 1,
                nanos: 1,
                pid: 1,
            },
            Id {
                secs: 1,
                nanos: 2,
                pid: 1,
            },
        );
        fs::write(queue.tmp_file(&a.to_string()), b"someone else's").unwrap();
        let mut ids = [a, b].into_iter();
        let tmp = TmpFile::create_with(&queue, || ids.next().unwrap()).unwrap();
        assert_eq!(tmp.id, b);
        assert_eq!(
            fs::read(queue.tmp_file(&a.to_string())).unwrap(),
            b"someone else's"
        );
        drop(tmp);
        assert!(
            !queue.tmp_file(&b.to_string()).exists(),
            "an uncommitted file is removed"
        );
        // Always taken: gives up with 63 after MAX_ID_TRIES.
        let err = TmpFile::create_with(&queue, || a).err();
        assert_eq!(err, Some(qq::TMP_TROUBLE));
    }

    /// Regression (enqueue undid its rename after a failed fsync of new/): postern-send
    /// may have taken the file over in that window, so the undo plus a failure exit
    /// could half-remove the message or duplicate it on the client's retry. Now the
    /// rename stands: the fsync is retried once, then the exit is 64 with the message
    /// left in new/.
    #[test]
    fn enqueue_undoes_the_rename_after_a_failed_fsync_of_new() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::at(dir.path());
        fs::create_dir(queue.tmp()).unwrap();
        fs::create_dir(queue.new_dir()).unwrap();
        let names = |d: &Path| -> Vec<String> {
            fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        // fsync fails for good: exit 64, and the message stays in new/.
        let mut tmp = TmpFile::create(&queue).unwrap();
        tmp.file.write_all(b"message").unwrap();
        let id = tmp.id.to_string();
        let mut calls = 0;
        let r = tmp.commit_with(&queue, |_| {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EIO))
        });
        assert_eq!(r, Err(qq::NEW_TROUBLE));
        assert_eq!(calls, FSYNC_TRIES);
        assert_eq!(names(&queue.new_dir()), std::slice::from_ref(&id));
        assert!(names(&queue.tmp()).is_empty(), "the rename was undone");
        assert_eq!(fs::read(queue.new_file(&id)).unwrap(), b"message");
        // A second try that works: queued.
        let tmp = TmpFile::create(&queue).unwrap();
        let mut calls = 0;
        let r = tmp.commit_with(&queue, |d| {
            calls += 1;
            if calls == 1 {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                postern_common::atomic::fsync_dir(d)
            }
        });
        assert_eq!(r, Ok(()));
        assert_eq!(names(&queue.new_dir()).len(), 2);
    }

    /// Regression (a setuid postern-queue had no size bound, so any local user could
    /// fill the queue disk): an untrusted caller gets control/databytes (+ slack).
    #[test]
    fn setuid_postern_queue_has_no_size_bound() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir(home.path().join("control")).unwrap();
        let untrusted = |home: &Path| size_limit(false, 4242, home);
        assert_eq!(
            untrusted(home.path()),
            Ok(Some(DEFAULT_DATABYTES + TRACE_SLACK))
        );
        fs::write(home.path().join("control/databytes"), "1000\n").unwrap();
        assert_eq!(untrusted(home.path()), Ok(Some(1000 + TRACE_SLACK)));
        // Trusted callers: not setid, root, priorityuids.
        assert_eq!(size_limit(true, 4242, home.path()), Ok(None));
        assert_eq!(size_limit(false, 0, home.path()), Ok(None));
        fs::write(home.path().join("control/priorityuids"), "4242\n").unwrap();
        assert_eq!(untrusted(home.path()), Ok(None));
        fs::remove_file(home.path().join("control/priorityuids")).unwrap();
        fs::write(home.path().join("control/databytes"), "0\n").unwrap();
        assert_eq!(untrusted(home.path()), Ok(None), "0 = no bound");
        fs::write(home.path().join("control/databytes"), "lots\n").unwrap();
        assert_eq!(untrusted(home.path()), Err(qq::HOME_TROUBLE));

        // The copy: over the bound nothing more is written, all input is read, 31.
        let dir = tempfile::tempdir().unwrap();
        let mut out = File::create(dir.path().join("f")).unwrap();
        let big = vec![b'x'; CHUNK * 3];
        let mut input = &big[..];
        assert_eq!(
            copy_message(&mut input, &mut out, Some(CHUNK as u64)),
            Err(qq::REFUSED)
        );
        assert!(input.is_empty(), "the rest was read");
        assert!(out.metadata().unwrap().len() <= CHUNK as u64);
        let mut out = File::create(dir.path().join("g")).unwrap();
        let exact = vec![b'x'; 1000];
        assert_eq!(copy_message(&mut &exact[..], &mut out, Some(1000)), Ok(()));
        assert_eq!(copy_message(&mut &big[..], &mut out, None), Ok(()));
    }

    #[test]
    fn received_line_is_fixed_text() {
        let when = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        assert_eq!(
            received_line(42, 1000, when),
            "Received: (postern-queue 42 invoked by uid 1000); Mon, 21 Sep 2026 14:13:20 +0000\n"
        );
    }
}
