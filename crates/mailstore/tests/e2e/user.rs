//! postern-user: domains, mailboxes, passwords, quotas, aliases, and the compiler.

use crate::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const PW: &str = "violet tractor umbrella";

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Look `key` up in a cdb with tinycdb's `cdb -q`, a reader nobody here wrote.
fn tinycdb_get(cdb: &Path, key: &str) -> Option<Vec<u8>> {
    let prog = postern_testkit::require("cdb", "tinycdb")?;
    let out = Command::new(prog)
        .arg("-q")
        .arg(cdb)
        .arg(key)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Some(out.stdout),
        Some(100) => Some(Vec::new()), // not found
        c => panic!("cdb -q exited {c:?}"),
    }
}

#[test]
fn domain_add_creates_the_postmaster_mailbox_and_aliases() {
    let i = Instance::new();
    let out = i.user_ok(&["domain", "add", "X.Test"], &format!("{PW}\n"));
    assert_eq!(
        out,
        "added x.test: mailbox postmaster@x.test, and abuse@x.test goes to it\n"
    );
    assert_eq!(
        fs::read_to_string(i.control("domains")).unwrap(),
        "x.test\n"
    );
    assert_eq!(
        fs::read_to_string(i.control("rcpthosts")).unwrap(),
        "x.test\n"
    );
    assert_eq!(
        fs::read_to_string(i.control("aliases")).unwrap(),
        "abuse@x.test: postmaster@x.test\n"
    );
    let users = fs::read_to_string(i.control("users")).unwrap();
    assert!(
        users.starts_with("postmaster@x.test:$argon2id$v=19$"),
        "{users}"
    );
    assert!(users.ends_with(":0\n"), "{users}");
    assert!(!users.contains(PW));
    let md = i.home().join("users/x.test/postmaster/Maildir");
    for sub in ["", "tmp", "new", "cur"] {
        assert_eq!(mode(&md.join(sub)), 0o700, "Maildir/{sub}");
    }
    // Secrets are never world-readable.
    assert_eq!(mode(&i.control("users")) & 0o077, 0);
    assert_eq!(mode(&i.control("users.cdb")) & 0o007, 0);
    assert_eq!(mode(&i.control("popularity")) & 0o077, 0);
    assert_eq!(mode(&i.control("popularity.key")) & 0o077, 0);
    assert_eq!(i.user_ok(&["domain", "list"], ""), "x.test\n");
    assert_eq!(
        i.user_ok(&["alias", "list"], ""),
        "abuse@x.test: postmaster@x.test\n"
    );
    // A second domain, with its postmaster elsewhere: no password needed.
    i.user_ok(
        &[
            "domain",
            "add",
            "y.test",
            "--postmaster",
            "postmaster@x.test",
        ],
        "",
    );
    assert_eq!(
        i.user_ok(&["alias", "list"], ""),
        "abuse@x.test: postmaster@x.test\npostmaster@y.test: postmaster@x.test\nabuse@y.test: postmaster@x.test\n"
    );
    let o = i.user(&["domain", "add", "x.test"], "");
    assert_eq!(o.code(), Some(100));
    assert_eq!(
        o.stderr,
        "postern-user: fatal: domain x.test is already hosted here\n"
    );
}

#[test]
fn the_compiled_databases_are_plain_cdb() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    i.user_ok(&["alias", "add", "@x.test", "alice@x.test"], "");
    let Some(v) = tinycdb_get(&i.control("users.cdb"), "alice@x.test") else {
        return;
    };
    let fields: Vec<&[u8]> = v.split(|&b| b == 0).collect();
    assert!(fields[0].starts_with(b"$argon2id$"));
    assert_eq!(&fields[1..], [&b""[..], b"users/x.test/alice", b""]);
    assert_eq!(
        tinycdb_get(&i.control("aliases.cdb"), "@x.test").unwrap(),
        b"alice@x.test\0"
    );
    assert_eq!(
        tinycdb_get(&i.control("recipients.cdb"), "x.test").unwrap(),
        b""
    );
    let lookup = postern_mailstore::lookup_user(i.home(), "ALICE@x.test")
        .unwrap()
        .unwrap();
    assert_eq!(lookup.maildir, i.home().join("users/x.test/alice/Maildir"));
    assert_eq!(
        mode(&i.control("recipients.cdb")),
        0o644,
        "no secrets: the SMTP server may read it"
    );
}

#[test]
fn passwords_are_never_taken_from_the_command_line() {
    let i = Instance::with_users(&[], None);
    let o = i.user(&["add", "bob@x.test", PW], "");
    assert_eq!(o.code(), Some(100));
    assert!(
        o.stderr.starts_with("postern-user: usage: "),
        "{}",
        o.stderr
    );
    let o = i.user(&["add", "bob@x.test", "--password", PW], "");
    assert_eq!(o.code(), Some(100));
    let o = i.user(&["add", "bob@x.test"], "");
    assert_eq!(o.code(), Some(100));
    assert!(
        o.stderr.contains("no password on standard input"),
        "{}",
        o.stderr
    );
    assert!(
        !i.home().join("users/x.test/bob").exists()
            || postern_mailstore::lookup_user(i.home(), "bob@x.test")
                .unwrap()
                .is_none()
    );
}

#[test]
fn weak_passwords_are_refused_in_one_line_saying_why() {
    let i = Instance::with_users(&[], None);
    for (pw, why) in [
        ("short", "password refused: shorter than 8 characters"),
        (
            "Password1",
            "password refused: it is on the list of the 10000 most common passwords",
        ),
        (
            "iloveyou",
            "password refused: it is on the list of the 10000 most common passwords",
        ),
        (
            "bobbobbob-2024",
            "password refused: it contains the mailbox name",
        ),
    ] {
        let o = i.user(&["add", "bob@x.test"], &format!("{pw}\n"));
        assert_eq!(o.code(), Some(100), "{pw}");
        assert_eq!(o.stderr, format!("postern-user: fatal: {why}\n"), "{pw}");
    }
    assert!(postern_mailstore::lookup_user(i.home(), "bob@x.test")
        .unwrap()
        .is_none());
}

#[test]
fn a_password_too_popular_on_this_server_is_refused() {
    let i = Instance::with_users(&[("a@x.test", PW), ("b@x.test", PW)], None);
    let o = i.user(&["add", "c@x.test"], &format!("{PW}\n"));
    assert_eq!(o.code(), Some(100));
    assert_eq!(o.stderr.lines().count(), 1);
    assert!(
        o.stderr
            .contains("password refused: too popular on this server (2 other users"),
        "{}",
        o.stderr
    );
    // The same goes for a password change.
    i.user_ok(&["add", "c@x.test"], "something else entirely\n");
    assert_eq!(
        i.user(&["passwd", "c@x.test"], &format!("{PW}\n")).code(),
        Some(100)
    );
    // The counts cannot be read back into passwords.
    let counts = fs::read_to_string(i.control("popularity")).unwrap();
    assert!(!counts.contains("violet"));
    assert!(
        counts
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.len() <= 16),
        "{counts}"
    );
    // The admin may raise the limit.
    fs::write(i.control("popularitylimit"), "5\n").unwrap();
    i.user_ok(&["add", "d@x.test"], &format!("{PW}\n"));
}

#[test]
fn passwd_changes_only_the_hash() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    i.user_ok(&["quota", "alice@x.test", "5000"], "");
    let before = postern_mailstore::lookup_user(i.home(), "alice@x.test")
        .unwrap()
        .unwrap();
    i.user_ok(&["passwd", "alice@x.test"], "a brand new phrase\n");
    let after = postern_mailstore::lookup_user(i.home(), "alice@x.test")
        .unwrap()
        .unwrap();
    assert_ne!(before.hash, after.hash);
    assert_eq!((after.quota, &after.home), (Some(5000), &before.home));
    assert!(postern_mailstore::password::verify(
        b"a brand new phrase",
        &after.hash
    ));
    let o = i.user(&["passwd", "nobody@x.test"], "a brand new phrase\n");
    assert_eq!(
        o.stderr,
        "postern-user: fatal: no such mailbox: nobody@x.test\n"
    );
}

#[test]
fn a_hand_edit_is_compiled() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    let mut aliases = fs::read_to_string(i.control("aliases")).unwrap();
    aliases.push_str("# added by hand\nsales@x.test: alice@x.test, boss@elsewhere.test\n");
    fs::write(i.control("aliases"), aliases).unwrap();
    assert!(
        postern_mailstore::resolve_alias(i.home(), "sales@x.test")
            .unwrap()
            .is_none(),
        "not compiled yet"
    );
    i.user_ok(&["compile"], "");
    assert_eq!(
        postern_mailstore::resolve_alias(i.home(), "Sales@X.test")
            .unwrap()
            .unwrap(),
        ["alice@x.test", "boss@elsewhere.test"]
    );
    postern_mailstore::compile_all(i.home()).unwrap();
    // Later edits keep the hand-written comment.
    i.user_ok(&["alias", "add", "info@x.test", "alice@x.test"], "");
    assert!(fs::read_to_string(i.control("aliases"))
        .unwrap()
        .contains("# added by hand\n"));
}

#[test]
fn a_broken_line_names_itself_and_leaves_the_old_cdb() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    let old = fs::read(i.control("users.cdb")).unwrap();
    let mut users = fs::read_to_string(i.control("users")).unwrap();
    users.push_str("# a comment\nbob@x.test:plaintext:0\n");
    fs::write(i.control("users"), users).unwrap();
    let o = i.user(&["compile"], "");
    assert_eq!(o.code(), Some(100));
    assert_eq!(
        o.stderr,
        "postern-user: fatal: control/users:4: password hash must be an argon2 PHC string ($argon2id$...) or start with '!'\n"
    );
    assert_eq!(
        fs::read(i.control("users.cdb")).unwrap(),
        old,
        "the old cdb stays in force"
    );
    assert!(postern_mailstore::lookup_user(i.home(), "alice@x.test")
        .unwrap()
        .is_some());
    // Library entry point (posternctl cdb) says the same.
    let e = postern_mailstore::compile_all(i.home()).unwrap_err();
    assert!(e.msg.starts_with("control/users:4:"), "{}", e.msg);
    // Changes through the tool are refused too until the file is fixed.
    let o = i.user(&["add", "carol@x.test"], "another long phrase\n");
    assert_eq!(o.code(), Some(100));
    assert!(o.stderr.contains("control/users:4:"), "{}", o.stderr);
    // No temporary files are left behind.
    let names: Vec<String> = fs::read_dir(i.home().join("control"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn quotas_are_kept_in_maildirsize_and_listed() {
    let i = Instance::with_users(&[], None);
    i.user_ok(
        &["add", "alice@x.test", "--quota", "1000"],
        &format!("{PW}\n"),
    );
    i.user_ok(&["add", "bob@x.test"], "yet another good phrase\n");
    let md = i.home().join("users/x.test/alice/Maildir");
    assert_eq!(
        fs::read_to_string(md.join("maildirsize")).unwrap(),
        "1000S\n       0    0\n"
    );
    assert!(
        !i.home()
            .join("users/x.test/bob/Maildir/maildirsize")
            .exists(),
        "no quota, no maildirsize"
    );
    // Local delivery's calls.
    use postern_mailstore::{check_quota, record_delivery, QuotaCheck};
    assert_eq!(check_quota(&md, 700).unwrap(), QuotaCheck::Ok);
    fs::write(md.join("new/1700000000.M1P1.h,S=700"), vec![b'x'; 700]).unwrap();
    record_delivery(&md, 700).unwrap();
    assert_eq!(check_quota(&md, 400).unwrap(), QuotaCheck::Over);
    fs::write(
        i.home().join("users/x.test/bob/Maildir/cur/1.M2P2.h:2,S"),
        b"hello\n",
    )
    .unwrap();
    assert_eq!(
        i.user_ok(&["list"], ""),
        "postmaster@x.test - 0 0\nalice@x.test 1000 700 1\nbob@x.test - 6 1\n"
    );
    assert_eq!(i.user_ok(&["list", "x.test"], "").lines().count(), 3);
    assert_eq!(i.user_ok(&["list", "y.test"], ""), "");
    i.user_ok(&["quota", "alice@x.test", "5000"], "");
    assert_eq!(
        fs::read_to_string(md.join("maildirsize")).unwrap(),
        "5000S\n     700    1\n"
    );
    assert_eq!(check_quota(&md, 400).unwrap(), QuotaCheck::Ok);
    i.user_ok(&["quota", "alice@x.test", "0"], "");
    assert!(!md.join("maildirsize").exists());
    assert!(fs::read_to_string(i.control("users"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("alice@x.test:") && l.ends_with(":0")));
}

#[test]
fn aliases_and_catch_alls() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    i.user_ok(&["alias", "add", "sales@x.test", "alice@x.test"], "");
    i.user_ok(
        &[
            "alias",
            "add",
            "sales@x.test",
            "bob@remote.test",
            "alice@x.test",
        ],
        "",
    );
    assert_eq!(
        postern_mailstore::resolve_alias(i.home(), "sales@x.test")
            .unwrap()
            .unwrap(),
        ["alice@x.test", "bob@remote.test"]
    );
    assert!(!postern_mailstore::is_valid_recipient(i.home(), "random@x.test").unwrap());
    i.user_ok(&["alias", "add", "@x.test", "alice@x.test"], "");
    assert!(postern_mailstore::is_valid_recipient(i.home(), "random@x.test").unwrap());
    assert_eq!(
        postern_mailstore::resolve_alias(i.home(), "random@x.test")
            .unwrap()
            .unwrap(),
        ["alice@x.test"]
    );
    assert!(postern_mailstore::is_hosted_domain(i.home(), "x.test").unwrap());
    for (args, why) in [
        (
            vec!["alias", "add", "alice@x.test", "bob@remote.test"],
            "alice@x.test is a mailbox",
        ),
        (
            vec!["alias", "add", "a@other.test", "alice@x.test"],
            "domain other.test is not hosted here",
        ),
        (vec!["alias", "add", "a@x.test", "|/bin/sh"], "bad target"),
        (
            vec!["alias", "del", "nobody@x.test"],
            "no such alias: nobody@x.test",
        ),
    ] {
        let o = i.user(&args, "");
        assert_eq!(o.code(), Some(100), "{args:?}");
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
    }
    i.user_ok(&["alias", "del", "@x.test"], "");
    assert!(!postern_mailstore::is_valid_recipient(i.home(), "random@x.test").unwrap());
}

#[test]
fn del_keeps_the_mail_and_domain_del_wants_an_empty_domain() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    let o = i.user(&["domain", "del", "x.test"], "");
    assert_eq!(
        o.stderr,
        "postern-user: fatal: domain x.test still has 2 mailboxes: delete them first\n"
    );
    let out = i.user_ok(&["del", "alice@x.test"], "");
    assert!(
        out.starts_with("deleted alice@x.test; its mail is kept in "),
        "{out}"
    );
    let kept = deleted_dirs(i.home(), "alice");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        out.trim_end().ends_with(&kept[0].display().to_string()),
        "{out}"
    );
    assert!(kept[0].join("Maildir/new").is_dir());
    assert!(!i.home().join("users/x.test/alice").exists());
    assert!(postern_mailstore::lookup_user(i.home(), "alice@x.test")
        .unwrap()
        .is_none());
    i.user_ok(&["del", "postmaster@x.test"], "");
    i.user_ok(&["domain", "del", "x.test"], "");
    assert_eq!(fs::read_to_string(i.control("aliases")).unwrap(), "");
    assert_eq!(fs::read_to_string(i.control("rcpthosts")).unwrap(), "");
    assert!(!postern_mailstore::is_hosted_domain(i.home(), "x.test").unwrap());
}

/// The directories `del` moved `local@x.test`'s mailbox to.
fn deleted_dirs(home: &Path, local: &str) -> Vec<PathBuf> {
    let dir = home.join("users/x.test/.deleted");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{local}."))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Regression: `del` then `add` of the same address gave the new owner the old mail.
#[test]
fn deleting_and_re_adding_an_address_does_not_hand_over_the_old_mail() {
    let i = Instance::with_users(&[("alice@x.test", PW)], None);
    let old_mail = i.home().join("users/x.test/alice/Maildir/new/1.old.x.test");
    fs::write(&old_mail, "Subject: for the old alice\n\nsecret\n").unwrap();
    i.user_ok(&["del", "alice@x.test"], "");
    let kept = deleted_dirs(i.home(), "alice");
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = kept[0].file_name().unwrap().to_string_lossy().into_owned();
    let secs: u64 = name.strip_prefix("alice.").unwrap().parse().unwrap();
    assert!(secs > 1_600_000_000, "alice.UNIXTIME: {name}");
    assert_eq!(
        mode(kept[0].parent().unwrap()),
        0o700,
        ".deleted is private"
    );
    assert!(
        kept[0].join("Maildir/new/1.old.x.test").is_file(),
        "mail kept"
    );
    // The new alice gets an empty mailbox.
    i.user_ok(&["add", "alice@x.test"], &format!("{PW} again\n"));
    let new = i.home().join("users/x.test/alice/Maildir/new");
    assert_eq!(fs::read_dir(&new).unwrap().count(), 0);
    // Deleted twice within a second: both kept, under different names.
    i.user_ok(&["del", "alice@x.test"], "");
    i.user_ok(&["add", "alice@x.test"], &format!("{PW} again\n"));
    i.user_ok(&["del", "alice@x.test"], "");
    assert_eq!(deleted_dirs(i.home(), "alice").len(), 3);
}

/// Regression: `add` accepted an existing mailbox directory (left by hand, or by an old
/// `del`) and gave its mail to the new address; now it needs `--reuse`.
#[test]
fn add_refuses_an_existing_mailbox_directory_without_reuse() {
    let i = Instance::with_users(&[], None);
    let dir = i.home().join("users/x.test/bob/Maildir/new");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("1.old.x.test"), "old mail\n").unwrap();
    let o = i.user(&["add", "bob@x.test"], &format!("{PW}\n"));
    assert_eq!(o.code(), Some(100), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("postern-user: fatal: ")
            && o.stderr.contains("users/x.test/bob exists already")
            && o.stderr.contains("--reuse"),
        "{}",
        o.stderr
    );
    assert!(postern_mailstore::lookup_user(i.home(), "bob@x.test")
        .unwrap()
        .is_none());
    let o = i.user(&["add", "bob@x.test", "--reuse=yes"], &format!("{PW}\n"));
    assert_eq!(o.code(), Some(100), "--reuse takes no value");
    i.user_ok(&["add", "--reuse", "bob@x.test"], &format!("{PW}\n"));
    assert!(postern_mailstore::lookup_user(i.home(), "bob@x.test")
        .unwrap()
        .is_some());
    assert!(dir.join("1.old.x.test").is_file(), "reused, mail and all");
}

#[test]
fn bad_usage_and_bad_input_exit_100() {
    let i = Instance::with_users(&[], None);
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["domain"],
        vec!["list", "a", "b"],
        vec!["quota", "a@x.test", "lots"],
        vec!["add"],
    ] {
        let o = i.user(&args, "");
        assert_eq!(o.code(), Some(100), "{args:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
    }
    let o = i.user(&["add", "../../etc@x.test"], &format!("{PW}\n"));
    assert_eq!(o.code(), Some(100));
    assert!(o.stderr.contains("bad local part"), "{}", o.stderr);
    let o = i.user(&["add", "a@nothere.test"], &format!("{PW}\n"));
    assert!(
        o.stderr.contains("domain nothere.test is not hosted here"),
        "{}",
        o.stderr
    );
    // No instance at all: temporary trouble.
    let mut cmd = Command::new(USER_BIN);
    cmd.args(["domain", "list"])
        .env("POSTERN_HOME", i.home().join("nope"));
    assert_eq!(run_with_input(cmd, b"").code(), Some(111));
}

#[test]
#[ignore = "needs root: run postern-user as root"]
fn as_root_mailboxes_need_a_non_root_owner() {
    postern_testkit::require_root("run postern-user as root");
    assert!(
        postern_common::privilege::lookup_account(postern_mailstore::owner::DEFAULT_OWNER).is_err(),
        "this test needs a machine without the account {} (an installed postern's)",
        postern_mailstore::owner::DEFAULT_OWNER
    );
    let i = Instance::bare();
    let o = i.user(&["domain", "add", "x.test"], &format!("{PW}\n"));
    assert_eq!(o.code(), Some(100));
    assert!(
        o.stderr
            .contains("running as root and no mailbox owner: give --owner NAME"),
        "{}",
        o.stderr
    );
    let o = i.user(
        &["domain", "add", "x.test", "--owner", "root"],
        &format!("{PW}\n"),
    );
    assert!(
        o.stderr.contains("mailboxes must not belong to root"),
        "{}",
        o.stderr
    );
    let acct = Account::create("mo");
    i.user_ok(
        &["domain", "add", "x.test", "--owner", &acct.name],
        &format!("{PW}\n"),
    );
    for sub in [
        "users/x.test",
        "users/x.test/postmaster",
        "users/x.test/postmaster/Maildir/cur",
    ] {
        let m = fs::metadata(i.home().join(sub)).unwrap();
        assert_eq!((m.uid(), m.gid()), (acct.uid, acct.gid), "{sub}");
    }
    // checkpassword, running as the owner, can keep its failed-login table.
    let m = fs::metadata(i.home().join("run/authfail")).unwrap();
    assert_eq!((m.uid(), m.permissions().mode() & 0o777), (acct.uid, 0o700));
    // Later commands find the owner in control/mailowner.
    i.user_ok(
        &["add", "alice@x.test", "--quota", "100"],
        "a long enough phrase\n",
    );
    let m = fs::metadata(i.home().join("users/x.test/alice/Maildir/maildirsize")).unwrap();
    assert_eq!(
        m.uid(),
        acct.uid,
        "deliveries running as the owner can append"
    );
}
