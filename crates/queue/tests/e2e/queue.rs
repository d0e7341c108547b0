//! postern-queue: the qmail-queue protocol driven directly (message on fd 0, envelope on
//! fd 1), every exit code, durability order (strace), full disk, concurrency, filters.

use crate::*;
use postern_wire::qmail_queue::envelope::encode as encode_envelope;
use postern_wire::qmail_queue::exit_code as qq;
use postern_wire::queue_file::{Envelope, MAX_ADDRESS};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

const MESSAGE: &[u8] = b"Subject: test\n\nhello\n\0binary \xff bytes\n";

fn env(sender: &str, rcpts: &[&str]) -> Vec<u8> {
    encode_envelope(
        sender.as_bytes(),
        &rcpts
            .iter()
            .map(|r| r.as_bytes().to_vec())
            .collect::<Vec<_>>(),
    )
}

/// Nothing committed and nothing left behind.
fn assert_nothing_queued(inst: &Instance) {
    assert!(
        inst.names("new").is_empty(),
        "new/ holds {:?}",
        inst.names("new")
    );
    assert!(
        inst.names("tmp").is_empty(),
        "tmp/ holds {:?}",
        inst.names("tmp")
    );
}

#[test]
fn a_queued_message_parses_back_to_the_same_envelope_and_bytes() {
    let inst = Instance::create();
    let out = qmail_queue(
        QUEUE,
        inst.home(),
        MESSAGE,
        &env("a@b.test", &["c@d.test", "e@f.test"]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "postern-queue prints nothing");
    let (qf, msg) = inst.only_new();
    let e = &qf.envelope;
    assert_eq!(e.sender, b"a@b.test");
    assert_eq!(
        e.recipients,
        vec![b"c@d.test".to_vec(), b"e@f.test".to_vec()]
    );
    assert_eq!(e.uid, Some(nix::unistd::getuid().as_raw()));
    assert!(e.time.is_some() && !e.priority);
    let text = String::from_utf8_lossy(&msg);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("Received: (postern-queue ") && first.contains(" invoked by uid "),
        "{first}"
    );
    assert!(first.ends_with(" +0000"), "{first}");
    assert_eq!(
        &msg[first.len() + 1..],
        MESSAGE,
        "message bytes kept exactly"
    );
    assert!(inst.names("tmp").is_empty());
    let id = &inst.names("new")[0];
    assert!(postern_queue::layout::Id::parse(id).is_some(), "{id}");
    let mode = fs::metadata(inst.queue().new_file(id))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn null_sender_and_many_recipients_beyond_the_reserved_header() {
    let inst = Instance::create();
    let rcpts: Vec<String> = (0..300)
        .map(|i| format!("recipient-number-{i}@example.test"))
        .collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let out = qmail_queue(QUEUE, inst.home(), MESSAGE, &env("", &refs));
    assert_eq!(out.status.code(), Some(0));
    let (qf, msg) = inst.only_new();
    assert!(qf.envelope.sender.is_empty());
    assert_eq!(qf.envelope.recipients.len(), 300);
    assert!(msg.ends_with(MESSAGE));
    assert!(
        inst.names("tmp").is_empty(),
        "the first tmp file was removed"
    );
}

#[test]
fn priority_and_login_are_recorded_for_a_trusted_caller() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let out = Command::new(QUEUE)
        .env("POSTERN_HOME", inst.home())
        .env("POSTERN_PRIORITY", "1")
        .env("AUTHUSER", "alice@example.test")
        .stdin(File::open(file_with(scratch.path(), "m", MESSAGE)).unwrap())
        .stdout(File::open(file_with(scratch.path(), "e", &env("a@b", &["c@d"]))).unwrap())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(0));
    let envelope = inst.only_new().0.envelope;
    assert!(envelope.priority);
    assert_eq!(
        envelope.extra,
        vec![(b"auth".to_vec(), b"alice@example.test".to_vec())]
    );
}

#[test]
fn every_failure_has_its_qmail_queue_code_and_leaves_nothing() {
    let inst = Instance::create();
    let long = "x".repeat(MAX_ADDRESS + 1); // 1002 bytes + NUL = 1003: refused
    let longest = "y".repeat(MAX_ADDRESS);
    let too_many = encode_envelope(
        b"a@b",
        &vec![b"r@x".to_vec(); postern_wire::queue_file::MAX_RECIPIENTS + 1],
    );
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        (
            "bad first byte",
            b"Xa@b\0Tc@d\0\0".to_vec(),
            qq::ENVELOPE_FORMAT,
        ),
        (
            "record not T",
            b"Fa@b\0Tc@d\0Ze@f\0\0".to_vec(),
            qq::ENVELOPE_FORMAT,
        ),
        ("empty envelope", Vec::new(), qq::READ_ERROR),
        ("EOF mid-address", b"Fa@b\0Tc@".to_vec(), qq::READ_ERROR),
        (
            "EOF before final NUL",
            b"Fa@b\0Tc@d\0".to_vec(),
            qq::READ_ERROR,
        ),
        ("long sender", env(&long, &["c@d"]), qq::ADDRESS_TOO_LONG),
        (
            "long recipient",
            env("a@b", &["c@d", &long]),
            qq::ADDRESS_TOO_LONG,
        ),
        ("too many recipients", too_many, qq::REFUSED),
    ];
    for (what, envelope, code) in cases {
        let out = qmail_queue(QUEUE, inst.home(), MESSAGE, &envelope);
        assert_eq!(out.status.code(), Some(code), "{what}");
        assert!(out.stderr.is_empty(), "{what}: no diagnostics");
        assert_nothing_queued(&inst);
    }
    // The longest address qmail-queue takes still goes through.
    let out = qmail_queue(QUEUE, inst.home(), MESSAGE, &env(&longest, &[&longest]));
    assert_eq!(out.status.code(), Some(0));
    // No recipients at all: accepted, as qmail-queue does, and nothing is kept.
    let before = inst.names("new").len();
    assert_eq!(
        qmail_queue(QUEUE, inst.home(), MESSAGE, b"Fa@b\0\0")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(inst.names("new").len(), before);
    assert!(inst.names("tmp").is_empty());
}

#[test]
fn missing_home_queue_and_tmp_give_61_62_63() {
    let scratch = postern_testkit::tempdir();
    let e = env("a@b", &["c@d"]);
    let nohome = scratch.path().join("absent");
    assert_eq!(
        qmail_queue(QUEUE, &nohome, MESSAGE, &e).status.code(),
        Some(qq::HOME_TROUBLE)
    );
    assert_eq!(
        qmail_queue(QUEUE, scratch.path(), MESSAGE, &e)
            .status
            .code(),
        Some(qq::QUEUE_TROUBLE)
    );
    let inst = Instance::create();
    fs::remove_dir(inst.queue().tmp()).unwrap();
    assert_eq!(
        qmail_queue(QUEUE, inst.home(), MESSAGE, &e).status.code(),
        Some(qq::TMP_TROUBLE)
    );
    fs::create_dir(inst.queue().tmp()).unwrap();
    fs::remove_dir(inst.queue().new_dir()).unwrap();
    assert_eq!(
        qmail_queue(QUEUE, inst.home(), MESSAGE, &e).status.code(),
        Some(qq::NEW_TROUBLE)
    );
    assert!(
        inst.names("tmp").is_empty(),
        "tmp file removed after a failed commit"
    );
}

#[test]
fn the_trigger_is_pulled_after_the_commit() {
    let inst = Instance::create();
    // Hold the read end open, as postern-send does.
    let mut fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(inst.queue().trigger())
        .unwrap();
    assert_eq!(
        qmail_queue(QUEUE, inst.home(), MESSAGE, &env("a@b", &["c@d"]))
            .status
            .code(),
        Some(0)
    );
    let mut buf = [0u8; 8];
    assert_eq!(
        fifo.read(&mut buf).unwrap(),
        1,
        "one byte written to lock/trigger"
    );
}

/// strace's view of one run: the syscall lines of interest, in order.
fn strace_lines(inst: &Instance, strace: &Path) -> Vec<String> {
    let scratch = postern_testkit::tempdir();
    let log = scratch.path().join("trace");
    let status = Command::new(strace)
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,link,openat,exit_group",
        ])
        .arg(QUEUE)
        .env("POSTERN_HOME", inst.home())
        .stdin(File::open(file_with(scratch.path(), "m", MESSAGE)).unwrap())
        .stdout(File::open(file_with(scratch.path(), "e", &env("a@b", &["c@d"]))).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn strace_shows_file_fsync_rename_and_directory_fsync_before_exit() {
    let Some(strace) = postern_testkit::require("strace", "strace") else {
        return;
    };
    let inst = Instance::create();
    let lines = strace_lines(&inst, &strace);
    let id = inst.names("new").pop().expect("queued");
    let find = |from: usize, pred: &dyn Fn(&str) -> bool, what: &str| -> usize {
        lines[from..]
            .iter()
            .position(|l| pred(l))
            .map(|p| p + from)
            .unwrap_or_else(|| panic!("strace: no {what} after line {from}:\n{}", lines.join("\n")))
    };
    let fd_of = |line: &str| line.rsplit("= ").next().unwrap().trim().to_string();
    let open_tmp = find(
        0,
        &|l| l.contains(&format!("\"./tmp/{id}\"")) && l.contains("O_EXCL"),
        "openat of tmp/ID",
    );
    let tmp_fd = fd_of(&lines[open_tmp]);
    let fsync_file = find(
        open_tmp,
        &|l| l.contains(&format!("fsync({tmp_fd})")) && l.ends_with("= 0"),
        "fsync of the file",
    );
    let rename = find(
        fsync_file,
        &|l| {
            l.contains("rename")
                && l.contains(&format!("\"./tmp/{id}\""))
                && l.contains(&format!("\"./new/{id}\""))
        },
        "rename into new/",
    );
    let open_new = find(
        rename,
        &|l| l.contains("openat") && l.contains("\"./new\""),
        "openat of new/",
    );
    let new_fd = fd_of(&lines[open_new]);
    let fsync_dir = find(
        open_new,
        &|l| l.contains(&format!("fsync({new_fd})")) && l.ends_with("= 0"),
        "fsync of new/",
    );
    let exit = find(fsync_dir, &|l| l.contains("exit_group(0)"), "exit_group(0)");
    eprintln!(
        "strace order:\n  {}\n  {}\n  {}\n  {}\n  {}\n  {}",
        lines[open_tmp],
        lines[fsync_file],
        lines[rename],
        lines[open_new],
        lines[fsync_dir],
        lines[exit]
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root: mount a tmpfs"]
fn a_full_disk_gives_53_and_leaves_nothing() {
    postern_testkit::require_root("mount a tmpfs");
    let scratch = postern_testkit::tempdir();
    let home = scratch.path().join("home");
    fs::create_dir(&home).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&home)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(mounted, "cannot mount a tmpfs at {}", home.display());
    let _guard = Tmpfs(home.clone());
    layout::create(&home).unwrap();
    let inst_queue = Queue::for_home(&home);
    let big = vec![b'x'; 1024 * 1024];
    let out = qmail_queue(QUEUE, &home, &big, &env("a@b", &["c@d"]));
    assert_eq!(out.status.code(), Some(qq::WRITE_ERROR));
    assert!(names(&inst_queue.new_dir()).is_empty());
    assert!(names(&inst_queue.tmp()).is_empty(), "tmp file removed");
    // And a message that fits still goes through afterwards.
    let out = qmail_queue(QUEUE, &home, MESSAGE, &env("a@b", &["c@d"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(names(&inst_queue.new_dir()).len(), 1);
}

#[test]
fn two_hundred_concurrent_injections_all_land_with_distinct_ids() {
    const N: usize = 200;
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let mut children = Vec::new();
    for i in 0..N {
        let m = file_with(
            scratch.path(),
            &format!("m{i}"),
            format!("Subject: {i}\n\nbody {i}\n").as_bytes(),
        );
        let e = file_with(
            scratch.path(),
            &format!("e{i}"),
            &env("a@b", &[&format!("r{i}@x.test")]),
        );
        let child = Command::new(QUEUE)
            .env("POSTERN_HOME", inst.home())
            .stdin(File::open(m).unwrap())
            .stdout(File::open(e).unwrap())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(0));
    }
    let ids = inst.names("new");
    assert_eq!(ids.len(), N);
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        let (qf, msg) = read_queue_file(&inst.queue().new_file(id));
        let rcpt = String::from_utf8(qf.envelope.recipients[0].clone()).unwrap();
        let i: usize = rcpt
            .trim_start_matches('r')
            .trim_end_matches("@x.test")
            .parse()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&msg).ends_with(&format!("body {i}\n")),
            "message {id} matches its envelope"
        );
        assert!(seen.insert(i), "recipient {i} twice");
    }
    assert!(inst.names("tmp").is_empty());
}

/// A qmail-queue filter: adds a header to fd 0, passes fd 1 (the envelope) untouched.
pub fn write_filter(dir: &Path) -> PathBuf {
    let path = dir.join("filter");
    postern_testkit::write_script(
        &path,
        &format!("#!/bin/sh\n{{ echo 'X-Filtered: yes'; cat; }} | {QUEUE}\n"),
    );
    path
}

#[test]
fn a_qmail_queue_filter_in_front_of_postern_queue() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let filter = write_filter(scratch.path());
    let out = qmail_queue(
        filter.to_str().unwrap(),
        inst.home(),
        MESSAGE,
        &env("a@b", &["c@d"]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (qf, msg) = inst.only_new();
    assert_eq!(
        qf.envelope,
        Envelope {
            uid: qf.envelope.uid,
            time: qf.envelope.time,
            ..Envelope::new("a@b", vec![b"c@d".to_vec()])
        }
    );
    let text = String::from_utf8_lossy(&msg);
    assert!(text.lines().nth(1) == Some("X-Filtered: yes"), "{text}");
    // The filter passes our exit codes through.
    let out = qmail_queue(filter.to_str().unwrap(), inst.home(), MESSAGE, b"Xbad\0");
    assert_eq!(out.status.code(), Some(qq::ENVELOPE_FORMAT));
}

#[test]
#[ignore = "needs root: make a setgid copy"]
fn setgid_ignores_postern_home() {
    postern_testkit::require_root("make a setgid copy");
    assert!(
        !Path::new(postern_common::home::DEFAULT_HOME).exists(),
        "this test needs a machine without {} (an installed postern)",
        postern_common::home::DEFAULT_HOME
    );
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let copy = scratch.path().join("postern-queue");
    fs::copy(QUEUE, &copy).unwrap();
    nix::unistd::chown(&copy, None, Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o2755)).unwrap();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = qmail_queue(
        copy.to_str().unwrap(),
        inst.home(),
        MESSAGE,
        &env("a@b", &["c@d"]),
    );
    // It looked for /var/postern, not $POSTERN_HOME.
    assert_eq!(out.status.code(), Some(qq::HOME_TROUBLE));
    assert!(inst.names("new").is_empty());
}

/// Regression (a setuid postern-queue had no size bound: any local user could fill the
/// queue disk): installed setuid in an instance (`HOME/bin/postern-queue`, root's), run
/// by `nobody`, a message over `control/databytes` (+ the trace slack) exits 31 and
/// leaves nothing; one under it is queued; root is not bound.
#[test]
#[ignore = "needs root: install a setuid copy"]
fn setuid_postern_queue_has_no_size_bound() {
    use postern_queue::enqueue::TRACE_SLACK;
    postern_testkit::require_root("install a setuid copy");
    let home = postern_testkit::tempdir();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(home.path().join("bin")).unwrap();
    fs::set_permissions(home.path().join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(home.path().join("control")).unwrap();
    postern_queue::layout::create(home.path()).unwrap();
    fs::write(home.path().join("control/databytes"), "1000\n").unwrap();
    let copy = home.path().join("bin/postern-queue");
    fs::copy(QUEUE, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o4755)).unwrap();
    let scratch = postern_testkit::tempdir();
    let run = |as_nobody: bool, size: u64| {
        let mut msg = b"Subject: big\n\n".to_vec();
        msg.resize(size as usize, b'x');
        let m = file_with(scratch.path(), "message", &msg);
        let e = file_with(scratch.path(), "envelope", &env("a@b", &["c@d"]));
        let mut cmd = if as_nobody {
            // Setuid for nobody: POSTERN_HOME is ignored (and removed to be sure).
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&copy)
                .env_remove("POSTERN_HOME");
            c
        } else {
            // Root: not setid at all (real = effective uid), so POSTERN_HOME counts.
            let mut c = Command::new(&copy);
            c.env("POSTERN_HOME", home.path());
            c
        };
        cmd.stdin(File::open(m).unwrap())
            .stdout(Stdio::from(File::open(e).unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap()
            .status
            .code()
    };
    let names = |sub: &str| crate::names(&home.path().join("queue").join(sub));
    assert_eq!(run(true, 1000 + TRACE_SLACK + 1), Some(qq::REFUSED));
    assert!(names("new").is_empty() && names("tmp").is_empty());
    assert_eq!(run(true, 1000 + TRACE_SLACK), Some(qq::OK));
    assert_eq!(names("new").len(), 1);
    // Root (real uid 0) is trusted: no bound.
    assert_eq!(run(false, 1000 + TRACE_SLACK + 1), Some(qq::OK));
    assert_eq!(names("new").len(), 2);
}
