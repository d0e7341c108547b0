//! postern-checkpassword over descriptor 3, as postern-popup and postern-smtpd drive it.

use crate::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

const ALICE: &str = "alice@x.test";
const ALICE_PW: &str = "correct horse battery";

/// Run checkpassword on `home` with `input` on descriptor 3 (a pipe) and `prog`.
fn check_in(
    home: &Path,
    bin: &str,
    input: &[u8],
    prog: &[&str],
    ip: &str,
    wrap: Option<&Account>,
) -> Outcome {
    // The shell makes its stdin (our pipe) descriptor 3, then becomes checkpassword.
    let script = "exec \"$@\" 3<&0 </dev/null";
    let mut cmd = match wrap {
        Some(a) => a.command("sh"),
        None => Command::new("sh"),
    };
    cmd.args(["-c", script, "sh", bin])
        .args(prog)
        .env("POSTERN_HOME", home)
        .env("TCPREMOTEIP", ip);
    run_with_input(cmd, input)
}

fn check(i: &Instance, input: &[u8], prog: &[&str]) -> Outcome {
    check_in(i.home(), CHECK_BIN, input, prog, "127.0.0.9", None)
}

fn login(user: &str, pw: &str) -> Vec<u8> {
    format!("{user}\0{pw}\0<123.456@pop.x.test>\0").into_bytes()
}

const PRINT_ENV: &[&str] = &["sh", "-c", "echo USER=$USER; echo AUTHUSER=$AUTHUSER; echo HOME=$HOME; echo MAILDIR=$MAILDIR; echo PWD=$(pwd -P); echo ARGS=$*", "x", "one", "two"];

#[test]
fn success_runs_the_program_with_the_environment() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    fs_no_delay(&i);
    let o = check(&i, &login("Alice@X.TEST", ALICE_PW), PRINT_ENV);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let h = i.home().join("users/x.test/alice");
    let expect = format!(
        "USER={ALICE}\nAUTHUSER={ALICE}\nHOME={h}\nMAILDIR={h}/Maildir\nPWD={real}\nARGS=one two\n",
        h = h.display(),
        real = h.canonicalize().unwrap().display()
    );
    assert_eq!(o.stdout, expect);
    assert!(
        o.stderr
            .contains("event=auth user=alice@x.test ip=127.0.0.9"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_missing_timestamp_field_is_accepted() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    let o = check(&i, format!("{ALICE}\0{ALICE_PW}\0").as_bytes(), &["true"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
}

fn fs_no_delay(i: &Instance) {
    std::fs::write(i.control("authfaildelay"), "0\n").unwrap();
}

#[test]
fn wrong_password_and_unknown_user_exit_1_and_are_logged() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    let o = check(
        &i,
        &login(ALICE, "correct horse battery!"),
        &["echo", "ran"],
    );
    assert_eq!(o.code(), Some(1));
    assert_eq!(o.stdout, "", "the program must not run");
    assert!(
        o.stderr
            .contains("event=authfail ip=127.0.0.9 user=alice@x.test reason=badpass delay=0"),
        "{}",
        o.stderr
    );
    let o = check(&i, &login("mallory@x.test", ALICE_PW), &["echo", "ran"]);
    assert_eq!(o.code(), Some(1));
    assert!(
        o.stderr.contains("user=mallory@x.test reason=nouser"),
        "{}",
        o.stderr
    );
    let o = check(&i, &login(ALICE, ""), &["echo", "ran"]);
    assert_eq!(o.code(), Some(1), "empty password");
    let o = check(&i, &login("", ""), &["echo", "ran"]);
    assert_eq!(o.code(), Some(1), "empty user");
    // A hostile user name cannot forge a log line.
    let o = check(
        &i,
        &login("x\nevent=auth user=alice@x.test", "pw"),
        &["true"],
    );
    assert_eq!(o.code(), Some(1));
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
}

#[test]
fn malformed_input_is_misuse() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    for (what, input) in [
        ("no NUL at all", ALICE.as_bytes().to_vec()),
        (
            "password without its NUL",
            format!("{ALICE}\0{ALICE_PW}").into_bytes(),
        ),
        ("nothing", Vec::new()),
        ("overlong", {
            let mut v = login(ALICE, ALICE_PW);
            v.resize(513, b'x');
            v
        }),
    ] {
        let o = check(&i, &input, &["echo", "ran"]);
        assert_eq!(o.code(), Some(2), "{what}: {}", o.stderr);
        assert_eq!(o.stdout, "", "{what}");
    }
    // Exactly 512 bytes is allowed.
    let mut v = login(ALICE, ALICE_PW);
    v.resize(512, b'x');
    assert_eq!(check(&i, &v, &["true"]).code(), Some(0));
    // No program to run.
    assert_eq!(check(&i, &login(ALICE, ALICE_PW), &[]).code(), Some(2));
    // Descriptor 3 not open at all.
    let mut cmd = Command::new(CHECK_BIN);
    cmd.arg("true").env("POSTERN_HOME", i.home());
    let o = run_with_input(cmd, b"");
    assert_eq!(o.code(), Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("descriptor 3 is not open"),
        "{}",
        o.stderr
    );
}

#[test]
fn the_program_status_passes_through() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    let o = check(&i, &login(ALICE, ALICE_PW), &["sh", "-c", "exit 7"]);
    assert_eq!(o.code(), Some(7));
    let o = check(&i, &login(ALICE, ALICE_PW), &["sh", "-c", "kill -SEGV $$"]);
    assert_eq!(o.status.signal(), Some(11), "a crash shows as the signal");
    let o = check(&i, &login(ALICE, ALICE_PW), &["/nonexistent/prog"]);
    assert_eq!(o.code(), Some(111), "{}", o.stderr);
}

#[test]
fn an_unreadable_database_is_temporary() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    std::fs::remove_file(i.control("users.cdb")).unwrap();
    let o = check(&i, &login(ALICE, ALICE_PW), &["echo", "ran"]);
    assert_eq!(o.code(), Some(111), "{}", o.stderr);
    assert!(
        o.stderr.contains("unable to open control/users.cdb"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout, "");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn unknown_users_take_as_long_as_wrong_passwords() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    fs_no_delay(&i);
    let time = |input: Vec<u8>| {
        let t = Instant::now();
        assert_eq!(check(&i, &input, &["true"]).code(), Some(1));
        t.elapsed()
    };
    let mut wrong_pw = Vec::new();
    let mut no_user = Vec::new();
    for n in 0..7 {
        wrong_pw.push(time(login(ALICE, &format!("wrong password {n}"))));
        no_user.push(time(login(&format!("nobody{n}@x.test"), "wrong password")));
    }
    let (a, b) = (median(wrong_pw), median(no_user));
    let ratio = a.as_secs_f64() / b.as_secs_f64();
    eprintln!("median wrong password {a:?}, unknown user {b:?}, ratio {ratio:.2}");
    assert!(
        (0.5..2.0).contains(&ratio),
        "wrong password {a:?} vs unknown user {b:?}"
    );
}

#[test]
fn repeated_failures_are_slowed_but_never_locked_out() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    std::fs::write(i.control("authfaildelay"), "100\n").unwrap();
    let mut delays = Vec::new();
    for n in 0..5 {
        let o = check(&i, &login(ALICE, &format!("guess {n}")), &["true"]);
        assert_eq!(o.code(), Some(1));
        let d = o.stderr.split("delay=").nth(1).unwrap().trim().to_string();
        delays.push(d);
    }
    assert_eq!(delays, ["0", "0", "0", "100", "200"]);
    // Another IP guessing at the same account is slowed by the account's count.
    let o = check_in(
        i.home(),
        CHECK_BIN,
        &login(ALICE, "guess"),
        &["true"],
        "127.0.0.77",
        None,
    );
    assert!(o.stderr.contains("delay=400"), "{}", o.stderr);
    // The real user still gets in (after the delay): no lockout.
    let t = Instant::now();
    let o = check(&i, &login(ALICE, ALICE_PW), &["echo", "in"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(0), "in\n"),
        "{}",
        o.stderr
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "the account's delay applied"
    );
    // The table stays one bounded file.
    let table = i.home().join("run/authfail/table");
    let meta = std::fs::metadata(&table).unwrap();
    assert_eq!(
        meta.len() as usize,
        postern_mailstore::authfail::TABLE_BYTES
    );
    assert_eq!(meta.permissions().mode() & 0o077, 0);
}

#[test]
fn a_disabled_login_is_refused_but_the_mailbox_stays() {
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    let users = std::fs::read_to_string(i.control("users")).unwrap();
    let disabled: String = users
        .lines()
        .map(|l| {
            if l.starts_with("alice@") {
                l.replacen(":$argon2id", ":!$argon2id", 1)
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(i.control("users"), disabled).unwrap();
    i.user_ok(&["compile"], "");
    let o = check(&i, &login(ALICE, ALICE_PW), &["true"]);
    assert_eq!(o.code(), Some(1));
    assert!(o.stderr.contains("reason=disabled"), "{}", o.stderr);
}

/// Copy the binaries somewhere any account can run them.
fn public_bins(dir: &Path) -> (String, String) {
    let user = dir.join("postern-user");
    let check = dir.join("postern-checkpassword");
    std::fs::copy(USER_BIN, &user).unwrap();
    std::fs::copy(CHECK_BIN, &check).unwrap();
    (user.display().to_string(), check.display().to_string())
}

#[test]
#[ignore = "needs root: create a throwaway account"]
fn works_without_root() {
    postern_testkit::require_root("create a throwaway account");
    let acct = Account::create("cp");
    let bins = tempdir();
    std::fs::set_permissions(bins.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (user_bin, check_bin) = public_bins(bins.path());
    // The whole instance belongs to the unprivileged account (single-user mode).
    let i = Instance::bare();
    let chown = Command::new("chown")
        .args(["-R", &format!("{}:{}", acct.uid, acct.gid)])
        .arg(i.home())
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::set_permissions(i.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [vec!["domain", "add", "x.test"], vec!["add", ALICE]] {
        let mut cmd = acct.command(&user_bin);
        cmd.args(&args).env("POSTERN_HOME", i.home());
        let o = run_with_input(cmd, format!("{ALICE_PW} {}\n", args[0]).as_bytes());
        assert_eq!(o.code(), Some(0), "{args:?}: {}", o.stderr);
    }
    let md = std::fs::metadata(i.home().join("users/x.test/alice/Maildir/new")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&md),
        acct.uid,
        "mailbox owned by the single user"
    );
    let o = check_in(
        i.home(),
        &check_bin,
        &login(ALICE, &format!("{ALICE_PW} add")),
        &["sh", "-c", "id -u"],
        "127.0.0.9",
        Some(&acct),
    );
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert_eq!(o.stdout.trim(), acct.uid.to_string());
    let o = check_in(
        i.home(),
        &check_bin,
        &login(ALICE, "wrong one"),
        &["true"],
        "127.0.0.9",
        Some(&acct),
    );
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
}

#[test]
#[ignore = "needs root: run checkpassword as root"]
fn as_root_it_becomes_the_mailbox_owner() {
    postern_testkit::require_root("run checkpassword as root");
    let acct = Account::create("ow");
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], Some(&acct.name));
    assert_eq!(
        std::fs::read_to_string(i.control("mailowner")).unwrap(),
        format!("{}\n", acct.name)
    );
    let cdb = std::fs::metadata(i.control("users.cdb")).unwrap();
    assert_eq!(cdb.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&cdb),
            std::os::unix::fs::MetadataExt::gid(&cdb)
        ),
        (acct.uid, acct.gid),
        "users.cdb belongs to the mailbox owner, who alone may read it"
    );
    let o = check(
        &i,
        &login(ALICE, ALICE_PW),
        &["sh", "-c", "id -u; id -g; id -G"],
    );
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let ids: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        ids,
        [
            acct.uid.to_string(),
            acct.gid.to_string(),
            acct.gid.to_string()
        ]
    );
}

/// Regression: parallel sessions each read the failure count before any of them had
/// failed, so N concurrent guesses from one IP all went undelayed. Each attempt now
/// counts as a failure before it is verified: the later ones wait.
#[test]
fn parallel_wrong_passwords_from_one_ip_are_delayed_like_sequential_ones() {
    let i = std::sync::Arc::new(Instance::with_users(&[(ALICE, ALICE_PW)], None));
    std::fs::write(i.control("authfaildelay"), "100\n").unwrap();
    let attempts: Vec<_> = (0..6)
        .map(|n| {
            let i = std::sync::Arc::clone(&i);
            std::thread::spawn(move || {
                // Different accounts: only the shared IP links them.
                let o = check_in(
                    i.home(),
                    CHECK_BIN,
                    &login(&format!("guess{n}@x.test"), "wrong"),
                    &["true"],
                    "192.0.2.7",
                    None,
                );
                assert_eq!(o.code(), Some(1), "{}", o.stderr);
                o.stderr
                    .split("delay=")
                    .nth(1)
                    .and_then(|d| d.trim().parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no delay in {}", o.stderr))
            })
        })
        .collect();
    let mut delays: Vec<u64> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    delays.sort();
    assert_eq!(delays, [0, 0, 0, 100, 200, 400]);
    // A success takes its own pending failure back and clears the IP: no lockout.
    let o = check_in(
        i.home(),
        CHECK_BIN,
        &login(ALICE, ALICE_PW),
        &["true"],
        "192.0.2.7",
        None,
    );
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let o = check_in(
        i.home(),
        CHECK_BIN,
        &login(ALICE, "wrong"),
        &["true"],
        "192.0.2.7",
        None,
    );
    assert!(o.stderr.contains("delay=0"), "{}", o.stderr);
}

/// Regression: started as root, checkpassword became whoever owned the user's home,
/// following symbolic links. It now becomes only the configured mailbox owner, and
/// refuses a home that is a symlink or belongs to someone else.
#[test]
#[ignore = "needs root: run checkpassword as root"]
fn as_root_a_symlinked_or_foreign_home_is_refused() {
    postern_testkit::require_root("run checkpassword as root");
    let i = Instance::with_users(&[(ALICE, ALICE_PW)], None);
    fs_no_delay(&i);
    let home = i.home().join("users/x.test/alice");
    // Someone else's directory, reached through a symlink in place of alice's home.
    let other = Account::create("sl");
    let target = i.home().join("elsewhere");
    std::fs::rename(&home, &target).unwrap();
    let chown = Command::new("chown")
        .args(["-R", &format!("{}:{}", other.uid, other.gid)])
        .arg(&target)
        .status()
        .unwrap();
    assert!(chown.success());
    std::os::unix::fs::symlink(&target, &home).unwrap();
    let o = check(
        &i,
        &login(ALICE, ALICE_PW),
        &["sh", "-c", "echo ran; id -u"],
    );
    assert_eq!(o.code(), Some(111), "{}", o.stderr);
    assert_eq!(o.stdout, "", "the program must not run");
    assert!(o.stderr.contains("is a symbolic link"), "{}", o.stderr);
    // The real directory in place, but not the mailbox owner's: refused too.
    std::fs::remove_file(&home).unwrap();
    std::fs::rename(&target, &home).unwrap();
    let o = check(
        &i,
        &login(ALICE, ALICE_PW),
        &["sh", "-c", "echo ran; id -u"],
    );
    assert_eq!(o.code(), Some(111), "{}", o.stderr);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.contains(&format!("belongs to uid {}", other.uid))
            && o.stderr.contains("not to the mailbox owner nobody"),
        "{}",
        o.stderr
    );
    // Given back to the owner: it runs, as the owner.
    let chown = Command::new("chown")
        .args(["-R", "nobody:"])
        .arg(&home)
        .status()
        .unwrap();
    assert!(chown.success());
    let nobody = postern_common::privilege::lookup_account("nobody").unwrap();
    let o = check(
        &i,
        &login(ALICE, ALICE_PW),
        &["sh", "-c", "echo ran; id -u"],
    );
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, format!("ran\n{}\n", nobody.uid));
}
