//! `scripts/uninstall` and `scripts/install` again (docs/install.md), as root, into a
//! temporary `--home` with a throwaway set of accounts (`--prefix-accounts`):
//!
//! - installing again into the same home after an uninstall (which keeps `control/`)
//!   takes back the account prefix the instance had, so `postern-user add` works at once;
//! - uninstall names a `postern-svscan` of the instance that was started by hand and is
//!   still running (its pid and how to stop it);
//! - `--systemd` stops with one line on a machine without systemd, and the unit is named
//!   after the home, so a second instance does not overwrite the first one's. These two
//!   run in a mount namespace of their own (`unshare`), with `/run/systemd` and
//!   `/etc/systemd/system` replaced by empty file systems: the machine's are never touched.
//!
//! To keep the copies small, the instances get only the programs these checks use.

use crate::support::run_with_input;
use postern_testkit::{run, tempdir, Daemon};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const ROLES: &[&str] = &["net", "queue", "send", "remote", "mail", "log", "ratelimit"];
const PROGRAMS: &[&str] = &[
    "posternctl",
    "postern-queue",
    "postern-user",
    "postern-checkpassword",
    "postern-local",
    "postern-svscan",
    "postern-supervise",
    "postern-svc",
    "postern-svok",
];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// A directory of links to the workspace's `PROGRAMS`, for `scripts/install --bin`.
fn programs(dir: &Path) -> PathBuf {
    let bin = dir.join("programs");
    fs::create_dir(&bin).unwrap();
    for name in PROGRAMS {
        std::os::unix::fs::symlink(postern_testkit::workspace_bin(name), bin.join(name)).unwrap();
    }
    bin
}

/// Removes, when the test ends (even half-way), the instance and every account made for
/// it: `PREFIX-ROLE`, and any `postern-ROLE` whose home is this instance (a failing
/// reinstall makes those) — never an account of another instance.
struct Cleanup {
    home: PathBuf,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.home.join("control").is_dir() {
            let _ = Command::new(script("uninstall"))
                .arg("--home")
                .arg(&self.home)
                .arg("--purge")
                .output();
        }
        for prefix in [self.prefix.as_str(), "postern"] {
            for role in ROLES {
                let name = format!("{prefix}-{role}");
                let ours = postern_common::privilege::lookup_account(&name)
                    .is_ok_and(|a| a.home == self.home);
                if prefix == self.prefix || ours {
                    let _ = Command::new("userdel").arg(&name).output();
                    let _ = Command::new("groupdel").arg(&name).output();
                }
            }
        }
    }
}

fn install(home: &Path, bin: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    run(
        Command::new(script("install"))
            .arg("--home")
            .arg(home)
            .arg("--bin")
            .arg(bin)
            .args(extra),
        T,
    )
}

fn uninstall(home: &Path) -> (Option<i32>, String, String) {
    run(Command::new(script("uninstall")).arg("--home").arg(home), T)
}

fn prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

#[ignore = "needs root: scripts/install makes system accounts"]
#[test]
fn reinstall_into_the_same_home_keeps_the_account_prefix() {
    postern_testkit::require_root("scripts/install makes system accounts");
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("inst");
    let prefix = prefix("ptr");
    let guard = Cleanup {
        home: home.clone(),
        prefix: prefix.clone(),
    };
    let programs = programs(dir.path());
    let (code, out, err) = install(
        &home,
        &programs,
        &["--prefix-accounts", &prefix, "--domain", "example.test"],
    );
    assert_eq!(code, Some(0), "install: {err}\n{out}");
    let bin = home.join("bin");
    run_with_input(
        "postern-user domain add",
        Command::new(bin.join("postern-user"))
            .env("POSTERN_HOME", &home)
            .args(["domain", "add", "example.test"]),
        b"Xq7!mailbox-pw-2\n",
    );
    let accounts = fs::read_to_string(home.join("control/accounts")).unwrap();
    assert!(
        accounts.contains(&format!("\nmail {prefix}-mail\n")),
        "{accounts}"
    );

    // A postern-svscan of the instance started by hand (on a directory of its own, so it
    // starts nothing): uninstall cannot stop it and must say so.
    let scan = dir.path().join("scan");
    fs::create_dir(&scan).unwrap();
    let mut svscan = Command::new(bin.join("postern-svscan"));
    svscan.arg(&scan);
    let mut svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    let pid = svscan.pid();

    let (code, out, uninstall_err) = uninstall(&home);
    eprintln!(
        "$ scripts/uninstall --home {}\n{out}{uninstall_err}",
        home.display()
    );
    assert_eq!(code, Some(0), "uninstall: {uninstall_err}\n{out}");
    assert!(
        postern_testkit::process_alive(pid),
        "uninstall kills nothing"
    );
    svscan.stop();
    for role in ROLES {
        let name = format!("{prefix}-{role}");
        assert!(
            postern_common::privilege::lookup_account(&name).is_err(),
            "{name} still exists"
        );
    }
    assert_eq!(
        fs::read_to_string(home.join("control/mailowner")).unwrap(),
        format!("{prefix}-mail\n")
    );

    // Install again into the same home, without --prefix-accounts.
    let (code, out, err) = install(&home, &programs, &[]);
    eprintln!("$ scripts/install --home {}\n{out}{err}", home.display());
    assert_eq!(code, Some(0), "install: {err}\n{out}");
    assert!(!err.contains("warning"), "{err}");
    assert!(
        out.contains(&format!("(accounts: {prefix}-net ")),
        "the prefix is kept: {out}"
    );
    assert_eq!(
        fs::read_to_string(home.join("control/accounts")).unwrap(),
        accounts,
        "the same accounts file"
    );
    assert!(
        postern_common::privilege::lookup_account("postern-mail").map_or(true, |a| a.home != home),
        "no postern-* accounts made for this instance"
    );

    // And the mailbox tools work at once.
    run_with_input(
        "postern-user add (after reinstalling)",
        Command::new(bin.join("postern-user"))
            .env("POSTERN_HOME", &home)
            .args(["add", "bob@example.test"]),
        b"Xq7!mailbox-pw-3\n",
    );
    let mail = postern_common::privilege::lookup_account(&format!("{prefix}-mail")).unwrap();
    let maildir = home.join("users/example.test/bob/Maildir");
    assert_eq!(fs::metadata(&maildir).unwrap().uid(), mail.uid);
    assert_eq!(
        fs::metadata(home.join("users/example.test/postmaster/Maildir"))
            .unwrap()
            .uid(),
        mail.uid,
        "the kept mailbox is the mail account's again"
    );

    // The svscan that uninstall could not stop was named, with how to stop it.
    assert!(
        uninstall_err.contains(&format!("postern-svscan is still running (pid {pid}"))
            && uninstall_err.contains(&format!("kill {pid}")),
        "the hand-started svscan is named: {uninstall_err}"
    );
    drop(guard);
}

/// Runs `commands` (sh) as root in a mount namespace of its own where `/run/systemd` and
/// `/etc/systemd/system` are empty tmpfs mounts (`/run/systemd/system` made when
/// `systemd_running`). `None` (skipped, said) when mount namespaces are not available.
fn with_fake_systemd(
    systemd_running: bool,
    commands: &str,
) -> Option<(Option<i32>, String, String)> {
    let usable = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        eprintln!("skipped: no mount namespaces here (unshare --mount failed)");
        return None;
    }
    if !Path::new("/etc/systemd/system").is_dir() || !Path::new("/run").is_dir() {
        eprintln!("skipped: no /etc/systemd/system to put a file system on");
        return None;
    }
    let setup = format!(
        "set -e
         if [ -d /run/systemd ]; then mount -t tmpfs postern-test /run/systemd; else mount -t tmpfs postern-test /run; fi
         {}
         mount -t tmpfs postern-test /etc/systemd/system
         set +e
",
        if systemd_running {
            "mkdir -p /run/systemd/system"
        } else {
            ""
        }
    );
    Some(run(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!("{setup}{commands}")),
        T,
    ))
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[ignore = "needs root: scripts/install makes system accounts"]
#[test]
fn install_systemd_without_systemd_stops_with_one_line() {
    postern_testkit::require_root("scripts/install makes system accounts");
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("inst");
    let prefix = prefix("pts");
    let _guard = Cleanup {
        home: home.clone(),
        prefix: prefix.clone(),
    };
    let programs = programs(dir.path());
    let Some((code, out, err)) = with_fake_systemd(
        false,
        &format!(
            "{} --home {} --bin {} --prefix-accounts {prefix} --systemd",
            quote(&script("install")),
            quote(&home),
            quote(&programs)
        ),
    ) else {
        return;
    };
    eprintln!("$ scripts/install --systemd (no /run/systemd/system)\n{out}{err}");
    assert_eq!(code, Some(100), "{err}\n{out}");
    assert_eq!(
        err,
        "install: fatal: --systemd: this machine does not run systemd (no \
         /run/systemd/system); install without --systemd and start postern-svscan from \
         /etc/inittab (install prints the line)\n"
    );
    assert!(!home.exists(), "nothing installed");
    assert!(
        postern_common::privilege::lookup_account(&format!("{prefix}-net")).is_err(),
        "no account made"
    );
}

#[ignore = "needs root: scripts/install makes system accounts"]
#[test]
fn install_systemd_names_the_unit_after_the_home() {
    postern_testkit::require_root("scripts/install makes system accounts");
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("inst");
    let prefix = prefix("ptu");
    let _guard = Cleanup {
        home: home.clone(),
        prefix: prefix.clone(),
    };
    let programs = programs(dir.path());
    let unit = format!(
        "postern-{}.service",
        home.to_str()
            .unwrap()
            .trim_start_matches('/')
            .replace('/', "-")
    );
    // Another instance's unit (the default /var/postern) is there already.
    let other = "[Service]\nExecStart=/var/postern/bin/postern-svscan /service\n";
    let units = "/etc/systemd/system";
    let Some((code, out, err)) = with_fake_systemd(
        true,
        &format!(
            "printf '{}' > {units}/postern.service
             echo '== install'
             {install} --home {home} --bin {programs} --prefix-accounts {prefix} --systemd || echo \"== install failed: $?\"
             echo '== units'; ls {units}
             echo '== unit'; cat {units}/{unit}
             echo '== uninstall'
             {uninstall} --home {home} || echo \"== uninstall failed: $?\"
             echo '== units'; ls {units}
             echo '== other'; cat {units}/postern.service
             echo '== end'",
            other.replace('\n', "\\n"),
            install = quote(&script("install")),
            uninstall = quote(&script("uninstall")),
            home = quote(&home),
            programs = quote(&programs),
        ),
    ) else {
        return;
    };
    eprintln!("{out}{err}");
    assert_eq!(code, Some(0), "{err}\n{out}");
    let section = |name: &str, n: usize| -> String {
        let marker = format!("== {name}\n");
        out.split(marker.as_str())
            .nth(n + 1)
            .map(|s| s.split("\n== ").next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert!(!out.contains("failed"), "{err}\n{out}");
    assert!(
        out.contains(&format!("systemctl enable --now {unit}")),
        "install names the unit: {out}"
    );
    let mut first: Vec<String> = section("units", 0)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    first.sort();
    let mut want = vec!["postern.service", unit.as_str()];
    want.sort();
    assert_eq!(first, want, "a unit of its own, beside the other's");
    assert!(
        section("unit", 0).contains(&format!(
            "ExecStart={}/bin/postern-svscan /service",
            home.display()
        )),
        "{out}"
    );
    assert!(out.contains(&format!("removed {units}/{unit}")), "{out}");
    assert_eq!(
        section("units", 1).trim(),
        "postern.service",
        "uninstall removed its own unit only"
    );
    assert_eq!(
        section("other", 0).trim(),
        other.trim(),
        "the other instance's unit is untouched"
    );
}
