//! SPF, DKIM and DMARC in postern-scan (on by default), with dnsmasq serving the
//! records: a forged `From: postmaster@example.test` from outside is refused 550 5.7.1
//! before any 250, as is mail from a `p=reject` domain that is not aligned; mail from
//! outside goes on with our `Authentication-Results:` on top and a forged one removed;
//! a logged-in user's mail is not checked. Last, the real postern-smtpd in front: the
//! forged postmaster gets `550 5.7.1` as the answer to the final dot, nothing queued;
//! `control/authchecks` set to 0 turns the checks off.

use crate::scan::Setup;
use std::fs;
use std::process::{Command, Stdio};

const RECEIVED: &str = "Received: from mx.outside.test (unknown [192.0.2.7])\n\tby mx.example.test with ESMTP;\n\tMon, 07 Dec 2026 12:00:00 +0000\n";

/// postern-scan as postern-smtpd runs it (fd 6 a pipe for the reason), with `env`:
/// (exit code, fd 6's bytes).
fn scan(s: &Setup, sender: &str, message: &str, env: &[(&str, &str)]) -> (i32, String) {
    let home = s.home();
    fs::write(home.join("in.msg"), message).unwrap();
    fs::write(
        home.join("in.env"),
        format!("F{sender}\0Tuser@example.test\0\0"),
    )
    .unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"( "$SCAN" <"$MSG" 6>&1 1<"$ENV"; echo $? >"$CODE" ) | cat"#)
        .env("SCAN", home.join("bin/postern-scan"))
        .env("MSG", home.join("in.msg"))
        .env("ENV", home.join("in.env"))
        .env("CODE", home.join("exit"))
        .env("POSTERN_HOME", home)
        .env("TCPREMOTEIP", "192.0.2.7")
        .env_remove("AUTHUSER")
        .env_remove("RELAYCLIENT")
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let code = fs::read_to_string(home.join("exit"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn queued(s: &Setup) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(s.home().join("queued"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msg"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn forged_hosted_senders_and_dmarc_rejects_are_refused_before_250() {
    let s = Setup::new();
    let Some((_dns, port)) = postern_testkit::dnsmasq(&[
        "--local=/test/".to_string(),
        "--txt-record=example.test,v=spf1 ip4:192.0.2.10 -all".to_string(),
        "--txt-record=strict.test,v=spf1 ip4:192.0.2.10 -all".to_string(),
        "--txt-record=_dmarc.strict.test,v=DMARC1; p=reject".to_string(),
    ]) else {
        return;
    };
    let control = s.home().join("control");
    fs::write(control.join("resolvers"), format!("127.0.0.1:{port}\n")).unwrap();
    // No control/authchecks: the checks are on by default (the Setup turns them off).
    fs::remove_file(control.join("authchecks")).unwrap();

    // An outsider writing as our postmaster.
    let forged = format!("{RECEIVED}From: Postmaster <postmaster@example.test>\nSubject: verify your account\n\nclick\n");
    let (code, reason) = scan(&s, "x@outside.test", &forged, &[]);
    assert_eq!(code, 82, "{reason}");
    assert!(
        reason.starts_with("D550 5.7.1 example.test is a domain of this host"),
        "{reason}"
    );
    // The same from a logged-in user: not checked, queued as it was.
    let (code, reason) = scan(
        &s,
        "postmaster@example.test",
        &forged,
        &[("AUTHUSER", "postmaster@example.test")],
    );
    assert_eq!(code, 0, "{reason}");
    assert_eq!(queued(&s).last().unwrap(), &forged);

    // A p=reject domain, not aligned.
    let dmarc = format!("{RECEIVED}From: boss@strict.test\nSubject: wire the money\n\nnow\n");
    let (code, reason) = scan(&s, "boss@strict.test", &dmarc, &[]);
    assert_eq!(code, 82, "{reason}");
    assert!(
        reason.starts_with("D550 5.7.1 strict.test publishes a DMARC policy of reject"),
        "{reason}"
    );
    // `authchecks 0`: neither checked nor refused, no header added.
    fs::write(control.join("authchecks"), "0\n").unwrap();
    let (code, reason) = scan(&s, "boss@strict.test", &dmarc, &[]);
    assert_eq!(code, 0, "{reason}");
    assert_eq!(queued(&s).last().unwrap(), &dmarc);
    fs::remove_file(control.join("authchecks")).unwrap();

    // Ordinary mail from outside: through, our header on top, the forged one gone.
    let plain = format!("{RECEIVED}Authentication-Results: mx.example.test; dmarc=pass\nFrom: sam@outside.test\nSubject: lunch\n\nTuesday?\n");
    let (code, reason) = scan(&s, "sam@outside.test", &plain, &[]);
    assert_eq!(code, 0, "{reason}");
    let got = queued(&s).last().unwrap().clone();
    eprintln!("{got}");
    assert!(
        got.starts_with("Authentication-Results: mx.example.test;\n\t"),
        "{got}"
    );
    assert!(got.contains("spf=none"), "{got}");
    assert!(!got.contains("dmarc=pass"), "{got}");
    assert!(
        got.ends_with(&plain[plain.find("From:").unwrap()..]),
        "{got}"
    );
}

/// One SMTP reply (its last line) from `out`.
fn reply(out: &mut impl std::io::BufRead) -> String {
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "smtpd hung up");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_string();
        }
    }
}

#[test]
fn through_postern_smtpd_the_forged_postmaster_gets_550_before_250() {
    use std::io::{BufReader, Write};
    let s = Setup::new();
    let Some((_dns, port)) = postern_testkit::dnsmasq(&[
        "--local=/test/".to_string(),
        "--txt-record=example.test,v=spf1 ip4:192.0.2.10 -all".to_string(),
    ]) else {
        return;
    };
    let control = s.home().join("control");
    fs::write(control.join("resolvers"), format!("127.0.0.1:{port}\n")).unwrap();
    fs::remove_file(control.join("authchecks")).unwrap();
    let mut smtpd = Command::new(postern_testkit::workspace_bin("postern-smtpd"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("POSTERN_HOME", s.home())
        .env("QMAILQUEUE", s.home().join("bin/postern-scan"))
        .env("PROTO", "TCP")
        .env("TCPREMOTEIP", "192.0.2.7")
        .env("TCPREMOTEPORT", "40000")
        .env("TCPLOCALIP", "127.0.0.1")
        .env("TCPLOCALPORT", "25")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = smtpd.stdin.take().unwrap();
    let mut out = BufReader::new(smtpd.stdout.take().unwrap());
    let greeting = reply(&mut out);
    assert!(greeting.starts_with("220"), "{greeting}");
    let mut say = |line: &str, answer: bool| -> String {
        input.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        if answer {
            reply(&mut out)
        } else {
            String::new()
        }
    };
    assert!(say("EHLO mx.outside.test", true).starts_with("250"));
    assert!(say("MAIL FROM:<x@outside.test>", true).starts_with("250"));
    let rcpt = say("RCPT TO:<user@example.test>", true);
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(say("DATA", true).starts_with("354"));
    for l in [
        "From: Postmaster <postmaster@example.test>",
        "Subject: verify your account",
        "",
        "click",
    ] {
        say(l, false);
    }
    let answer = say(".", true);
    assert!(
        answer.starts_with("550 5.7.1 example.test is a domain of this host"),
        "{answer}"
    );
    eprintln!("smtpd: {answer}");
    assert!(say("QUIT", true).starts_with("221"));
    let _ = smtpd.wait();
    assert!(queued(&s).is_empty(), "nothing queued");
}
