//! Helpers for postern's end-to-end tests, one per concept:
//!
//! - [`Daemon`]: a child process in its own process group that is stopped (TERM, then
//!   KILL, of the whole group) when the test ends, pass or fail — tests never kill by name.
//! - [`wait_until`]: wait for a condition with a deadline instead of sleeping.
//! - [`require`]: find a third-party program (daemontools, ucspi-tcp, …). A missing one
//!   fails the test (`scripts/test` installs them all as root), unless the developer
//!   asked to skip with `POSTERN_ALLOW_MISSING_TOOLS=1`: a test never passes without
//!   having run.
//! - [`require_root`]: for the tests marked `#[ignore = "needs root: …"]`, which
//!   `scripts/test` runs as root and a run without root reports as ignored.
//! - [`workspace_bin`]: a program built by another crate of the workspace.
//! - [`tempdir`]: a temporary directory removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// A temporary directory (under `$TMPDIR`), removed when dropped.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("postern-test.")
        .tempdir()
        .expect("create temp dir")
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes. Returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Like [`wait_until`] but panics with `what` on timeout.
pub fn expect_within(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Whether a missing third-party tool fails the test (the default, and always under
/// `scripts/test`) or, with `POSTERN_ALLOW_MISSING_TOOLS=1` set by a developer without
/// Debian's tools, skips it (said on stderr, though cargo then counts it as passed).
pub fn interop_required() -> bool {
    std::env::var("POSTERN_ALLOW_MISSING_TOOLS").map_or(true, |v| v != "1")
}

/// The first line of a test marked `#[ignore = "needs root: WHY"]`: run without root
/// (`cargo test -- --ignored` as a user), it fails saying so, rather than pass having
/// checked nothing. `scripts/test` runs these tests as root.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root ({why}): run it as root, as scripts/test does"
    );
}

/// Find `program` on `$PATH` (and in /usr/sbin, /sbin, where Debian puts some tools).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The path of a third-party `program`. Missing, it fails the calling test — or, under
/// `POSTERN_ALLOW_MISSING_TOOLS=1`, is `None` after printing why the test is skipped.
pub fn require(program: &str, package: &str) -> Option<PathBuf> {
    match find_program(program) {
        Some(p) => Some(p),
        None if interop_required() => panic!(
            "{program} (Debian package {package}) is required but not installed; \
             scripts/test installs it when run as root"
        ),
        None => {
            eprintln!("skipped: {program} not installed (Debian package {package}); scripts/test installs it");
            None
        }
    }
}

/// The directory cargo puts the workspace's binaries in (`target/debug`), found from the
/// running test binary (`target/debug/deps/NAME-HASH`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("target dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// A binary of the workspace built by another crate (`cargo test --workspace` and
/// `cargo build --workspace` build them all before any test runs). Not built, it fails
/// the calling test: a skip would hide a test that never ran (or a renamed program).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Debian's dnsmasq on 127.0.0.1 at a free port, serving only what `records` (dnsmasq
/// options such as `--txt-record=…`, `--local=/test/`) say, never the system's resolver.
/// Returns the daemon (stopped on drop) and its port, once it answers queries. The port
/// is free for UDP when picked, but dnsmasq binds TCP on it too, which another test may
/// hold: if dnsmasq exits at once, another port is tried. Without dnsmasq it fails, or
/// is `None` (skipped), as [`require`] says.
pub fn dnsmasq(records: &[String]) -> Option<(Daemon, u16)> {
    let prog = require("dnsmasq", "dnsmasq")?;
    for _ in 0..10 {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut cmd = Command::new(&prog);
        cmd.args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .args(["--listen-address=127.0.0.1", "--pid-file=", "--user=root"])
        .arg(format!("--port={port}"))
        .args(records);
        let mut daemon = Daemon::spawn_quiet("dnsmasq", cmd);
        let mut exited = false;
        let answering = wait_until(Duration::from_secs(10), || {
            exited = daemon.exited().is_some();
            exited || dns_answers(port)
        });
        if answering && !exited {
            return Some((daemon, port));
        }
    }
    panic!("dnsmasq did not start on any of 10 ports");
}

/// Whether a DNS server answers on 127.0.0.1:`port` (any reply to a query for `test`).
fn dns_answers(port: u16) -> bool {
    let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x01\x00\x01";
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    s.send_to(query, ("127.0.0.1", port)).is_ok() && s.recv(&mut [0u8; 512]).is_ok()
}

/// `$PATH` with the workspace's binaries first, for chains that exec each other by name.
pub fn path_with_workspace_bins() -> std::ffi::OsString {
    let mut dirs = vec![target_dir()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("join PATH")
}

/// A running child in its own process group; dropping it stops the whole group.
pub struct Daemon {
    child: Option<Child>,
    name: String,
}

impl Daemon {
    /// Start `cmd` in a new process group (stdin from /dev/null unless set otherwise).
    pub fn spawn(name: &str, mut cmd: Command) -> Daemon {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// Start with stdin/stdout/stderr as given by the caller or null.
    pub fn spawn_quiet(name: &str, mut cmd: Command) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Daemon::spawn(name, cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon already stopped")
    }

    /// Send `signal` to the process itself.
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            unsafe_free_kill(c.id() as i32, signal);
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait for it to exit by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    /// Stop the whole process group: TERM, up to 5 s grace, then KILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        unsafe_free_kill(-pgid, libc::SIGTERM);
        unsafe_free_kill(-pgid, libc::SIGCONT);
        let gone = wait_until(Duration::from_secs(5), || {
            matches!(child.try_wait(), Ok(Some(_))) && !group_alive(pgid)
        });
        if !gone {
            eprintln!("{}: still running after TERM, sending KILL", self.name);
            unsafe_free_kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unsafe_free_kill(pid: i32, signal: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if let Ok(sig) = Signal::try_from(signal) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Whether any process is left in process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// Whether process `pid` exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// A field of `/proc/PID/status` (e.g. `Uid`, `Gid`, `VmHWM`), for privilege checks.
pub fn proc_status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// Run `cmd` to completion with a deadline; returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut d = Daemon::spawn("command", std::mem::replace(cmd, Command::new("true")));
    let child = d.child_mut();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = d.wait_exit(timeout);
    if status.is_none() {
        d.stop();
        panic!("command did not finish within {timeout:?}");
    }
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    (status.and_then(|s| s.code()), stdout, stderr)
}

/// Write an executable shell script at `path`.
///
/// The file is written by a short-lived `sh` child, never through a descriptor of the
/// test process: another test thread that forks while we hold the file open for
/// writing would keep that descriptor until its exec, and running the script then fails
/// with ETXTBSY ("text file busy").
pub fn write_script(path: &Path, body: &str) {
    use std::io::Write;
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sh to write a script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write script");
    assert!(
        child.wait().expect("wait for sh").success(),
        "write {}",
        path.display()
    );
}

/// Copy an executable to `to` (for tests that need a program beside stand-ins), in a
/// child process for the same reason as [`write_script`].
pub fn copy_executable(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cp {} {}", from.display(), to.display());
}
