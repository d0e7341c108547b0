//! The pre-greeting check in a running single-user instance: with
//! `control/pregreetwait` set before the SMTP service starts, the run script puts
//! postern-pregreet before postern-smtpd. A raw-socket client that talks at once gets
//! 554 (and 221 to QUIT) and is logged; Python's smtplib, which waits for the greeting,
//! sends a message that is delivered.

use crate::support::{add_domain, mail_instance, quiet_dns, ThrowawayUser};
use postern_testkit::{expect_within, run, tempdir, workspace_bin, Daemon};
use std::fs;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "k7#Vq9!zLm2p";

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn an_early_talker_is_refused_and_smtplib_gets_through() {
    let Some(user) = ThrowawayUser::create("postern-t-pregr") else {
        return;
    };
    let dir = tempdir();
    let (home, ports) = mail_instance(&user, dir.path());
    let smtp = ports.smtp;
    add_domain(&user, &home, "example.test", PASSWORD);
    fs::write(home.join("control/pregreetwait"), "2\n").unwrap();
    let _dns = quiet_dns(&home);
    assert!(
        home.join("run/pregreet").is_dir(),
        "posternctl init makes it"
    );

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    expect_within(T, "the SMTP service to listen", || {
        TcpStream::connect(("127.0.0.1", smtp)).is_ok()
    });

    // The early talker comes from 127.0.0.202: 127.0.0.1 is a relay client by the
    // default rules, and relay clients skip the check.
    let early = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {smtp}), timeout=30, source_address=("127.0.0.202", 0))
s.sendall(b"EHLO bot.example\r\n")
got = b""
while b"503" not in got:
    chunk = s.recv(512)
    if not chunk: break
    got += chunk
s.sendall(b"QUIT\r\n")
while b"221" not in got:
    chunk = s.recv(512)
    if not chunk: break
    got += chunk
print(got.decode())
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &early]), T);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("554 5.7.1 ") && out.contains("you talked before the greeting"),
        "{out}"
    );
    assert!(out.contains("503 5.5.1 bad sequence of commands"), "{out}");
    assert!(out.contains("221 2.0.0 "), "{out}");
    expect_within(T, "the drop in the smtpd log", || {
        fs::read_to_string(home.join("log/smtpd/current"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("event=pregreet ip=127.0.0.202 result=drop why=talked-first"))
    });

    // smtplib waits for the greeting, so its message goes through.
    let send = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
s.sendmail("friend@outside.test", ["postmaster@example.test"],
           "From: friend@outside.test\r\nTo: postmaster@example.test\r\nSubject: waited\r\n\r\npatience\r\n")
s.quit()
"#
    );
    let (code, _, err) = run(Command::new("python3").args(["-c", &send]), T);
    assert_eq!(code, Some(0), "smtplib: {err}");
    let new = home.join("users/example.test/postmaster/Maildir/new");
    expect_within(T, "delivery", || {
        fs::read_dir(&new)
            .map(|d| {
                d.flatten().any(|e| {
                    fs::read_to_string(e.path())
                        .map(|m| m.contains("Subject: waited"))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    });
    assert!(home.join("run/pregreet/p-127.0.0.200").exists());
    assert!(home.join("run/pregreet/d-127.0.0.202").exists());
}
