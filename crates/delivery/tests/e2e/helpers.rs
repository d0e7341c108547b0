//! A test instance: control files, a compiled user database, mailboxes owned by
//! `nobody` (postern-local refuses to write as root), and the queue.

use postern_testkit::{tempdir, wait_until, Daemon, TempDir};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DOMAIN: &str = "example.test";

pub fn bin(name: &str) -> PathBuf {
    match name {
        "postern-local" => PathBuf::from(env!("CARGO_BIN_EXE_postern-local")),
        "postern-remote" => PathBuf::from(env!("CARGO_BIN_EXE_postern-remote")),
        "postern-send" => PathBuf::from(env!("CARGO_BIN_EXE_postern-send")),
        other => postern_testkit::workspace_bin(other),
    }
}

pub struct Instance {
    pub dir: TempDir,
    pub owner: (u32, u32),
}

impl Instance {
    /// An instance hosting example.test with `users` (name, quota) and `aliases` lines.
    pub fn new(users: &[(&str, u64)], aliases: &str) -> Instance {
        let dir = tempdir();
        let home = dir.path().to_path_buf();
        let home = home.as_path();
        fs::set_permissions(home, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(home.join("control")).unwrap();
        fs::create_dir_all(home.join("users")).unwrap();
        let owner = if nix::unistd::geteuid().is_root() {
            let a = postern_common::privilege::lookup_account("nobody").expect("account nobody");
            fs::write(home.join("control/mailowner"), "nobody\n").unwrap();
            (a.uid, a.gid)
        } else {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        };
        let inst = Instance { dir, owner };
        inst.control("me", "mx.example.test");
        inst.control("domains", DOMAIN);
        let lines: String = users
            .iter()
            .map(|(u, q)| format!("{u}@{DOMAIN}:!:{q}\n"))
            .collect();
        inst.control("users", &lines);
        inst.control("aliases", aliases);
        postern_mailstore::compile_all(home).expect("compile user database");
        for (u, _) in users {
            inst.make_mailbox(u);
        }
        postern_queue::layout::create(home).expect("create queue");
        inst
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn control(&self, name: &str, text: &str) {
        fs::write(self.home().join("control").join(name), format!("{text}\n")).unwrap();
    }

    pub fn make_mailbox(&self, user: &str) {
        let uhome = self.home().join("users").join(DOMAIN).join(user);
        postern_mailstore::maildir::create_mailbox(&uhome, Some(self.owner))
            .expect("create mailbox");
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.home()
            .join("users")
            .join(DOMAIN)
            .join(user)
            .join("Maildir")
    }

    /// The messages in a user's new/, in name order.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let dir = self.maildir(user).join("new");
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names.iter().filter_map(|p| fs::read(p).ok()).collect()
    }

    pub fn count(&self, user: &str) -> usize {
        fs::read_dir(self.maildir(user).join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn queue(&self) -> PathBuf {
        self.home().join("queue")
    }

    /// Files left in a queue directory.
    pub fn queued(&self, dir: &str) -> usize {
        fs::read_dir(self.queue().join(dir))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("POSTERN_HOME", self.home());
        c
    }

    /// Queue a message with postern-queue (fd 0 message, fd 1 envelope).
    pub fn inject(&self, sender: &str, rcpts: &[&str], message: &[u8]) {
        inject_with(
            &bin("postern-queue"),
            self.home(),
            sender,
            rcpts,
            message,
            &[],
        );
    }

    /// Start postern-send; its log lines are collected.
    pub fn start_send(&self) -> Sender {
        Sender::start(self)
    }
}

/// Run postern-queue for one message.
pub fn inject_with(
    prog: &Path,
    home: &Path,
    sender: &str,
    rcpts: &[&str],
    message: &[u8],
    env: &[(&str, &str)],
) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut cmd = Command::new(prog);
    cmd.env("POSTERN_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(r));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run postern-queue");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let mut envf = fs::File::from(w);
    let mut e = format!("F{sender}\0").into_bytes();
    for r in rcpts {
        e.extend_from_slice(format!("T{r}\0").as_bytes());
    }
    e.push(0);
    envf.write_all(&e).unwrap();
    drop(envf);
    let st = child.wait().unwrap();
    assert!(st.success(), "postern-queue failed: {st:?}");
}

/// A running postern-send and its log.
pub struct Sender {
    pub daemon: Daemon,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Sender {
    pub fn start(inst: &Instance) -> Sender {
        let mut cmd = inst.command("postern-send");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut daemon = Daemon::spawn("postern-send", cmd);
        let err = daemon.child_mut().stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var_os("POSTERN_TEST_VERBOSE").is_some() {
                    eprintln!("send: {line}");
                }
                l2.lock().unwrap().push(line);
            }
        });
        let s = Sender { daemon, log };
        s.wait_log("event=start", Duration::from_secs(30));
        s
    }

    pub fn lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let mut found = None;
        let ok = wait_until(timeout, || {
            found = self.lines(needle).into_iter().next();
            found.is_some()
        });
        assert!(
            ok,
            "no log line with {needle:?} within {timeout:?}; log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
        found.unwrap()
    }

    pub fn all(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// The `key=value` fields of a log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let f = postern_common::logline::parse(line);
    postern_common::logline::get(&f, key).map(str::to_string)
}
