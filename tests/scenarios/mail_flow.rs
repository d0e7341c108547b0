//! The whole mail path of a single-user instance, as `scripts/quickstart` makes it, run
//! by a normal (throwaway) user under postern-svscan: Python's smtplib sends to the SMTP
//! service (tcpserver → tlsd → smtpd → postern-scan → postern-queue), postern-send
//! delivers with postern-local, and Python's poplib fetches the message over POP3.
//! Then the same for a message with a forbidden attachment: 554, quarantined, an alert
//! to postmaster, nothing delivered to the recipient — and for one sent by an
//! authenticated user on the submission port (outgoing mail is scanned too). Last, the
//! admin releases the incoming one with `posternctl quarantine release`.

use crate::support::{add_domain, mail_instance, ThrowawayUser};
use postern_testkit::{expect_within, run, tempdir, workspace_bin, Daemon};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "k7#Vq9!zLm2p";

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn smtp_in_local_delivery_pop3_out_and_a_virus_stopped() {
    let Some(user) = ThrowawayUser::create("postern-t-flow") else {
        return;
    };
    let dir = tempdir();
    let (home, ports) = mail_instance(&user, dir.path());
    let (smtp, submission, pop3) = (ports.smtp, ports.submission, ports.pop3);
    for service in ["smtpd", "submission", "pop3d", "send", "ratelimit"] {
        assert!(
            home.join("service").join(service).join("run").is_file(),
            "{service}"
        );
    }

    add_domain(&user, &home, "example.test", PASSWORD);
    let _dns = crate::support::quiet_dns(&home);

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    for port in [smtp, pop3] {
        expect_within(T, "the services to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    // In: from an outside client (127.0.0.200: the default rules make only 127.0.0.1 a
    // relay client), to a hosted mailbox.
    let send = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
s.sendmail("friend@outside.test", ["postmaster@example.test"],
           "From: friend@outside.test\r\nTo: postmaster@example.test\r\nSubject: hello\r\nMessage-ID: <flow-1@outside.test>\r\n\r\nIt works.\r\n")
try:
    s.sendmail("friend@outside.test", ["someone@elsewhere.test"], "Subject: relay\r\n\r\nno\r\n")
    raise SystemExit("relayed!")
except smtplib.SMTPRecipientsRefused as e:
    print("relay refused", e.recipients["someone@elsewhere.test"][0])
s.quit()
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &send]), T);
    assert_eq!(code, Some(0), "smtplib: {err}");
    assert!(
        out.contains("relay refused 553") || out.contains("relay refused 550"),
        "{out}"
    );

    let maildir = home.join("users/example.test/postmaster/Maildir");
    expect_within(T, "delivery to the Maildir", || {
        count(&maildir.join("new")) == 1
    });

    // Out: POP3.
    let fetch = format!(
        r#"
import poplib
p = poplib.POP3("127.0.0.1", {pop3}, timeout=30)
p.user("postmaster@example.test"); p.pass_("{PASSWORD}")
lines = p.retr(1)[1]
p.dele(1); p.quit()
print("\n".join(l.decode() for l in lines))
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &fetch]), T);
    assert_eq!(code, Some(0), "poplib: {err}");
    assert!(out.contains("Subject: hello"), "{out}");
    assert!(out.contains("Message-ID: <flow-1@outside.test>"), "{out}");
    assert!(
        out.contains("Delivered-To: postmaster@example.test"),
        "{out}"
    );
    assert!(out.contains("Received: "), "{out}");
    assert!(out.trim_end().ends_with("It works."), "{out}");

    // A forbidden attachment: refused before 250, quarantined, postmaster alerted.
    let virus = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
msg = ("From: bad@outside.test\r\nTo: postmaster@example.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
       "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
       "--B\r\nContent-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n--B--\r\n")
try:
    s.sendmail("bad@outside.test", ["postmaster@example.test"], msg)
    raise SystemExit("accepted!")
except smtplib.SMTPDataError as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
s.quit()
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &virus]), T);
    assert_eq!(code, Some(0), "smtplib: {err}");
    // The client is told which rule refused it (its description in filter.rules).
    assert_eq!(
        out.trim(),
        "refused 554 5.7.1 message refused: Executable File (.exe)"
    );
    assert_eq!(count(&home.join("quarantine/new")), 1, "a copy is kept");
    // The alert goes to postmaster@example.test — the only mail in that Maildir now.
    expect_within(T, "the alert", || count(&maildir.join("new")) == 1);
    let alert_name = fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let alert = fs::read_to_string(alert_name).unwrap();
    assert!(
        alert.contains("Subject: [postern] message quarantined: attachment"),
        "{alert}"
    );
    assert!(alert.contains("invoice.pdf.exe"), "{alert}");

    // Outgoing mail from an authenticated user (submission) is scanned too.
    let outgoing = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {submission}, timeout=30, source_address=("127.0.0.200", 0))
s.ehlo()
try:
    s.sendmail("postmaster@example.test", ["postmaster@example.test"], "Subject: no auth\r\n\r\nx\r\n")
    raise SystemExit("submission without AUTH accepted!")
except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused) as e:
    print("needs auth", getattr(e, "smtp_code", None) or list(e.recipients.values())[0][0])
s.login("postmaster@example.test", "{PASSWORD}")
msg = ("From: postmaster@example.test\r\nTo: postmaster@example.test\r\nSubject: tools\r\nMIME-Version: 1.0\r\n"
       "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream; name=\"setup.scr\"\r\n\r\nMZ\r\n--B--\r\n")
try:
    s.sendmail("postmaster@example.test", ["postmaster@example.test"], msg)
    raise SystemExit("accepted!")
except smtplib.SMTPDataError as e:
    print("refused", e.smtp_code)
s.quit()
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &outgoing]), T);
    assert_eq!(code, Some(0), "smtplib: {err} {out}");
    assert!(out.contains("needs auth 530"), "{out}");
    assert!(out.contains("refused 554"), "{out}");
    assert_eq!(
        count(&home.join("quarantine/new")),
        2,
        "the outgoing copy is kept too"
    );
    expect_within(T, "the submission log", || {
        fs::read_to_string(home.join("log/submission/current"))
            .map(|l| l.contains("event=quarantine"))
            .unwrap_or(false)
    });

    // The logs recorded both, with the keys the reports read.
    expect_within(T, "smtpd's log", || {
        fs::read_to_string(home.join("log/smtpd/current"))
            .map(|l| l.contains("event=quarantine"))
            .unwrap_or(false)
    });
    let smtpd_log = fs::read_to_string(home.join("log/smtpd/current")).unwrap();
    assert!(smtpd_log.contains("event=accept"), "{smtpd_log}");
    assert!(smtpd_log.contains("reason=relay"), "{smtpd_log}");
    let send_log = fs::read_to_string(home.join("log/send/current")).unwrap_or_default();
    assert!(send_log.contains("event=delivery"), "{send_log}");

    // The admin looks at the quarantine and releases the incoming message: it reaches
    // the recipient, without postern-scan's lines, marked as released.
    let ctl = |args: &[&str]| {
        let mut cmd = user.command(workspace_bin("posternctl"));
        cmd.arg("--home").arg(&home).args(args);
        run(&mut cmd, T)
    };
    let (code, list, err) = ctl(&["quarantine", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let first = list.lines().next().unwrap_or_default();
    assert!(
        first.contains("attachment") && first.contains("<bad@outside.test>"),
        "{list}"
    );
    assert!(list.contains("quarantine: 2 messages"), "{list}");
    let id = first.split_whitespace().next().unwrap().to_string();
    let (code, out, err) = ctl(&["quarantine", "release", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("queued for 1 recipient"), "{out}");
    expect_within(T, "the released message in the Maildir", || {
        fs::read_dir(maildir.join("new"))
            .map(|d| {
                d.flatten().any(|e| {
                    fs::read_to_string(e.path())
                        .map(|m| {
                            m.contains("X-Postern-Released: ") && m.contains("Subject: invoice")
                        })
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    });
    assert_eq!(
        count(&home.join("quarantine/new")),
        1,
        "the released copy is gone"
    );
}
