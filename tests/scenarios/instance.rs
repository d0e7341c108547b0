//! `posternctl init`: the instance layout, idempotence, and single-user ownership.

use crate::support::ThrowawayUser;
use postern_testkit::{run, tempdir, workspace_bin};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn init(home: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    run(
        Command::new(workspace_bin("posternctl"))
            .arg("init")
            .arg("--home")
            .arg(home)
            .args(extra),
        T,
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn init_makes_the_documented_layout() {
    let dir = tempdir();
    let home = dir.path().join("inst");
    let (code, out, err) = init(&home, &["--domain", "Example.TEST"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!(
            "posternctl: instance {}: created ",
            home.display()
        )),
        "{out}"
    );
    for (d, m) in [
        ("bin", 0o755),
        ("control", 0o755),
        ("control/tls", 0o700),
        ("queue", 0o750),
        ("users", 0o711),
        ("quarantine/new", 0o700),
        ("service", 0o755),
        ("log", 0o755),
    ] {
        assert_eq!(mode(&home.join(d)), m, "{d}");
    }
    assert_eq!(
        fs::read_to_string(home.join("control/rcpthosts")).unwrap(),
        "# Domains anyone may send mail to.\nexample.test\n"
    );
    let me = fs::read_to_string(home.join("control/me")).unwrap();
    assert!(!me.trim().is_empty());
    // Every documented default is there and readable by the substrate's reader.
    let control = postern_common::control::Control::for_home(&home);
    assert_eq!(control.number("databytes", 0).unwrap(), 10240000);
    assert_eq!(control.number("concurrencylocal", 0).unwrap(), 10);
    assert_eq!(control.number("concurrencyremote", 0).unwrap(), 20);
    assert_eq!(control.number("queuelifetime", 0).unwrap(), 604800);
    assert_eq!(control.number("timeoutsmtpd", 0).unwrap(), 300);
    // bin/ links to the programs that were built.
    let svscan = home.join("bin/postern-svscan");
    assert!(fs::symlink_metadata(&svscan)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::canonicalize(&svscan).unwrap(),
        fs::canonicalize(workspace_bin("postern-svscan")).unwrap()
    );
}

#[test]
fn init_again_keeps_the_admins_edits() {
    let dir = tempdir();
    let home = dir.path().join("inst");
    assert_eq!(init(&home, &["--domain", "example.test"]).0, Some(0));
    fs::write(home.join("control/databytes"), "5000\n").unwrap();
    fs::write(home.join("control/rcpthosts"), "mine.test\n").unwrap();
    fs::remove_file(home.join("control/timeoutsmtpd")).unwrap();
    let (code, out, err) = init(&home, &["--domain", "other.test"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("created 1,"),
        "only the removed file comes back: {out}"
    );
    assert_eq!(
        fs::read_to_string(home.join("control/databytes")).unwrap(),
        "5000\n"
    );
    assert_eq!(
        fs::read_to_string(home.join("control/rcpthosts")).unwrap(),
        "mine.test\n"
    );
    assert!(home.join("control/timeoutsmtpd").is_file());
}

#[test]
fn init_refuses_bad_input() {
    let dir = tempdir();
    let (code, _, err) = init(&dir.path().join("a"), &["--domain", "bad domain"]);
    assert_eq!(code, Some(100));
    assert_eq!(err, "posternctl: usage: not a domain name: bad domain\n");
    fs::write(dir.path().join("file"), "").unwrap();
    let (code, _, err) = init(&dir.path().join("file"), &[]);
    assert_eq!(code, Some(100));
    assert!(err.contains("exists and is not a directory"), "{err}");
    let (code, _, err) = run(
        Command::new(workspace_bin("posternctl")).arg("frobnicate"),
        T,
    );
    assert_eq!(code, Some(100));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("posternctl: usage: "), "{err}");
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn init_by_a_normal_user_makes_a_single_user_instance() {
    let Some(user) = ThrowawayUser::create("postern-t-init") else {
        return;
    };
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let home = dir.path().join("inst");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        &user.name,
        "--regid",
        &user.name,
        "--clear-groups",
    ])
    .arg(workspace_bin("posternctl"))
    .args(["init", "--home"])
    .arg(&home)
    .args(["--domain", "example.test", "--bin"])
    .arg(postern_testkit::target_dir());
    let (code, _, err) = run(&mut cmd, T);
    assert_eq!(code, Some(0), "{err}");
    for p in [
        "",
        "control",
        "control/me",
        "control/rcpthosts",
        "queue",
        "users",
        "service",
        "log",
    ] {
        let uid = fs::metadata(home.join(p)).unwrap().uid();
        assert_eq!(uid, user.uid, "owner of {p:?}");
    }
}
