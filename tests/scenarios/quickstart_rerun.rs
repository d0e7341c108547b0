//! `scripts/quickstart` run again by root after an admin changed the demo as root (as
//! the admin guide shows): `postern-user add` as root leaves `control/users` root's,
//! mode 0600, so the demo account cannot read it. The second quickstart must stop with
//! one line and keep the saved password (`control/quickstart-password`), not take the
//! unreadable file for a missing mailbox and make a new password that is never set.
//!
//! The programs come from the workspace (`QUICKSTART_BIN`), with a `postern-svscan`
//! that exits at once: the test is about setting up the instance, so no service runs.

use crate::support::run_with_input;
use postern_testkit::{run, tempdir, workspace_bin, write_script};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const DEMO: &str = "postern-demo";

/// Removes the account `postern-demo` when the test ends, if the test's quickstart made
/// it (an account that was there before is left alone).
struct DemoAccount {
    made_here: bool,
}

impl Drop for DemoAccount {
    fn drop(&mut self) {
        if self.made_here {
            let _ = Command::new("userdel").arg(DEMO).output();
            let _ = Command::new("groupdel").arg(DEMO).output();
        }
    }
}

#[ignore = "needs root: quickstart runs the demo as its own user only for root"]
#[test]
fn quickstart_again_with_an_unreadable_users_file_stops_and_keeps_the_password() {
    postern_testkit::require_root("quickstart runs the demo as its own user only for root");
    let _account = DemoAccount {
        made_here: postern_common::privilege::lookup_account(DEMO).is_err(),
    };
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("programs");
    fs::create_dir(&bin).unwrap();
    for name in ["posternctl", "postern-user"] {
        std::os::unix::fs::symlink(workspace_bin(name), bin.join(name)).unwrap();
    }
    write_script(&bin.join("postern-svscan"), "#!/bin/sh\nexit 0\n");
    let demo = dir.path().join("demo");
    // Ports free now (the defaults may be taken on this machine); later runs keep them.
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect();
    drop(listeners);
    let quickstart = || {
        run(
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart"))
                .args(["--smtp-port", &ports[0], "--submission-port", &ports[1]])
                .args(["--pop3-port", &ports[2]])
                .arg(&demo)
                .env("QUICKSTART_BIN", &bin),
            T,
        )
    };
    let pwfile = demo.join("control/quickstart-password");

    let (code, out, err) = quickstart();
    assert_eq!(code, Some(0), "first quickstart: {err}\n{out}");
    let password = fs::read_to_string(&pwfile).unwrap();
    assert!(
        out.contains(&format!("password: {}", password.trim())),
        "{out}"
    );

    // The admin adds a mailbox as root.
    run_with_input(
        "postern-user add (as root)",
        Command::new(demo.join("bin/postern-user"))
            .env("POSTERN_HOME", &demo)
            .args(["--owner", DEMO, "add", "bob@example.test"]),
        b"Xq7!mailbox-pw-3\n",
    );
    let users = fs::metadata(demo.join("control/users")).unwrap();
    assert_eq!(
        (users.uid(), users.mode() & 0o777),
        (0, 0o600),
        "control/users is root's now"
    );

    let (code, out, err) = quickstart();
    eprintln!("$ scripts/quickstart (again)\n{out}{err}");
    assert_ne!(code, Some(0), "the second quickstart must fail: {out}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].starts_with("quickstart: ") && lines[0].contains("control/users"),
        "{err}"
    );
    assert!(!out.contains("postern instance:"), "it stopped: {out}");
    assert_eq!(
        fs::read_to_string(&pwfile).unwrap(),
        password,
        "the saved password is kept"
    );
    let left: Vec<String> = fs::read_dir(demo.join("control"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("quickstart") && n != "quickstart-password")
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");

    // Given back to the demo account, the file is read again: the mailbox is there, the
    // saved password stays and is shown.
    let demo_account = postern_common::privilege::lookup_account(DEMO).unwrap();
    std::os::unix::fs::chown(
        demo.join("control/users"),
        Some(demo_account.uid),
        Some(demo_account.gid),
    )
    .unwrap();
    let (code, out, err) = quickstart();
    assert_eq!(code, Some(0), "third quickstart: {err}\n{out}");
    assert!(
        out.contains(&format!("password: {}", password.trim())),
        "{out}"
    );
    assert_eq!(fs::read_to_string(&pwfile).unwrap(), password);
}
