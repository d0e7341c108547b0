//! Helpers shared by the scenarios.

use postern_testkit::{run, workspace_bin};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A DNS server on loopback that answers NXDOMAIN for every name, made the instance's
/// `control/resolvers`: mail from outside clients (127.0.0.200) meets SPF, DKIM and DMARC
/// (on by default), and their questions stay on loopback instead of going to the
/// machine's resolver. Keep the daemon as long as the instance runs.
pub fn quiet_dns(home: &Path) -> Option<postern_testkit::Daemon> {
    let (dns, port) = postern_testkit::dnsmasq(&["--local=/#/".to_string()])?;
    std::fs::write(
        home.join("control/resolvers"),
        format!("127.0.0.1:{port}\n"),
    )
    .unwrap();
    Some(dns)
}

/// A throwaway account for the duration of a test.
pub struct ThrowawayUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ThrowawayUser {
    pub fn create(name: &str) -> Option<ThrowawayUser> {
        // The tests that make one are #[ignore = "needs root: …"]: run without root, they
        // fail here rather than pass having done nothing.
        postern_testkit::require_root("create a throwaway user");
        let _ = Command::new("userdel").arg(name).output();
        let ok = Command::new("useradd")
            .args(["-r", "-M", "-s", "/usr/sbin/nologin", name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "useradd {name}");
        let account = postern_common::privilege::lookup_account(name).unwrap();
        Some(ThrowawayUser {
            name: name.to_string(),
            uid: account.uid,
            gid: account.gid,
        })
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

impl ThrowawayUser {
    /// `cmd` wrapped to run as this user (setpriv, no supplementary groups).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &self.name,
            "--regid",
            &self.name,
            "--clear-groups",
            "--",
        ])
        .arg(program);
        cmd
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A single-user instance for `example.test` made by `posternctl init` as `user`, in
/// `dir/inst` (owned by the user; `dir` made traversable), listening on 127.0.0.1 with the
/// extra `init` options `ports` (e.g. `["--pop3-port", "2110"]`). Returns its path.
pub fn user_instance(user: &ThrowawayUser, dir: &Path, ports: &[String]) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.join("inst");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
    let mut init = user.command(workspace_bin("posternctl"));
    init.args(["init", "--home"])
        .arg(&home)
        .args(["--domain", "example.test", "--bin"])
        .arg(postern_testkit::target_dir())
        .args(["--listen", "127.0.0.1"])
        .args(ports);
    let (code, _, err) = run(&mut init, Duration::from_secs(60));
    assert_eq!(code, Some(0), "posternctl init: {err}");
    home
}

/// The ports of a [`mail_instance`].
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub pop3: u16,
}

/// [`user_instance`] on three free ports (SMTP, submission, POP3): its path and ports.
pub fn mail_instance(user: &ThrowawayUser, dir: &Path) -> (PathBuf, Ports) {
    let ports = Ports {
        smtp: free_port(),
        submission: free_port(),
        pop3: free_port(),
    };
    let args: Vec<String> = [
        ("--smtp-port", ports.smtp),
        ("--submission-port", ports.submission),
        ("--pop3-port", ports.pop3),
    ]
    .iter()
    .flat_map(|(o, p)| [o.to_string(), p.to_string()])
    .collect();
    (user_instance(user, dir, &args), ports)
}

/// `postern-user domain add DOMAIN` as `user`: the postmaster mailbox, its password on
/// standard input (never argv).
pub fn add_domain(user: &ThrowawayUser, home: &Path, domain: &str, password: &str) {
    let mut add = user.command(workspace_bin("postern-user"));
    add.env("POSTERN_HOME", home)
        .args(["domain", "add", domain]);
    run_with_input(
        "postern-user domain add",
        &mut add,
        format!("{password}\n").as_bytes(),
    );
}

/// Run `cmd` with `input` on its standard input; it must exit 0 (`what` names it, with
/// its stderr, when it does not).
pub fn run_with_input(what: &str, cmd: &mut Command, input: &[u8]) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
