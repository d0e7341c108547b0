//! End-to-end tests of postern-user and postern-checkpassword: the real binaries on
//! throwaway instances in temporary directories.

mod checkpassword;
mod user;

use postern_testkit::{tempdir, Daemon, TempDir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

pub const USER_BIN: &str = env!("CARGO_BIN_EXE_postern-user");
pub const CHECK_BIN: &str = env!("CARGO_BIN_EXE_postern-checkpassword");
pub const LIMIT: Duration = Duration::from_secs(60);

/// What a finished command left: its status and output.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Run `cmd` with `input` on its standard input, to completion within [`LIMIT`].
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Outcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut d = Daemon::spawn("command", cmd);
    let child = d.child_mut();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let data = input.to_vec();
    let t_in = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
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
    let status = d
        .wait_exit(LIMIT)
        .unwrap_or_else(|| panic!("command did not finish within {LIMIT:?}"));
    let _ = t_in.join();
    Outcome {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// An instance made the minimal way: `mkdir -p HOME/{control,users}`.
pub struct Instance {
    pub dir: TempDir,
}

impl Default for Instance {
    fn default() -> Instance {
        Instance::new()
    }
}

impl Instance {
    /// A fresh instance. As root, mailboxes belong to `nobody` (`control/mailowner`), and
    /// the instance is open for traversal so programs running as `nobody` reach them.
    pub fn new() -> Instance {
        let i = Instance::bare();
        if is_root() {
            std::fs::write(i.control("mailowner"), "nobody\n").unwrap();
        }
        i
    }

    /// A fresh instance with nothing but the two directories (open for traversal).
    pub fn bare() -> Instance {
        let dir = tempdir();
        std::fs::create_dir_all(dir.path().join("control")).unwrap();
        std::fs::create_dir_all(dir.path().join("users")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Instance { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn control(&self, name: &str) -> PathBuf {
        self.home().join("control").join(name)
    }

    /// `postern-user ARGS` with `stdin`.
    pub fn user(&self, args: &[&str], stdin: &str) -> Outcome {
        let mut cmd = Command::new(USER_BIN);
        cmd.args(args).env("POSTERN_HOME", self.home());
        run_with_input(cmd, stdin.as_bytes())
    }

    /// `postern-user ARGS`, which must succeed.
    pub fn user_ok(&self, args: &[&str], stdin: &str) -> String {
        let o = self.user(args, stdin);
        assert_eq!(
            o.code(),
            Some(0),
            "postern-user {args:?} failed: {}",
            o.stderr
        );
        o.stdout
    }

    /// A hosted domain `x.test` (postmaster mailbox) and a mailbox per `(address, password)`.
    pub fn with_users(users: &[(&str, &str)], owner: Option<&str>) -> Instance {
        let i = if owner.is_some() {
            Instance::bare()
        } else {
            Instance::new()
        };
        let mut args = vec!["domain", "add", "x.test"];
        if let Some(o) = owner {
            args.extend(["--owner", o]);
        }
        i.user_ok(&args, "the admin's own words\n");
        for (addr, pw) in users {
            i.user_ok(&["add", addr], &format!("{pw}\n"));
        }
        i
    }
}

/// A throwaway system account, deleted when dropped.
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    pub fn create(tag: &str) -> Account {
        let _serial = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("pst{tag}{}", std::process::id() % 100000);
        let ok = Command::new("useradd")
            .args(["-r", "-M", "-s", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "useradd {name}");
        let out = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let out = Command::new("id").args(["-g", &name]).output().unwrap();
        let gid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        Account { name, uid, gid }
    }

    /// `cmd` run as this account (setpriv), with a clean group list.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.uid.to_string(),
            "--regid",
            &self.gid.to_string(),
            "--clear-groups",
            program,
        ]);
        c
    }
}

/// useradd and userdel lock /etc/passwd: one at a time.
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for Account {
    fn drop(&mut self) {
        let _serial = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
