//! Helpers shared by the scenarios.

use std::process::Command;

/// A throwaway account for the duration of a test.
pub struct ThrowawayUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ThrowawayUser {
    pub fn create(name: &str) -> Option<ThrowawayUser> {
        if !postern_common::privilege::is_root() {
            eprintln!("skipped: needs root to create a throwaway user");
            return None;
        }
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
