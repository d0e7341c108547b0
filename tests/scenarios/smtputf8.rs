//! SMTPUTF8 (RFC 6531) through a running single-user instance: a UTF-8 mailbox made with
//! postern-user, a message from Python's smtplib with the `SMTPUTF8` option to it and
//! from a UTF-8 sender, delivered by postern-local into that mailbox's Maildir with the
//! addresses unchanged; without the option, smtplib's message is refused with 5.6.7.

use crate::support::{add_domain, mail_instance, run_with_input, ThrowawayUser};
use postern_testkit::{expect_within, run, tempdir, workspace_bin, Daemon};
use std::fs;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "k7#Vq9!zLm2p";

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn a_utf8_address_is_accepted_and_delivered_to_its_mailbox() {
    let Some(user) = ThrowawayUser::create("postern-t-utf8") else {
        return;
    };
    let dir = tempdir();
    let (home, ports) = mail_instance(&user, dir.path());
    let smtp = ports.smtp;
    add_domain(&user, &home, "example.test", PASSWORD);
    let mut add = user.command(workspace_bin("postern-user"));
    add.env("POSTERN_HOME", &home)
        .args(["add", "jörg@example.test"]);
    run_with_input(
        "postern-user add jörg",
        &mut add,
        format!("{PASSWORD}\n").as_bytes(),
    );
    let maildir = home.join("users/example.test/jörg/Maildir");
    assert!(
        maildir.join("new").is_dir(),
        "the mailbox directory is the local part"
    );

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    expect_within(T, "the SMTP service to listen", || {
        TcpStream::connect(("127.0.0.1", smtp)).is_ok()
    });

    let send = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
s.ehlo()
print("offered", s.has_extn("smtputf8"))
msg = "From: Zoë <zoë@outside.test>\r\nTo: jörg@example.test\r\nSubject: grüße\r\n\r\nHallo Jörg\r\n".encode("utf-8")
# Without the parameter the server refuses the UTF-8 sender (smtplib itself will not
# send one: the raw command goes through its socket).
s.sock.sendall("MAIL FROM:<zoë@outside.test>\r\n".encode("utf-8"))
print("without", s.getreply()[0])
s.rset()
s.sendmail("zoë@outside.test", ["jörg@example.test"], msg, mail_options=["SMTPUTF8"])
print("sent")
s.quit()
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &send]), T);
    assert_eq!(code, Some(0), "smtplib: {err}{out}");
    assert!(out.contains("offered True"), "{out}");
    assert!(out.contains("without 553"), "{out}");
    assert!(out.contains("sent"), "{out}");

    expect_within(T, "delivery to jörg's Maildir", || {
        fs::read_dir(maildir.join("new"))
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    });
    let path = fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let message = fs::read_to_string(path).unwrap();
    assert!(
        message.contains("Delivered-To: jörg@example.test"),
        "{message}"
    );
    assert!(
        message.contains("Return-Path: <zoë@outside.test>"),
        "{message}"
    );
    assert!(message.contains(" with UTF8SMTP;"), "{message}");
    assert!(message.contains("Subject: grüße"), "{message}");
    assert!(message.ends_with("Hallo Jörg\n"), "{message}");
    let log = fs::read_to_string(home.join("log/smtpd/current")).unwrap_or_default();
    assert!(
        log.contains("event=accept ip=127.0.0.200") && log.contains("from=<zo"),
        "{log}"
    );
}
