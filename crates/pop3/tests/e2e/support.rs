//! Helpers shared by the POP3 end-to-end tests (and included by postern-tlsd's): a
//! temporary instance, a loopback accept loop running a fresh chain per connection, and
//! a Python runner with a small prelude around poplib and raw sockets.
#![allow(dead_code)]

use postern_testkit::{self as testkit, Daemon, TempDir};
use std::fs;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The programs under test: cargo's path when this crate builds them, else the
/// workspace's (postern-tlsd's tests include this file).
pub static POPUP: LazyLock<String> =
    LazyLock::new(|| bin(option_env!("CARGO_BIN_EXE_postern-popup"), "postern-popup"));
pub static POP3D: LazyLock<String> =
    LazyLock::new(|| bin(option_env!("CARGO_BIN_EXE_postern-pop3d"), "postern-pop3d"));

fn bin(cargo: Option<&str>, name: &str) -> String {
    cargo
        .map(String::from)
        .unwrap_or_else(|| testkit::workspace_bin(name).display().to_string())
}
pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "secret word";

/// A uid/gid that no account uses, for running the chain without root.
pub fn throwaway_ids() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    (61000..62000).find_map(|id| {
        let free_user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id))
            .ok()
            .flatten()
            .is_none();
        let free_group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id))
            .ok()
            .flatten()
            .is_none();
        (free_user && free_group).then_some((id, id))
    })
}

/// A temporary instance: `home/control`, a Maildir, a log file, a checkpassword script.
pub struct Instance {
    pub dir: TempDir,
    pub home: PathBuf,
    pub maildir: PathBuf,
    pub log: PathBuf,
    pub checkpw: PathBuf,
    pub ids: Option<(u32, u32)>,
}

#[allow(clippy::new_without_default)] // each one is a fresh directory, not a default value
impl Instance {
    pub fn new() -> Instance {
        let dir = testkit::tempdir();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(home.join("control")).unwrap();
        let maildir = dir.path().join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let log = dir.path().join("log");
        fs::write(&log, "").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        let checkpw = dir.path().join("checkpw");
        // A checkpassword program for one user, as the interface describes.
        testkit::write_script(
            &checkpw,
            &format!(
                "#!/bin/bash\n\
                 IFS= read -r -d '' user <&3\n\
                 IFS= read -r -d '' pass <&3\n\
                 if [ \"$user\" = '{USER}' ] && [ \"$pass\" = '{PASSWORD}' ]; then\n\
                 export USER=\"$user\" MAILDIR='{}'\n\
                 exec \"$@\"\n\
                 fi\n\
                 exit 1\n",
                maildir.display()
            ),
        );
        let inst = Instance {
            dir,
            home,
            maildir,
            log,
            checkpw,
            ids: throwaway_ids(),
        };
        inst.chown(&inst.maildir.clone());
        inst
    }

    /// Give `path` (recursively) to the throwaway uid.
    pub fn chown(&self, path: &Path) {
        if let Some((u, g)) = self.ids {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{u}:{g}"))
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Write a control file.
    pub fn control(&self, name: &str, text: &str) {
        fs::write(self.home.join("control").join(name), text).unwrap();
    }

    /// Put a message file at `sub/name` with modification time `mtime`.
    pub fn deliver(&self, sub: &str, name: &str, body: &[u8], mtime: i64) -> PathBuf {
        let path = self.maildir.join(sub).join(name);
        fs::write(&path, body).unwrap();
        let t = nix::sys::time::TimeVal::new(mtime, 0);
        nix::sys::stat::utimes(&path, &t, &t).unwrap();
        self.chown(&path);
        path
    }

    /// File names in `sub/`, sorted.
    pub fn names(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.maildir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log has `count` lines containing `needle`.
    pub fn wait_log(&self, needle: &str, count: usize) {
        testkit::expect_within(
            Duration::from_secs(20),
            &format!("{count} log lines with {needle}"),
            || {
                self.log_text()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
                    >= count
            },
        );
    }

    /// `argv` as a command, under setpriv when we are root.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = match self.ids {
            Some((u, g)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid",
                    &u.to_string(),
                    "--regid",
                    &g.to_string(),
                    "--clear-groups",
                    "--",
                ]);
                c.args(argv);
                c
            }
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.env("POSTERN_HOME", &self.home);
        let log = fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        cmd.stderr(Stdio::from(log));
        cmd
    }

    /// The usual chain: popup HOST checkpw pop3d.
    pub fn chain(&self) -> Command {
        self.command(&[
            &POPUP,
            "pop.example.test",
            self.checkpw.to_str().unwrap(),
            &POP3D,
        ])
    }

    /// A factory of `argv` commands (see [`Instance::command`]) for [`Server::start`].
    pub fn factory(&self, argv: &[&str]) -> impl Fn() -> Command + Send + 'static {
        let template = self.command(argv);
        let program = template.get_program().to_owned();
        let args: Vec<_> = template.get_args().map(|a| a.to_owned()).collect();
        let (home, log) = (self.home.clone(), self.log.clone());
        move || {
            let mut c = Command::new(&program);
            c.args(&args).env("POSTERN_HOME", &home);
            c.stderr(Stdio::from(
                fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
            c
        }
    }

    /// A factory of [`Instance::chain`] commands.
    pub fn chain_factory(&self) -> impl Fn() -> Command + Send + 'static {
        self.factory(&[
            &POPUP,
            "pop.example.test",
            self.checkpw.to_str().unwrap(),
            &POP3D,
        ])
    }
}

/// A loopback listener that runs a fresh chain for every connection, tcpserver style.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    children: Arc<Mutex<Vec<Daemon>>>,
}

impl Server {
    pub fn start(make: impl Fn() -> Command + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let (stop2, children2) = (stop.clone(), children.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let peer = stream
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let fd = OwnedFd::from(stream);
                let mut cmd = make();
                cmd.stdin(Stdio::from(fd.try_clone().unwrap()))
                    .stdout(Stdio::from(fd));
                cmd.env("TCPREMOTEIP", peer);
                children2
                    .lock()
                    .unwrap()
                    .push(Daemon::spawn("pop3 chain", cmd));
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
            children,
        }
    }

    pub fn port_arg(&self) -> String {
        self.port.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.children.lock().unwrap().clear();
    }
}

/// Common Python prelude: `port`, `USER`, `PASSWORD`, `connect()`, `raw()` helpers.
pub const PRELUDE: &str = r#"
import poplib, socket, ssl, sys, base64, time
port = int(sys.argv[1])
USER = sys.argv[2]
PASSWORD = sys.argv[3]
def connect():
    return poplib.POP3('127.0.0.1', port, timeout=30)
def login():
    p = connect()
    p.user(USER)
    p.pass_(PASSWORD)
    return p
class Raw:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=30)
        self.buf = b''
    def line(self):
        while b'\r\n' not in self.buf:
            d = self.s.recv(4096)
            if not d:
                r, self.buf = self.buf, b''
                return r
            self.buf += d
        l, self.buf = self.buf.split(b'\r\n', 1)
        return l
    def send(self, data):
        self.s.sendall(data)
    def closed(self):
        if self.buf:
            return False
        try:
            return self.s.recv(4096) == b''
        except ConnectionResetError:  # closed with our unread input pending
            return True
def expect(cond, what):
    if not cond:
        print('FAILED:', what)
        sys.exit(1)
"#;

/// Run a Python script (after [`PRELUDE`]) against `server`; returns its stdout.
pub fn python(server: &Server, script: &str) -> String {
    python_with(server, script, &[])
}

pub fn python_with(server: &Server, script: &str, extra: &[&str]) -> String {
    let Some(py) = testkit::require("python3", "python3") else {
        return String::new();
    };
    let mut cmd = Command::new(py);
    cmd.arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .arg(server.port_arg())
        .arg(USER)
        .arg(PASSWORD);
    cmd.args(extra);
    let (code, out, err) = testkit::run(&mut cmd, Duration::from_secs(300));
    assert_eq!(
        code,
        Some(0),
        "python failed:\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Message bytes as sent on the wire (LF → CRLF, final CRLF), for expected sizes.
pub fn crlf_size(body: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        n += 1;
        prev = b;
    }
    if !body.is_empty() && prev != b'\n' {
        n += 2;
    }
    n
}
