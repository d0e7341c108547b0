//! postern-supervise, postern-svc, postern-svstat and postern-svok, against each other
//! and against Debian's daemontools 0.76 (`/usr/bin/svstat`, `svc`, `supervise`, `svok`):
//! the classic tools drive our supervise and ours drive theirs.

use postern_common::tai64n::Tai64n;
use postern_supervision::status::{Extended, Status, StatusFile, WANT_DOWN, WANT_UP};
use postern_testkit::{
    expect_within, process_alive, require, run, wait_until, write_script, Daemon, TempDir,
};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_postern-supervise");
const SVC: &str = env!("CARGO_BIN_EXE_postern-svc");
const SVSTAT: &str = env!("CARGO_BIN_EXE_postern-svstat");
const SVOK: &str = env!("CARGO_BIN_EXE_postern-svok");

/// Generous: the test machine is shared and loaded.
/// For what should happen: generous, so a busy machine does not fail a test.
const SOON: Duration = Duration::from_secs(30);
/// "Within about a second", with room for a loaded machine.
const RESTART_DEADLINE: Duration = Duration::from_secs(3);

/// A service directory `svc` in a temp dir, with a `run` script.
struct Service {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Service {
    fn new(run: &str) -> Service {
        let tmp = postern_testkit::tempdir();
        let dir = tmp.path().join("svc");
        fs::create_dir(&dir).unwrap();
        write_script(&dir.join("run"), &format!("#!/bin/sh\n{run}\n"));
        Service { _tmp: tmp, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Start a supervise (ours or the classic one) on it.
    fn supervise_with(&self, program: &Path) -> Daemon {
        let mut cmd = Command::new(program);
        cmd.arg(&self.dir);
        let d = Daemon::spawn_quiet("supervise", cmd);
        expect_within(SOON, "supervise to open supervise/ok", || {
            self.supervise_running()
        });
        d
    }

    fn supervise(&self) -> Daemon {
        self.supervise_with(Path::new(SUPERVISE))
    }

    fn supervise_running(&self) -> bool {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.path("supervise/ok"))
            .is_ok()
    }

    fn status(&self) -> Option<Status> {
        let bytes = fs::read(self.path("supervise/status")).ok()?;
        StatusFile::parse(&bytes).ok().map(|f| f.main())
    }

    fn pid(&self) -> u32 {
        self.status().map(|s| s.pid).unwrap_or(0)
    }

    /// Wait until a process runs whose pid is not `old`; return it.
    fn wait_up_other_than(&self, old: u32, within: Duration) -> u32 {
        let mut pid = 0;
        let ok = wait_until(within, || {
            pid = self.pid();
            pid != 0 && pid != old && process_alive(pid)
        });
        assert!(
            ok,
            "service not up (with a pid other than {old}) within {within:?}"
        );
        pid
    }

    fn wait_up(&self) -> u32 {
        self.wait_up_other_than(0, SOON)
    }

    fn lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn label(&self) -> String {
        self.dir.display().to_string()
    }
}

fn tool(program: &Path, args: &[&str], dirs: &[&Path]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(program);
    cmd.args(args).args(dirs);
    run(&mut cmd, Duration::from_secs(30))
}

/// One line of svstat output for `s`, without the `DIR: ` prefix.
fn svstat_line(program: &Path, s: &Service) -> String {
    let (code, out, _) = tool(program, &[], &[&s.dir]);
    assert_eq!(code, Some(0));
    let prefix = format!("{}: ", s.label());
    let line = out.strip_suffix('\n').unwrap_or(&out);
    line.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected svstat output {out:?}"))
        .to_string()
}

/// `up (pid N) S seconds` + `suffix` with any S.
fn is_up(line: &str, pid: u32, suffix: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("up (pid {pid}) ")) else {
        return false;
    };
    let Some(secs) = rest.strip_suffix(&format!(" seconds{suffix}")) else {
        return false;
    };
    secs.parse::<u64>().is_ok()
}

fn is_down(line: &str, suffix: &str) -> bool {
    let Some(rest) = line.strip_prefix("down ") else {
        return false;
    };
    let Some(secs) = rest.strip_suffix(&format!(" seconds{suffix}")) else {
        return false;
    };
    secs.parse::<u64>().is_ok()
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn classic_svstat_reads_our_status_and_classic_svc_controls_our_supervise() {
    let (Some(svstat), Some(svc)) = (
        require("svstat", "daemontools"),
        require("svc", "daemontools"),
    ) else {
        return;
    };
    let s = Service::new("exec sleep 1000");
    let _sup = s.supervise();
    let pid = s.wait_up();
    assert!(
        is_up(&svstat_line(&svstat, &s), pid, ""),
        "{}",
        svstat_line(&svstat, &s)
    );

    tool(&svc, &["-p"], &[&s.dir]);
    expect_within(SOON, "paused", || {
        is_up(&svstat_line(&svstat, &s), pid, ", paused")
    });
    expect_within(SOON, "process stopped", || proc_state(pid) == Some('T'));
    tool(&svc, &["-c"], &[&s.dir]);
    expect_within(SOON, "continued", || {
        is_up(&svstat_line(&svstat, &s), pid, "")
    });

    tool(&svc, &["-d"], &[&s.dir]);
    expect_within(SOON, "down after svc -d", || {
        is_down(&svstat_line(&svstat, &s), ", normally up")
    });
    assert!(!process_alive(pid), "the service got TERM");

    tool(&svc, &["-u"], &[&s.dir]);
    let pid2 = s.wait_up_other_than(pid, SOON);
    assert!(is_up(&svstat_line(&svstat, &s), pid2, ""));

    // -dx: the service stops and our supervise exits.
    tool(&svc, &["-dx"], &[&s.dir]);
    expect_within(SOON, "supervise gone", || !s.supervise_running());
    assert!(!process_alive(pid2));
    assert_eq!(svstat_line(&svstat, &s), "supervise not running");
}

#[test]
fn classic_svstat_sees_normally_down_and_want_down() {
    let Some(svstat) = require("svstat", "daemontools") else {
        return;
    };
    let s = Service::new("trap 'exit 0' TERM\nwhile :; do sleep 0.1; done");
    fs::write(s.path("down"), "").unwrap();
    let _sup = s.supervise();
    // Status written and nothing started.
    assert_eq!(s.status().map(|st| (st.pid, st.want)), Some((0, WANT_DOWN)));
    assert!(
        is_down(&svstat_line(&svstat, &s), ""),
        "{}",
        svstat_line(&svstat, &s)
    );

    let (code, _, _) = tool(Path::new(SVC), &["-o"], &[&s.dir]);
    assert_eq!(code, Some(0));
    let pid = s.wait_up();
    assert!(
        is_up(&svstat_line(&svstat, &s), pid, ", normally down"),
        "{}",
        svstat_line(&svstat, &s)
    );
    assert_eq!(
        s.status().map(|st| st.want),
        Some(0),
        "svc -o leaves want byte 0"
    );
}

#[test]
fn a_down_file_keeps_the_service_down_until_svc_u() {
    let s = Service::new("echo ran >> started\nexec sleep 1000");
    fs::write(s.path("down"), "").unwrap();
    let _sup = s.supervise();
    // A negative check needs a window: give a wrongly started run time to show.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        s.lines("started").is_empty(),
        "run started despite the down file"
    );
    let line = svstat_line(Path::new(SVSTAT), &s);
    assert!(is_down(&line, ""), "{line}");

    tool(Path::new(SVC), &["-u"], &[&s.dir]);
    let pid = s.wait_up();
    assert_eq!(s.lines("started"), ["ran"]);
    assert!(is_up(
        &svstat_line(Path::new(SVSTAT), &s),
        pid,
        ", normally down"
    ));
}

#[test]
fn our_tools_drive_the_classic_supervise() {
    let (Some(classic), Some(_)) = (
        require("supervise", "daemontools"),
        require("svok", "daemontools"),
    ) else {
        return;
    };
    let s = Service::new("exec sleep 1000");
    let mut sup = s.supervise_with(&classic);
    let (code, _, _) = tool(Path::new(SVOK), &[], &[&s.dir]);
    assert_eq!(code, Some(0));
    let pid = s.wait_up();
    assert!(is_up(&svstat_line(Path::new(SVSTAT), &s), pid, ""));

    let (code, _, err) = tool(Path::new(SVC), &["-d", "-w", "down", "10"], &[&s.dir]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert!(is_down(
        &svstat_line(Path::new(SVSTAT), &s),
        ", normally up"
    ));
    assert!(!process_alive(pid));

    let (code, _, _) = tool(Path::new(SVC), &["-u", "-w", "up", "10"], &[&s.dir]);
    assert_eq!(code, Some(0));
    let pid2 = s.wait_up_other_than(pid, SOON);

    tool(Path::new(SVC), &["-p"], &[&s.dir]);
    expect_within(SOON, "paused", || {
        is_up(&svstat_line(Path::new(SVSTAT), &s), pid2, ", paused")
    });
    tool(Path::new(SVC), &["-c"], &[&s.dir]);

    // Our extra letters are ignored by 0.76, and the usual ones still work after them.
    let (code, _, _) = tool(Path::new(SVC), &["-q12w"], &[&s.dir]);
    assert_eq!(code, Some(0));
    tool(Path::new(SVC), &["-dx"], &[&s.dir]);
    assert!(
        sup.wait_exit(SOON).is_some(),
        "classic supervise exits on -dx"
    );
    let (code, _, _) = tool(Path::new(SVOK), &[], &[&s.dir]);
    assert_eq!(code, Some(100));
    assert_eq!(svstat_line(Path::new(SVSTAT), &s), "supervise not running");
}

#[test]
fn one_supervise_per_directory_ours_and_classic_share_the_lock() {
    let s = Service::new("exec sleep 1000");
    let _sup = s.supervise();
    let (code, _, err) = tool(Path::new(SUPERVISE), &[], &[&s.dir]);
    assert_eq!(code, Some(111));
    assert!(
        err.contains("unable to acquire") && err.lines().count() == 1,
        "{err}"
    );
    if let Some(classic) = require("supervise", "daemontools") {
        let (code, _, err) = tool(&classic, &[], &[&s.dir]);
        assert_eq!(
            code,
            Some(111),
            "classic supervise must see our flock: {err}"
        );
    }
}

#[test]
fn kill_9_is_restarted_within_about_a_second() {
    let s = Service::new("exec sleep 1000");
    let _sup = s.supervise();
    let pid = s.wait_up();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let pid2 = s.wait_up_other_than(pid, RESTART_DEADLINE);
    assert_ne!(pid, pid2);
}

#[test]
fn a_service_that_exits_at_once_restarts_at_most_once_a_second() {
    let s = Service::new("echo start >> starts\nexit 0");
    let _sup = s.supervise();
    expect_within(SOON, "first start", || !s.lines("starts").is_empty());
    let before = s.lines("starts").len();
    // Measuring a rate needs a window; only an upper bound is asserted.
    std::thread::sleep(Duration::from_secs(3));
    let starts = s.lines("starts").len() - before;
    assert!(starts <= 4, "{starts} starts in 3 s");
}

#[test]
fn finish_gets_the_exit_code_and_the_signal() {
    let s = Service::new("if [ -e ran ]; then exec sleep 1000; fi\ntouch ran\nexit 7");
    write_script(&s.path("finish"), "#!/bin/sh\necho \"$1 $2\" >> finished\n");
    let _sup = s.supervise();
    let first = s.wait_up();
    expect_within(SOON, "finish after exit 7", || {
        s.lines("finished").first().map(String::as_str) == Some("7 0")
    });
    // The first run exits at once; kill the second, long-lived one (exec sleep).
    let pid = if process_alive(first) && s.path("ran").exists() && first != 0 {
        first
    } else {
        s.wait_up_other_than(first, RESTART_DEADLINE)
    };
    expect_within(SOON, "the second run", || process_alive(pid));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let pid2 = s.wait_up_other_than(pid, RESTART_DEADLINE);
    assert_eq!(s.lines("finished")[1], "-1 9");

    tool(Path::new(SVC), &["-d"], &[&s.dir]);
    expect_within(SOON, "finish after TERM", || s.lines("finished").len() == 3);
    assert_eq!(s.lines("finished")[2], "-1 15");
    assert!(!process_alive(pid2));
}

#[test]
fn a_slow_finish_is_killed_and_the_service_restarts() {
    let s = Service::new("echo start >> starts\nexit 0");
    write_script(
        &s.path("finish"),
        "#!/bin/sh\necho $$ >> finishers\nexec sleep 1000\n",
    );
    let _sup = s.supervise();
    expect_within(SOON, "a finish", || !s.lines("finishers").is_empty());
    let finisher: u32 = s.lines("finishers")[0].parse().unwrap();
    // FINISH_TIMEOUT is 5 s; then KILL, then the next start.
    expect_within(Duration::from_secs(12), "second start", || {
        s.lines("starts").len() >= 2
    });
    assert!(!process_alive(finisher));
}

#[test]
fn a_run_that_cannot_be_executed_counts_as_exit_111() {
    let s = Service::new("exec sleep 1000");
    fs::set_permissions(
        s.path("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    write_script(&s.path("finish"), "#!/bin/sh\necho \"$1 $2\" >> finished\n");
    let _sup = s.supervise();
    expect_within(SOON, "finish 111 0", || {
        s.lines("finished").first().map(String::as_str) == Some("111 0")
    });
    assert_eq!(s.pid(), 0);
    // Making it executable is enough: supervise keeps trying.
    fs::set_permissions(
        s.path("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    s.wait_up();
}

#[test]
fn svc_wait_up_and_down_and_time_out_with_111() {
    let s = Service::new("exec sleep 1000");
    let _sup = s.supervise();
    let (code, _, _) = tool(Path::new(SVC), &["-w", "up", "10"], &[&s.dir]);
    assert_eq!(code, Some(0));
    let (code, _, err) = tool(Path::new(SVC), &["-w", "down", "1"], &[&s.dir]);
    assert_eq!(code, Some(111));
    assert_eq!(err.lines().count(), 1);
    assert!(err.starts_with("postern-svc: fatal: timed out"), "{err}");

    let (code, _, _) = tool(Path::new(SVC), &["-d", "-w", "down", "10"], &[&s.dir]);
    assert_eq!(code, Some(0));
    assert_eq!(s.pid(), 0);
    let (code, _, _) = tool(Path::new(SVC), &["-w", "up", "1"], &[&s.dir]);
    assert_eq!(code, Some(111));
}

#[test]
fn svc_signal_letters_reach_the_service() {
    let s = Service::new(
        "trap 'echo hup >> got' HUP\ntrap 'echo usr1 >> got' USR1\ntrap 'echo winch >> got' WINCH\n\
         trap 'echo quit >> got' QUIT\ntrap 'echo alrm >> got' ALRM\necho ready > ready\n\
         while :; do sleep 0.1; done",
    );
    let _sup = s.supervise();
    s.wait_up();
    expect_within(SOON, "traps set", || s.path("ready").exists());
    for (letter, word) in [
        ("-h", "hup"),
        ("-1", "usr1"),
        ("-w", "winch"),
        ("-q", "quit"),
        ("-a", "alrm"),
    ] {
        tool(Path::new(SVC), &[letter], &[&s.dir]);
        expect_within(SOON, word, || s.lines("got").iter().any(|l| l == word));
    }
    // encore's svc sends a leading `l`; it and `L + =` must be harmless.
    let mut fifo = OpenOptions::new()
        .write(true)
        .open(s.path("supervise/control"))
        .unwrap();
    std::io::Write::write_all(&mut fifo, b"lL+=h").unwrap();
    expect_within(SOON, "second hup", || {
        s.lines("got").iter().filter(|l| *l == "hup").count() == 2
    });
}

/// A directory that looks supervised: a held `supervise/ok` and a hand-written status.
fn fake_supervised(bytes: &[u8]) -> (TempDir, PathBuf, File) {
    let tmp = postern_testkit::tempdir();
    let dir = tmp.path().join("svc");
    fs::create_dir_all(dir.join("supervise")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("supervise/ok"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.join("supervise/ok"))
        .unwrap();
    fs::write(dir.join("supervise/status"), bytes).unwrap();
    (tmp, dir, reader)
}

fn seconds_ago(secs: i64) -> Tai64n {
    let now = Tai64n::now();
    Tai64n::from_unix(now.unix_secs() - secs, 0)
}

fn svstat_output(program: &Path, dir: &Path) -> String {
    let (code, out, _) = tool(program, &[], &[dir]);
    assert_eq!(code, Some(0));
    out
}

#[test]
fn svstat_reads_20_and_40_byte_status_files() {
    let main = Status {
        stamp: seconds_ago(100),
        pid: 4242,
        paused: false,
        want: WANT_UP,
    };
    let log = Status {
        stamp: seconds_ago(50),
        pid: 0,
        paused: false,
        want: WANT_UP,
    };
    let twenty = Extended {
        status: main,
        extra: [3, 0],
    }
    .pack();
    let (_t, dir, _r) = fake_supervised(&twenty);
    let d = dir.display();
    let out = svstat_output(Path::new(SVSTAT), &dir);
    assert!(
        out == format!("{d}: up (pid 4242) 100 seconds\n")
            || out == format!("{d}: up (pid 4242) 101 seconds\n"),
        "{out}"
    );

    let forty = StatusFile::WithLog {
        main: Extended {
            status: main,
            extra: [3, 0],
        },
        log: Extended {
            status: log,
            extra: [0, 0],
        },
    };
    let (_t2, dir2, _r2) = fake_supervised(&forty.to_bytes());
    let out = svstat_output(Path::new(SVSTAT), &dir2);
    let lines: Vec<&str> = out.lines().collect();
    let d2 = dir2.display();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("{d2}: up (pid 4242) 10")),
        "{out}"
    );
    assert!(lines[1].starts_with(&format!("{d2} log: down 5")), "{out}");
    assert!(
        lines[1].ends_with(" seconds, normally up, want up"),
        "{out}"
    );

    // The classic svstat reads the first 18 bytes of the same files the same way.
    if let Some(classic) = require("svstat", "daemontools") {
        let out = svstat_output(&classic, &dir2);
        assert!(out.starts_with(&format!("{d2}: up (pid 4242) 10")), "{out}");
    }
}

#[test]
fn svstat_failure_lines() {
    let (_t, dir, _r) = fake_supervised(&[0u8; 10]);
    let d = dir.display();
    assert_eq!(
        svstat_output(Path::new(SVSTAT), &dir),
        format!("{d}: unable to read supervise/status: bad format\n")
    );
    let tmp = postern_testkit::tempdir();
    let missing = tmp.path().join("nope");
    let out = svstat_output(Path::new(SVSTAT), &missing);
    assert!(
        out.starts_with(&format!("{}: unable to chdir: ", missing.display())),
        "{out}"
    );
    fs::create_dir_all(tmp.path().join("s/supervise")).unwrap();
    nix::unistd::mkfifo(
        &tmp.path().join("s/supervise/ok"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = svstat_output(Path::new(SVSTAT), &tmp.path().join("s"));
    assert!(out.ends_with(": supervise not running\n"), "{out}");
}

#[test]
fn svok_exit_codes() {
    let tmp = postern_testkit::tempdir();
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    assert_eq!(
        tool(Path::new(SVOK), &[], &[&plain]).0,
        Some(100),
        "no supervise dir"
    );
    fs::create_dir(plain.join("supervise")).unwrap();
    nix::unistd::mkfifo(
        &plain.join("supervise/ok"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (code, out, err) = tool(Path::new(SVOK), &[], &[&plain]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(100), "", ""),
        "FIFO without a reader"
    );
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(plain.join("supervise/ok"))
        .unwrap();
    assert_eq!(tool(Path::new(SVOK), &[], &[&plain]).0, Some(0), "a reader");
    let (code, _, err) = tool(Path::new(SVOK), &[], &[&tmp.path().join("missing")]);
    assert_eq!(code, Some(111));
    assert!(
        err.starts_with("postern-svok: fatal: unable to chdir to "),
        "{err}"
    );
}

#[test]
fn bad_usage_exits_100_with_one_line() {
    let cases: [(&str, &[&str]); 7] = [
        (SVC, &["-z", "x"]),
        (SVC, &["-w", "up", "soon", "x"]),
        (SUPERVISE, &[]),
        (SUPERVISE, &["a", "b"]),
        (SVOK, &[]),
        (SVSTAT, &["-x"]),
        (env!("CARGO_BIN_EXE_postern-svscan"), &["a", "b"]),
    ];
    for (program, args) in cases {
        let (code, out, err) = tool(Path::new(program), args, &[]);
        let name = Path::new(program).file_name().unwrap().to_str().unwrap();
        assert_eq!(code, Some(100), "{name} {args:?}");
        assert_eq!(out, "");
        assert_eq!(err.lines().count(), 1, "{name} {args:?}: {err}");
        assert!(err.starts_with(&format!("{name}: usage: {name} ")), "{err}");
    }
    let (_, _, err) = tool(Path::new(SVC), &["-z"], &[]);
    assert_eq!(
        err,
        "postern-svc: usage: postern-svc [-udopchaitkxq12w] [-w up|down SECS] dir...\n"
    );
}

#[test]
fn term_to_supervise_stops_the_service_and_exits() {
    let s = Service::new("exec sleep 1000");
    let mut cmd = Command::new(SUPERVISE);
    cmd.arg(&s.dir).stdin(Stdio::null()).stdout(Stdio::null());
    // Not in a group of its own here: only supervise itself gets the TERM.
    let mut child = cmd.spawn().unwrap();
    let pid = s.wait_up();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let ok = wait_until(SOON, || matches!(child.try_wait(), Ok(Some(_))));
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
        panic!("supervise still running {:?} after TERM", start.elapsed());
    }
    expect_within(SOON, "service gone", || !process_alive(pid));
}
