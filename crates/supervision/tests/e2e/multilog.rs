//! postern-multilog and postern-tai64nlocal, run as real processes in temp directories;
//! stamps cross-checked with Debian's classic `tai64n` and `tai64nlocal`, locks with the
//! classic `multilog`.

use postern_common::tai64n::Tai64n;
use postern_testkit::{expect_within, require, tempdir, wait_until, Daemon};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(30);
const MULTILOG: &str = env!("CARGO_BIN_EXE_postern-multilog");
const TAI64NLOCAL: &str = env!("CARGO_BIN_EXE_postern-tai64nlocal");

/// A multilog with its stdin held open by the test.
struct Logger {
    daemon: Daemon,
    input: Option<ChildStdin>,
}

impl Logger {
    /// Start `postern-multilog ARGS` in `cwd`, stderr to `stderr` (or null).
    fn start(cwd: &Path, args: &[&str], stderr: Option<&Path>) -> Logger {
        let mut cmd = Command::new(MULTILOG);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        match stderr {
            Some(path) => cmd.stderr(fs::File::create(path).unwrap()),
            None => cmd.stderr(Stdio::null()),
        };
        let mut daemon = Daemon::spawn("postern-multilog", cmd);
        let input = daemon.child_mut().stdin.take();
        Logger { daemon, input }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.input
            .as_mut()
            .expect("input open")
            .write_all(bytes)
            .unwrap();
    }

    /// Close stdin (EOF) and wait for the exit.
    fn finish(&mut self) -> ExitStatus {
        self.input = None;
        self.daemon.wait_exit(T).expect("multilog exits after EOF")
    }
}

/// Run multilog over `input` to EOF; returns (exit code, stderr).
fn run_multilog(cwd: &Path, args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>) {
    let mut cmd = Command::new(MULTILOG);
    cmd.args(args).current_dir(cwd);
    let (code, _, err) = run_with_input(cmd, input);
    (code, err)
}

/// Run a filter over `input`; returns (exit code, stdout).
fn pipe_through(cmd: Command, input: &[u8]) -> (Option<i32>, Vec<u8>) {
    let (code, out, _) = run_with_input(cmd, input);
    (code, out)
}

/// Run `cmd` with `input` on stdin; returns (exit code, stdout, stderr).
fn run_with_input(mut cmd: Command, input: &[u8]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut d = Daemon::spawn("command", cmd);
    let child = d.child_mut();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut v);
        v
    });
    let status = d.wait_exit(T).expect("command finishes");
    writer.join().unwrap();
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

/// Numbered lines: `line 000001 pad...\n`.
fn numbered_lines(count: usize, pad: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        out.extend_from_slice(format!("line {i:06} {}\n", "x".repeat(pad)).as_bytes());
    }
    out
}

/// The archives of a log dir, oldest first.
fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('@'))
        .collect();
    names.sort();
    names
}

/// Everything a log dir holds, archives (oldest first) then current.
fn all_logged(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for a in archives(dir) {
        out.extend(fs::read(a).unwrap());
    }
    out.extend(fs::read(dir.join("current")).unwrap_or_default());
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Drop the `@label ` prefix of every line, checking it is one.
fn strip_stamps(data: &[u8]) -> (Vec<u8>, Vec<Tai64n>) {
    let mut out = Vec::new();
    let mut stamps = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        let t = Tai64n::parse_label(line)
            .unwrap_or_else(|| panic!("no stamp: {:?}", String::from_utf8_lossy(line)));
        assert_eq!(line[25], b' ');
        stamps.push(t);
        out.extend_from_slice(&line[26..]);
    }
    (out, stamps)
}

fn usage_is_one_line(program: &str, args: &[&str]) {
    let (code, _out, err) = postern_testkit::run(Command::new(program).args(args), T);
    assert_eq!(code, Some(100), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    let name = Path::new(program)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(err.starts_with(&format!("{name}: usage: ")), "{err:?}");
}

#[test]
fn bad_usage_exits_100_with_one_line() {
    for args in [
        &[][..],
        &["x"],
        &["./log", "t"],
        &["sbig", "./log"],
        &["n", "./log"],
        &["="],
        &["ee"],
    ] {
        usage_is_one_line(MULTILOG, args);
    }
    usage_is_one_line(TAI64NLOCAL, &["extra"]);
}

#[test]
fn t_stamps_every_line_and_classic_tai64nlocal_reads_them() {
    let Some(classic) = require("tai64nlocal", "daemontools") else {
        return;
    };
    let tmp = tempdir();
    let input = numbered_lines(200, 10);
    let before = SystemTime::now();
    let (code, err) = run_multilog(tmp.path(), &["t", "./log"], &input);
    let after = SystemTime::now();
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    let logged = fs::read(tmp.path().join("log/current")).unwrap();
    let (text, stamps) = strip_stamps(&logged);
    assert_eq!(text, input);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "stamps in order");
    let slack = Duration::from_secs(1);
    assert!(stamps[0] >= Tai64n::from_system(before - slack));
    assert!(*stamps.last().unwrap() <= Tai64n::from_system(after + slack));
    for tz in ["UTC", "Asia/Kolkata", "America/New_York"] {
        let mut ours = Command::new(TAI64NLOCAL);
        ours.env("TZ", tz);
        let mut theirs = Command::new(&classic);
        theirs.env("TZ", tz);
        let (c1, out1) = pipe_through(ours, &logged);
        let (c2, out2) = pipe_through(theirs, &logged);
        assert_eq!((c1, c2), (Some(0), Some(0)));
        assert_eq!(
            String::from_utf8_lossy(&out1),
            String::from_utf8_lossy(&out2),
            "TZ={tz}"
        );
        assert!(
            out1.starts_with(b"20"),
            "converted: {:?}",
            String::from_utf8_lossy(&out1[..40])
        );
    }
}

#[test]
fn our_tai64nlocal_reads_classic_tai64n_stamps() {
    let Some(tai64n) = require("tai64n", "daemontools") else {
        return;
    };
    let Some(classic) = require("tai64nlocal", "daemontools") else {
        return;
    };
    let mut input = b"plain\n\n\xff\xfe not utf-8 \0 nul\n@ not a label\n".to_vec();
    input.extend(vec![b'z'; 5000]);
    input.push(b'\n');
    let (code, stamped) = pipe_through(Command::new(&tai64n), &input);
    assert_eq!(code, Some(0));
    assert_eq!(strip_stamps(&stamped).0, input);
    for tz in ["UTC", "Europe/Berlin"] {
        let mut ours = Command::new(TAI64NLOCAL);
        ours.env("TZ", tz);
        let mut theirs = Command::new(&classic);
        theirs.env("TZ", tz);
        let (_, out1) = pipe_through(ours, &stamped);
        let (_, out2) = pipe_through(theirs, &stamped);
        assert_eq!(out1, out2, "TZ={tz}");
    }
    // Lines without a label come out byte for byte.
    let (code, out) = pipe_through(Command::new(TAI64NLOCAL), &input);
    assert_eq!(code, Some(0));
    assert_eq!(out, input);
}

#[test]
fn rotation_keeps_at_most_n_files_of_at_most_s_bytes() {
    let tmp = tempdir();
    let input = numbered_lines(4000, 40); // 200 000 bytes
    let (code, err) = run_multilog(tmp.path(), &["s4096", "n3", "./log"], &input);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    let dir = tmp.path().join("log");
    let archived = archives(&dir);
    assert_eq!(
        archived.len(),
        2,
        "n3 keeps two archives and current: {archived:?}"
    );
    for a in &archived {
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() == 27 && name.ends_with(".s"), "{name}");
        let data = fs::read(a).unwrap();
        assert!(
            data.len() <= 4096 && data.len() > 4096 - 2000 - 60,
            "{name}: {} bytes",
            data.len()
        );
        assert!(data.ends_with(b"\n"), "{name} ends at a line boundary");
    }
    assert!(fs::metadata(dir.join("current")).unwrap().len() <= 4096);
    // What is kept is the newest part of the input, from a line boundary on.
    let kept = all_logged(&dir);
    assert!(input.ends_with(&kept));
    assert_eq!(input[input.len() - kept.len() - 1], b'\n');

    // With room for every file, every line is there exactly once, in order.
    let (code, _) = run_multilog(tmp.path(), &["s4096", "n1000", "./all"], &input);
    assert_eq!(code, Some(0));
    let all = tmp.path().join("all");
    assert!(archives(&all).len() > 40);
    for a in archives(&all) {
        let len = fs::metadata(&a).unwrap().len();
        assert!(len <= 4096, "{a:?}");
    }
    assert_eq!(all_logged(&all), input);
}

#[test]
fn current_is_0744_after_eof_and_0644_while_written() {
    let tmp = tempdir();
    let mut log = Logger::start(tmp.path(), &["./log"], None);
    log.send(b"one\n");
    let current = tmp.path().join("log/current");
    expect_within(T, "line in current", || {
        fs::read(&current).unwrap_or_default() == b"one\n"
    });
    assert_eq!(mode(&current), 0o644);
    assert_eq!(log.finish().code(), Some(0));
    assert_eq!(mode(&current), 0o744);
    // A clean restart appends to the complete current instead of archiving it.
    let (code, _) = run_multilog(tmp.path(), &["./log"], b"two\n");
    assert_eq!(code, Some(0));
    assert_eq!(fs::read(&current).unwrap(), b"one\ntwo\n");
    assert!(archives(&tmp.path().join("log")).is_empty());
}

#[test]
fn term_at_a_line_boundary_exits_cleanly_after_finishing_the_line() {
    let tmp = tempdir();
    let mut log = Logger::start(tmp.path(), &["./log"], None);
    log.send(b"whole\nhalf");
    let current = tmp.path().join("log/current");
    expect_within(T, "first line written", || {
        fs::read(&current).unwrap_or_default() == b"whole\n"
    });
    log.daemon.signal(libc::SIGTERM);
    // Mid-line: it waits for the rest of the line.
    assert!(
        log.daemon.wait_exit(Duration::from_millis(300)).is_none(),
        "exited mid-line"
    );
    log.send(b" line\n");
    let status = log.daemon.wait_exit(T).expect("exit after the line");
    assert_eq!(status.code(), Some(0));
    assert_eq!(fs::read(&current).unwrap(), b"whole\nhalf line\n");
    assert_eq!(mode(&current), 0o744);
}

#[test]
fn restart_after_kill_9_archives_current_as_u_and_loses_nothing() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let before = numbered_lines(100, 5);
    let mut log = Logger::start(tmp.path(), &["./log"], None);
    log.send(&before);
    expect_within(T, "all lines in current", || {
        fs::read(dir.join("current")).unwrap_or_default() == before
    });
    log.daemon.signal(libc::SIGKILL);
    log.daemon.wait_exit(T).expect("killed");
    assert_eq!(
        mode(&dir.join("current")),
        0o644,
        "an unclean stop leaves current incomplete"
    );

    let after = b"after the crash\n";
    let (code, _) = run_multilog(tmp.path(), &["./log"], after);
    assert_eq!(code, Some(0));
    let archived = archives(&dir);
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(archived[0].to_string_lossy().ends_with(".u"));
    assert_eq!(fs::read(&archived[0]).unwrap(), before);
    assert_eq!(fs::read(dir.join("current")).unwrap(), after);
    assert_eq!(mode(&dir.join("current")), 0o744);
}

#[test]
fn selection_runs_left_to_right() {
    let tmp = tempdir();
    let input = b"an error here\nall fine\na warning\nwarning: skip me\nerror and warning\n";
    let args = [
        "./all", "-*", "+*error*", "./errors", "+*warn*", "-*skip*", "./both",
    ];
    let (code, _) = run_multilog(tmp.path(), &args, input);
    assert_eq!(code, Some(0));
    let read =
        |d: &str| String::from_utf8(fs::read(tmp.path().join(d).join("current")).unwrap()).unwrap();
    assert_eq!(read("all"), String::from_utf8_lossy(input));
    assert_eq!(read("errors"), "an error here\nerror and warning\n");
    assert_eq!(
        read("both"),
        "an error here\na warning\nerror and warning\n"
    );
}

#[test]
fn patterns_see_the_timestamp() {
    let tmp = tempdir();
    let input = b"fatal: one\nfine\n";
    let (code, _) = run_multilog(
        tmp.path(),
        &["t", "-fatal*", "./a", "-*", "+* fatal: *", "./b"],
        input,
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        strip_stamps(&fs::read(tmp.path().join("a/current")).unwrap()).0,
        input
    );
    assert_eq!(
        strip_stamps(&fs::read(tmp.path().join("b/current")).unwrap()).0,
        b"fatal: one\n"
    );
}

#[test]
fn long_lines_are_selected_by_their_first_1000_bytes_and_kept_whole() {
    let tmp = tempdir();
    let mut early = b"marker ".to_vec();
    early.extend(vec![b'a'; 2993]);
    early.push(b'\n');
    let mut late = vec![b'b'; 1200];
    late.extend_from_slice(b" marker\n");
    let input = [early.clone(), late, b"last line without newline".to_vec()].concat();
    let (code, _) = run_multilog(
        tmp.path(),
        &["./all", "-*", "+*marker*", "./marked"],
        &input,
    );
    assert_eq!(code, Some(0));
    assert_eq!(fs::read(tmp.path().join("marked/current")).unwrap(), early);
    let mut want = input.clone();
    want.push(b'\n');
    assert_eq!(fs::read(tmp.path().join("all/current")).unwrap(), want);
}

#[test]
fn e_copies_selected_lines_to_stderr() {
    let tmp = tempdir();
    let long = format!("show {}", "L".repeat(300));
    let input = format!("show one\nhide two\n{long}\n");
    let (code, err) = run_multilog(tmp.path(), &["-*", "+show*", "e"], input.as_bytes());
    assert_eq!(code, Some(0));
    assert_eq!(
        String::from_utf8(err).unwrap(),
        format!("show one\n{}...\n", &long[..200])
    );
}

#[test]
fn status_file_holds_the_last_selected_line_in_1001_bytes() {
    let tmp = tempdir();
    let long = format!("status {}", "s".repeat(1500));
    let input = format!("status first\nother\n{long}\nstatus last\nignored\n");
    let (code, _) = run_multilog(tmp.path(), &["-*", "+status*", "=st"], input.as_bytes());
    assert_eq!(code, Some(0));
    let st = fs::read(tmp.path().join("st")).unwrap();
    assert_eq!(st.len(), 1001);
    assert_eq!(&st[..12], b"status last\n");
    assert!(st[11..].iter().all(|&b| b == b'\n'));
    // A long line keeps its first 1000 bytes and one newline.
    let (code, _) = run_multilog(tmp.path(), &["-*", "+status*", "=st2"], long.as_bytes());
    assert_eq!(code, Some(0));
    let st2 = fs::read(tmp.path().join("st2")).unwrap();
    assert_eq!(&st2[..1000], &long.as_bytes()[..1000]);
    assert_eq!(st2[1000], b'\n');
}

#[test]
fn processor_output_is_archived_and_state_passes_through() {
    let tmp = tempdir();
    let input = numbered_lines(300, 20); // 9 300 bytes: two rotations at s4096
    let processor = "!sed s/^/P:/; cat <&4 >&5; echo rotated >&5";
    let (code, err) = run_multilog(tmp.path(), &["s4096", processor, "./log"], &input);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    let dir = tmp.path().join("log");
    let archived = archives(&dir);
    assert_eq!(archived.len(), 2, "{archived:?}");
    let mut processed = Vec::new();
    for a in &archived {
        assert!(a.to_string_lossy().ends_with(".s"));
        assert_eq!(mode(a), 0o744);
        processed.extend(fs::read(a).unwrap());
    }
    processed.extend(
        fs::read(dir.join("current"))
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|l| {
                let mut p = b"P:".to_vec();
                p.extend_from_slice(l);
                p
            }),
    );
    let want: Vec<u8> = input
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|l| [b"P:".as_slice(), l].concat())
        .collect();
    assert_eq!(processed, want, "every line processed once, in order");
    assert_eq!(
        fs::read_to_string(dir.join("state")).unwrap(),
        "rotated\nrotated\n"
    );
    for leftover in ["previous", "processed", "newstate"] {
        assert!(!dir.join(leftover).exists(), "{leftover} left behind");
    }
}

#[test]
fn a_failing_processor_is_retried_until_it_succeeds() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    // Fails while the flag file exists.
    let flag = tmp.path().join("fail");
    fs::write(&flag, b"").unwrap();
    let processor = format!("!test -e {} && exit 1; cat", flag.display());
    let errlog = tmp.path().join("stderr");
    let mut log = Logger::start(tmp.path(), &["s4096", &processor, "./log"], Some(&errlog));
    let input = numbered_lines(150, 20);
    log.send(&input);
    expect_within(T, "processor failure warning", || {
        fs::read_to_string(&errlog)
            .unwrap_or_default()
            .contains("processor failed in ./log")
    });
    fs::remove_file(&flag).unwrap();
    assert_eq!(log.finish().code(), Some(0));
    assert_eq!(all_logged(&dir), input);
}

#[test]
fn alrm_rotates_a_non_empty_current() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let mut log = Logger::start(tmp.path(), &["./log"], None);
    log.send(b"before alarm\n");
    expect_within(T, "line written", || {
        fs::read(dir.join("current")).unwrap_or_default() == b"before alarm\n"
    });
    log.daemon.signal(libc::SIGALRM);
    expect_within(T, "an archive", || archives(&dir).len() == 1);
    assert_eq!(fs::read(&archives(&dir)[0]).unwrap(), b"before alarm\n");
    // An empty current is not rotated.
    log.daemon.signal(libc::SIGALRM);
    log.send(b"after\n");
    assert_eq!(log.finish().code(), Some(0));
    assert_eq!(archives(&dir).len(), 1);
    assert_eq!(fs::read(dir.join("current")).unwrap(), b"after\n");
}

#[test]
fn thousands_of_lines_with_t_arrive_once_and_in_order() {
    let tmp = tempdir();
    let input = numbered_lines(20_000, 3);
    let (code, _) = run_multilog(tmp.path(), &["t", "n1000", "./log"], &input);
    assert_eq!(code, Some(0));
    let (text, stamps) = strip_stamps(&all_logged(&tmp.path().join("log")));
    assert_eq!(stamps.len(), 20_000);
    assert_eq!(text, input);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_locked_directory_is_fatal_111() {
    let tmp = tempdir();
    let mut first = Logger::start(tmp.path(), &["./log"], None);
    expect_within(T, "first multilog ready", || {
        tmp.path().join("log/current").exists()
    });
    let (code, err) = run_multilog(tmp.path(), &["./log"], b"x\n");
    assert_eq!(code, Some(111));
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.starts_with("postern-multilog: fatal: unable to lock directory ./log"),
        "{err}"
    );
    assert_eq!(first.finish().code(), Some(0));

    // The classic multilog and ours exclude each other through the same flock.
    let Some(classic) = require("multilog", "daemontools") else {
        return;
    };
    let mut cmd = Command::new(classic);
    cmd.arg("./log")
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut theirs = Daemon::spawn("classic multilog", cmd);
    let lock = tmp.path().join("log/lock");
    let held = wait_until(T, || {
        fs::File::open(&lock).is_ok_and(|f| f.try_lock().is_err())
    });
    assert!(held, "classic multilog took the lock");
    let (code, _) = run_multilog(tmp.path(), &["./log"], b"x\n");
    assert_eq!(code, Some(111));
    theirs.stop();
}

#[test]
fn classic_multilog_and_ours_take_turns_on_one_directory() {
    let Some(classic) = require("multilog", "daemontools") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let (code, _) = run_multilog(tmp.path(), &["./log"], b"ours 1\n");
    assert_eq!(code, Some(0));
    let mut theirs = Command::new(&classic);
    theirs.arg("./log").current_dir(tmp.path());
    assert_eq!(run_with_input(theirs, b"theirs 2\n").0, Some(0));
    let (code, _) = run_multilog(tmp.path(), &["./log"], b"ours 3\n");
    assert_eq!(code, Some(0));
    assert_eq!(
        fs::read(dir.join("current")).unwrap(),
        b"ours 1\ntheirs 2\nours 3\n"
    );
    assert!(
        archives(&dir).is_empty(),
        "clean exits on both sides: no .u archives"
    );

    // Their rotation and ours produce the same kind of archives in the same directory.
    let mut theirs = Command::new(&classic);
    theirs
        .args(["s4096", "n100", "./log"])
        .current_dir(tmp.path());
    let input = numbered_lines(200, 20);
    assert_eq!(run_with_input(theirs, &input).0, Some(0));
    let (code, _) = run_multilog(tmp.path(), &["s4096", "n100", "./log"], &input);
    assert_eq!(code, Some(0));
    let mut want = b"ours 1\ntheirs 2\nours 3\n".to_vec();
    want.extend_from_slice(&input);
    want.extend_from_slice(&input);
    assert_eq!(all_logged(&dir), want);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(at: &Path) -> TinyDisk {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot mount a tmpfs at {}", at.display());
        TinyDisk(at.to_path_buf())
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a test failed with multilog blocked on it): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
#[ignore = "needs root: mount a tmpfs"]
fn a_full_disk_blocks_multilog_and_every_line_arrives_after() {
    postern_testkit::require_root("mount a tmpfs");
    let tmp = tempdir();
    let mnt = tmp.path().join("mnt");
    let _disk = TinyDisk::mount(&mnt);
    // Fill the disk.
    let filler = mnt.join("filler");
    {
        let mut f = fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    let errlog = tmp.path().join("stderr");
    let mut log = Logger::start(tmp.path(), &["./mnt/log"], Some(&errlog));
    let input = numbered_lines(500, 20); // 15 500 bytes
    log.send(&input);
    expect_within(T, "a pausing warning", || {
        fs::read_to_string(&errlog).unwrap_or_default().contains(
            "postern-multilog: warning: unable to write to ./mnt/log/current: no space left on device, pausing",
        )
    });
    assert!(
        log.daemon.exited().is_none(),
        "multilog must block, not exit"
    );
    fs::remove_file(&filler).unwrap();
    assert_eq!(log.finish().code(), Some(0));
    assert_eq!(
        fs::read(mnt.join("log/current")).unwrap(),
        input,
        "every line once, in order"
    );
    drop(log);
}
