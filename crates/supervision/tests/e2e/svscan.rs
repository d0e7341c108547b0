//! postern-svscan: services and their loggers joined by a pipe, new services picked up
//! on SIGALRM, and SIGTERM leaving no process behind.

use postern_supervision::status::StatusFile;
use postern_testkit::{expect_within, process_alive, write_script, Daemon, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SVSCAN: &str = env!("CARGO_BIN_EXE_postern-svscan");
/// For what should happen: generous, so a busy machine does not fail a test.
const SOON: Duration = Duration::from_secs(30);
/// Shutdown is bounded by svscan's SHUTDOWN_TIMEOUT (10 s); allow for a loaded machine.
const SHUTDOWN: Duration = Duration::from_secs(20);

struct ScanDir {
    tmp: TempDir,
    /// The directory svscan watches.
    root: PathBuf,
}

impl ScanDir {
    fn new() -> ScanDir {
        let tmp = postern_testkit::tempdir();
        let root = tmp.path().join("service");
        fs::create_dir(&root).unwrap();
        ScanDir { tmp, root }
    }

    /// Add a service `name` (made under a dot-name, then renamed into place, so a scan
    /// never sees it half-made). `log_run` adds `log/run`.
    fn add(&self, name: &str, run: &str, log_run: Option<&str>) {
        let temp = self.root.join(format!(".{name}"));
        fs::create_dir(&temp).unwrap();
        write_script(&temp.join("run"), &format!("#!/bin/sh\n{run}\n"));
        if let Some(log_run) = log_run {
            fs::create_dir(temp.join("log")).unwrap();
            write_script(&temp.join("log/run"), &format!("#!/bin/sh\n{log_run}\n"));
        }
        fs::rename(&temp, self.root.join(name)).unwrap();
    }

    /// A file outside the scanned directory, for scripts to write to.
    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn start(&self) -> Daemon {
        let mut cmd = Command::new(SVSCAN);
        cmd.arg(&self.root);
        Daemon::spawn_quiet("svscan", cmd)
    }

    fn pid(&self, service: &str) -> u32 {
        fs::read(self.root.join(service).join("supervise/status"))
            .ok()
            .and_then(|b| StatusFile::parse(&b).ok())
            .map(|f| f.main().pid)
            .unwrap_or(0)
    }

    fn wait_up(&self, service: &str, within: Duration) -> u32 {
        let mut pid = 0;
        expect_within(within, &format!("{service} up"), || {
            pid = self.pid(service);
            pid != 0 && process_alive(pid)
        });
        pid
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The pids of `pid`'s living children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) && process_alive(child) {
            out.push(child);
        }
    }
    out
}

#[test]
fn services_and_logs_are_joined_by_a_pipe() {
    let scan = ScanDir::new();
    let logged = scan.out("logged");
    scan.add(
        "hello",
        "echo line-from-hello\nexec sleep 1000",
        Some(&format!("exec cat >> {}", logged.display())),
    );
    scan.add("quiet", "exec sleep 1000", None);
    fs::create_dir(scan.root.join(".hidden")).unwrap();
    write_script(
        &scan.root.join(".hidden/run"),
        &format!("#!/bin/sh\ntouch {}\n", scan.out("hidden-ran").display()),
    );
    fs::write(scan.root.join("not-a-dir"), "").unwrap();

    let _svscan = scan.start();
    let first = scan.wait_up("hello", SOON);
    scan.wait_up("hello/log", SOON);
    scan.wait_up("quiet", SOON);
    expect_within(SOON, "the line in the log", || {
        read(&logged).contains("line-from-hello\n")
    });

    // The logger restarts without losing what the service writes meanwhile.
    let logger = scan.pid("hello/log");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(logger as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    expect_within(SOON, "the second line in the log", || {
        read(&logged).matches("line-from-hello\n").count() == 2
    });
    assert!(!scan.out("hidden-ran").exists(), "dot-names are skipped");
}

#[test]
fn a_new_service_is_picked_up_on_sigalrm() {
    let scan = ScanDir::new();
    scan.add("one", "exec sleep 1000", None);
    let svscan = scan.start();
    scan.wait_up("one", SOON);
    scan.add("two", "exec sleep 1000", None);
    svscan.signal(libc::SIGALRM);
    // Well under the 5 s scan interval.
    scan.wait_up("two", Duration::from_secs(3));
}

#[test]
fn sigterm_stops_everything_and_the_log_gets_the_last_lines() {
    let scan = ScanDir::new();
    let logged = scan.out("logged");
    scan.add(
        "talker",
        "trap 'echo goodbye; exit 0' TERM\necho hello\nwhile :; do sleep 0.1; done",
        Some(&format!("exec cat >> {}", logged.display())),
    );
    scan.add("plain", "exec sleep 1000", None);
    let mut svscan = scan.start();
    scan.wait_up("talker", SOON);
    scan.wait_up("talker/log", SOON);
    scan.wait_up("plain", SOON);
    expect_within(SOON, "hello logged", || read(&logged).contains("hello\n"));

    // Everything that runs: the supervise processes and what they run.
    let supervisors = children(svscan.pid());
    assert_eq!(
        supervisors.len(),
        3,
        "one supervise per service and per log"
    );
    let mut all: Vec<u32> = supervisors.clone();
    for s in &supervisors {
        all.extend(children(*s));
    }
    assert!(all.len() >= 6, "{all:?}");

    svscan.signal(libc::SIGTERM);
    let status = svscan
        .wait_exit(SHUTDOWN)
        .expect("svscan exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    for pid in &all {
        expect_within(SOON, &format!("pid {pid} gone"), || !process_alive(*pid));
    }
    assert_eq!(
        read(&logged),
        "hello\ngoodbye\n",
        "the log got the service's last line"
    );
}

/// A service that ignores TERM is killed once the shutdown's time is up (or at once on a
/// second TERM), with everything else.
fn stubborn_service_is_killed(second_term: bool) {
    let scan = ScanDir::new();
    scan.add(
        "stubborn",
        "trap '' TERM\nexec sleep 1000",
        Some("exec cat > /dev/null"),
    );
    let mut svscan = scan.start();
    let service = scan.wait_up("stubborn", SOON);
    let logger = scan.wait_up("stubborn/log", SOON);
    let supervisors = children(svscan.pid());
    svscan.signal(libc::SIGTERM);
    if second_term {
        // Once the service has been asked to stop (want down), a second TERM forces it.
        expect_within(SOON, "want down", || {
            fs::read(scan.root.join("stubborn/supervise/status"))
                .map(|b| b.get(17) == Some(&b'd'))
                .unwrap_or(false)
        });
        svscan.signal(libc::SIGTERM);
        assert!(
            svscan.wait_exit(SOON).is_some(),
            "a second TERM ends the shutdown at once"
        );
    } else {
        assert!(
            svscan.wait_exit(SHUTDOWN).is_some(),
            "svscan exits after its shutdown timeout"
        );
    }
    for pid in supervisors.iter().chain([&service, &logger]) {
        expect_within(SOON, &format!("pid {pid} gone"), || !process_alive(*pid));
    }
}

#[test]
fn a_service_ignoring_term_is_killed_after_the_shutdown_timeout() {
    stubborn_service_is_killed(false);
}

#[test]
fn a_second_term_kills_at_once() {
    stubborn_service_is_killed(true);
}

/// Started from a shell without job control (`cmd &` in a script), svscan gets SIGINT
/// and SIGQUIT ignored, and ignored signals survive `exec`. svscan and supervise start
/// every service with the default disposition and an empty mask, so a service's own
/// traps fire and `svc -i`/`-q` reach it.
#[test]
fn services_start_with_default_signals_whatever_svscan_inherited() {
    let scan = ScanDir::new();
    let got = scan.out("got");
    scan.add(
        "traps",
        &format!(
            "trap 'echo int >> {0}' INT\ntrap 'echo quit >> {0}' QUIT\n\
             while :; do sleep 0.1; done",
            got.display()
        ),
        None,
    );
    // `trap '' INT QUIT` in sh is what a non-interactive shell does to `cmd &`.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("trap '' INT QUIT; exec \"$0\" \"$1\"")
        .arg(SVSCAN)
        .arg(&scan.root);
    let mut svscan = Daemon::spawn_quiet("svscan", cmd);
    let pid = scan.wait_up("traps", SOON);
    let ignored = postern_testkit::proc_status_field(svscan.pid(), "SigIgn").unwrap();
    assert_eq!(
        u64::from_str_radix(&ignored, 16).unwrap() & 0b110,
        0b110,
        "svscan itself runs with INT and QUIT ignored"
    );
    // supervise reports the pid at fork; the masks are the service's once it has exec'd
    // (until then the child is a copy of supervise, signals blocked around the fork).
    expect_within(SOON, "the service to exec", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| !c.trim().starts_with("postern-"))
            .unwrap_or(false)
    });
    for field in ["SigIgn", "SigBlk"] {
        let value = postern_testkit::proc_status_field(pid, field).unwrap();
        // Bits 31 and 32 are glibc's own real-time signals, never ours to reset.
        let ours = u64::from_str_radix(&value, 16).unwrap() & 0x7fff_ffff;
        assert_eq!(ours, 0, "{field} of the service: {value}");
    }
    let svc = env!("CARGO_BIN_EXE_postern-svc");
    let service = scan.root.join("traps");
    for (letter, word) in [("-i", "int"), ("-q", "quit")] {
        let status = Command::new(svc)
            .arg(letter)
            .arg(&service)
            .status()
            .unwrap();
        assert!(status.success());
        expect_within(SOON, word, || read(&got).lines().any(|l| l == word));
    }
    svscan.signal(libc::SIGTERM);
    assert!(svscan.wait_exit(SHUTDOWN).is_some());
}
