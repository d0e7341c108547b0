//! IMAP through Dovecot (docs/dovecot.md): a single-user instance run by a throwaway
//! user under postern-svscan, with Debian's Dovecot (dovecot-imapd) as one more service
//! of it (`service/dovecot`, its log in `log/dovecot` through postern-multilog), rootless:
//! every Dovecot process runs as that user, which is also the mailbox owner. Dovecot's
//! passdb is postern-checkpassword (the `checkpassword` driver), its userdb `prefetch`
//! (what checkpassword-reply hands back: user, home, uid, gid), its mail
//! `maildir:~/Maildir` with the Maildir++ quota plugin.
//!
//! Python's imaplib: a wrong password is refused (postern-checkpassword's
//! `event=authfail` in Dovecot's log, counted by `posternctl report --metrics`); the
//! right one logs in; mail that came in by SMTP and was delivered by postern-local is
//! there; flags are set; a message is expunged — and postern-pop3d no longer lists it;
//! then POP3 deletes one and IMAP no longer sees it, and the POP3 `S` flag shows as
//! `\Seen`. After each writer, `maildirsize` still adds up to what is in the Maildir.

use crate::support::{add_domain, free_port, run_with_input, user_instance, ThrowawayUser};
use postern_testkit::{expect_within, find_program, interop_required, require, run, tempdir};
use postern_testkit::{workspace_bin, write_script, Daemon};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "k7#Vq9!zLm2p";
const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "Imap-pw!4821x";
const QUOTA: u64 = 1_000_000;

/// The Dovecot configuration of docs/dovecot.md, for a rootless instance: `user` runs
/// every process, the config, state and sockets live in `dir`.
fn dovecot_conf(dir: &Path, home: &Path, user: &ThrowawayUser, port: u16) -> String {
    let (d, h, bin) = (dir.display(), home.display(), home.join("bin"));
    let bin = bin.display();
    let (name, uid) = (&user.name, user.uid);
    format!(
        r#"# postern + Dovecot (docs/dovecot.md), rootless for the test
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = postern-test-{port}
log_path = /dev/stderr
log_timestamp =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Rootless: every Dovecot process is this account (in a system install, only auth and
# the mail processes are the mailbox owner).
default_internal_user = {name}
default_internal_group = {name}
default_login_user = {name}
first_valid_uid = {uid}
last_valid_uid = {uid}
import_environment = TZ POSTERN_HOME={h}

passdb {{
  driver = checkpassword
  args = {bin}/postern-checkpassword
}}
userdb {{
  driver = prefetch
}}
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = maildir:User quota
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"#
    )
}

/// Messages in `new/` + `cur/`, and the sum of their sizes as the quota counts them
/// (`,S=<n>` in the name, else the file's length).
fn maildir_usage(maildir: &Path) -> (i64, i64) {
    let mut bytes = 0;
    let mut count = 0;
    for sub in ["new", "cur"] {
        for e in fs::read_dir(maildir.join(sub)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = name
                .split_once(",S=")
                .and_then(|(_, r)| r.split([',', ':']).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| e.metadata().unwrap().len() as i64);
            bytes += size;
            count += 1;
        }
    }
    (bytes, count)
}

/// `maildirsize`: the limit line, then the sum of its `BYTES COUNT` lines.
fn maildirsize(maildir: &Path) -> (String, (i64, i64)) {
    let text = fs::read_to_string(maildir.join("maildirsize")).unwrap();
    let mut lines = text.lines();
    let limit = lines.next().unwrap_or("").to_string();
    let mut sum = (0, 0);
    for l in lines {
        let mut f = l.split_whitespace().map(|n| n.parse::<i64>().unwrap());
        sum.0 += f.next().unwrap_or(0);
        sum.1 += f.next().unwrap_or(0);
    }
    (limit, sum)
}

fn assert_quota_consistent(maildir: &Path, after: &str) {
    let (limit, sum) = maildirsize(maildir);
    assert_eq!(limit, format!("{QUOTA}S"), "the limit line, after {after}");
    assert_eq!(
        sum,
        maildir_usage(maildir),
        "maildirsize adds up after {after}: {}",
        fs::read_to_string(maildir.join("maildirsize")).unwrap()
    );
}

fn python(what: &str, code: &str) -> String {
    let (status, out, err) = run(Command::new("python3").args(["-c", code]), T);
    assert_eq!(status, Some(0), "{what}: {err}\n{out}");
    // imaplib's protocol trace (debug level 4) is on stderr: the session's transcript.
    eprintln!("--- {what} ---\n{err}{out}");
    out
}

fn send(smtp: u16, subject: &str) {
    python(
        "smtplib",
        &format!(
            r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
s.sendmail("friend@outside.test", ["{ALICE}"],
           "From: friend@outside.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nBody of {subject}.\r\n")
s.quit()
"#
        ),
    );
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn dovecot_serves_postern_mailboxes_through_postern_checkpassword() {
    let Some(dovecot) = require("dovecot", "dovecot-imapd") else {
        return;
    };
    if !Path::new("/usr/lib/dovecot/imap").is_file() {
        if interop_required() {
            panic!("/usr/lib/dovecot/imap (Debian package dovecot-imapd) is required");
        }
        eprintln!("skipped: dovecot-imapd not installed; scripts/test installs it");
        return;
    }
    assert!(find_program("python3").is_some());
    let Some(user) = ThrowawayUser::create("postern-t-imap") else {
        return;
    };
    let dir = tempdir();
    let (smtp, pop3, imap) = (free_port(), free_port(), free_port());
    let ports: Vec<String> = [("--smtp-port", smtp), ("--pop3-port", pop3)]
        .iter()
        .flat_map(|(o, p)| [o.to_string(), p.to_string()])
        .collect();
    let home = user_instance(&user, dir.path(), &ports);
    add_domain(&user, &home, "example.test", PASSWORD);
    let _dns = crate::support::quiet_dns(&home);
    let mut add = user.command(workspace_bin("postern-user"));
    add.env("POSTERN_HOME", &home)
        .args(["add", ALICE, "--quota", &QUOTA.to_string()]);
    run_with_input(
        "postern-user add",
        &mut add,
        format!("{ALICE_PW}\n").as_bytes(),
    );
    let maildir = home.join("users/example.test/alice/Maildir");
    assert_quota_consistent(&maildir, "postern-user add");

    // Dovecot as a service of the instance: its config and state in dovecot/, its log
    // (stderr) through postern-multilog into log/dovecot, like every other service.
    let conf_dir = dir.path().join("dovecot");
    fs::create_dir(&conf_dir).unwrap();
    let conf = conf_dir.join("dovecot.conf");
    fs::write(&conf, dovecot_conf(&conf_dir, &home, &user, imap)).unwrap();
    let service = home.join("service/dovecot");
    fs::create_dir_all(service.join("log")).unwrap();
    write_script(
        &service.join("run"),
        &format!(
            "#!/bin/sh\nexec 2>&1\nexec {} -F -c {}\n",
            dovecot.display(),
            conf.display()
        ),
    );
    write_script(
        &service.join("log/run"),
        &format!(
            "#!/bin/sh\nexec {}/bin/postern-multilog t {}/log/dovecot\n",
            home.display(),
            home.display()
        ),
    );
    for p in [conf_dir.as_path(), &service, &service.join("log")] {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", user.uid, user.gid))
            .arg(p)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let mut svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    for port in [smtp, pop3, imap] {
        expect_within(T, "the services to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    // Mail in by SMTP, delivered by postern-send → postern-local into the Maildir.
    send(smtp, "first");
    send(smtp, "second");
    expect_within(T, "two deliveries and their maildirsize lines", || {
        maildir_usage(&maildir).1 == 2
            && maildir.join("maildirsize").is_file()
            && maildirsize(&maildir).1 == maildir_usage(&maildir)
    });
    assert_quota_consistent(&maildir, "two deliveries by postern-local");

    // IMAP: a wrong password, then the right one (the address in another case).
    let out = python(
        "imaplib session 1",
        &format!(
            r#"
import imaplib
m = imaplib.IMAP4("127.0.0.1", {imap}, timeout=30)
m.debug = 4
try:
    m.login("{ALICE}", "not the password")
    raise SystemExit("wrong password accepted!")
except imaplib.IMAP4.error as e:
    print("refused", e)
m = imaplib.IMAP4("127.0.0.1", {imap}, timeout=30)
m.debug = 4
print("login", m.login("Alice@Example.TEST", "{ALICE_PW}")[0])
typ, n = m.select("INBOX")
print("messages", n[0].decode())
typ, data = m.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
subjects = [d[1].decode().strip() for d in data if isinstance(d, tuple)]
print("subjects", "|".join(subjects))
typ, q = m.getquotaroot("INBOX")
print("quota", q[1][0].decode())
m.store("2", "+FLAGS", "(\\Flagged)")
m.store("1", "+FLAGS", "(\\Deleted)")
print("expunged", m.expunge()[1][0].decode())
typ, data = m.fetch("1:*", "(FLAGS)")
print("flags", data[0].decode())
m.logout()
"#
        ),
    );
    assert!(
        out.contains("refused b'[AUTHENTICATIONFAILED] Authentication failed.'"),
        "{out}"
    );
    assert!(out.contains("login OK"), "{out}");
    assert!(out.contains("messages 2"), "{out}");
    assert!(
        out.contains("subjects Subject: first|Subject: second"),
        "{out}"
    );
    // The limit from maildirsize's header (1000000 bytes, 977 KiB rounded up), which postern-user
    // wrote: Dovecot needs no quota_rule of its own. In use: the two messages with their
    // Received: and Authentication-Results: headers, just over 1 KiB.
    assert!(
        out.contains("quota \"User quota\" (STORAGE 2 977)"),
        "{out}"
    );
    assert!(out.contains("expunged 1"), "{out}");
    assert!(out.contains("\\Flagged"), "{out}");
    assert_quota_consistent(&maildir, "an expunge by Dovecot");

    // The failed login went through postern-checkpassword: its line, its table.
    expect_within(T, "the authfail line in Dovecot's log", || {
        fs::read_to_string(home.join("log/dovecot/current"))
            .map(|l| l.contains("event=authfail"))
            .unwrap_or(false)
    });
    let log = fs::read_to_string(home.join("log/dovecot/current")).unwrap();
    assert!(
        log.contains("event=authfail ip=127.0.0.1 user=alice@example.test reason=badpass"),
        "{log}"
    );
    assert!(
        log.contains("event=auth user=alice@example.test ip=127.0.0.1"),
        "{log}"
    );
    assert!(home.join("run/authfail/table").is_file());

    // POP3 sees what IMAP did: one message left (the second).
    send(smtp, "third");
    // postern-local links the message into new/ first (that is the delivery) and adds
    // its maildirsize line right after: wait for both.
    expect_within(T, "the third delivery and its maildirsize line", || {
        maildir_usage(&maildir).1 == 2
            && maildir.join("maildirsize").is_file()
            && maildirsize(&maildir).1 == maildir_usage(&maildir)
    });
    assert_quota_consistent(&maildir, "a delivery after Dovecot's expunge");
    let out = python(
        "poplib",
        &format!(
            r#"
import poplib
p = poplib.POP3("127.0.0.1", {pop3}, timeout=30)
p.user("{ALICE}"); p.pass_("{ALICE_PW}")
count, size = p.stat()
print("count", count)
for i in range(1, count + 1):
    subject = [l.decode() for l in p.top(i, 0)[1] if l.startswith(b"Subject:")][0]
    print("message", i, subject)
    if subject == "Subject: third":
        p.dele(i)
    else:
        p.retr(i)
p.quit()
"#
        ),
    );
    assert!(out.contains("count 2"), "{out}");
    assert!(!out.contains("Subject: first"), "{out}");
    assert!(out.contains("Subject: second"), "{out}");
    assert!(out.contains("Subject: third"), "{out}");
    assert_eq!(maildir_usage(&maildir).1, 1);
    assert_quota_consistent(&maildir, "a deletion by postern-pop3d");

    // IMAP sees what POP3 did: the third is gone, the second is \Seen (retrieved) and
    // still \Flagged.
    let out = python(
        "imaplib session 2",
        &format!(
            r#"
import imaplib
m = imaplib.IMAP4("127.0.0.1", {imap}, timeout=30)
m.debug = 4
m.login("{ALICE}", "{ALICE_PW}")
typ, n = m.select("INBOX")
print("messages", n[0].decode())
typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("message", data[0][0].decode(), data[0][1].decode().strip())
m.logout()
"#
        ),
    );
    assert!(out.contains("messages 1"), "{out}");
    assert!(out.contains("Subject: second"), "{out}");
    assert!(out.contains("\\Seen") && out.contains("\\Flagged"), "{out}");
    assert_quota_consistent(&maildir, "Dovecot's second session");

    // Dovecot's failed login is counted with the others by the metrics.
    let metrics = dir.path().join("postern.prom");
    let (code, _, err) = run(
        Command::new(workspace_bin("posternctl"))
            .args(["report", "--home"])
            .arg(&home)
            .arg("--metrics")
            .arg(&metrics),
        T,
    );
    assert_eq!(code, Some(0), "{err}");
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("\npostern_auth_failures_total 1\n"), "{text}");
    assert!(
        text.contains("\npostern_deliveries_total{channel=\"local\",result=\"delivered\"} 3\n"),
        "{text}"
    );

    // Stopping svscan stops Dovecot with the rest: nothing of the user is left.
    svscan.stop();
    expect_within(T, "every process of the user to end", || {
        let uid = user.uid.to_string();
        !fs::read_dir("/proc").unwrap().flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|&pid| postern_testkit::process_alive(pid))
                .and_then(|pid| postern_testkit::proc_status_field(pid, "Uid"))
                .is_some_and(|u| u.split_whitespace().next() == Some(uid.as_str()))
        })
    });
}
