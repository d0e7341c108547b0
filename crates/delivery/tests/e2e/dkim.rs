//! DKIM signing in postern-remote, checked by someone else's verifier: Python's dkimpy
//! (Debian's python3-dkim) verifies what reached a raw SMTP server — a relay client's
//! message through postern-smtpd → postern-queue → postern-send → postern-remote, a
//! user's message queued directly, a bounce postern-send made, and a message handed to
//! postern-remote directly (rsa-sha256 and ed25519-sha256).
//! The public keys are given to dkimpy as the TXT records `posternctl dkim new` prints.

use crate::helpers::*;
use crate::remote::{raw_server, records, remote};
use postern_auth::dkim::{keys, record, Key, KeyType};
use postern_common::control::Control;
use postern_testkit::tempdir;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
/// Debian's python, whose dist-packages hold python3-dkim (a pyenv `python3` first on
/// PATH would not see it).
const PYTHON: &str = "/usr/bin/python3";
const VERIFY: &str = include_str!("../../../auth/tests/dkim_verify.py");

fn dkimpy_present() -> bool {
    let ok = Path::new("/usr/lib/python3/dist-packages/dkim/__init__.py").exists();
    if !ok && std::env::var("POSTERN_ALLOW_MISSING_TOOLS").as_deref() != Ok("1") {
        panic!("dkimpy (Debian package python3-dkim) is required; scripts/test installs it");
    }
    ok
}

/// A key for `domain` that signs its mail; its TXT record as (name, text).
fn key(inst: &Instance, domain: &str, selector: &str, kind: KeyType) -> (String, String) {
    let control = Control::at(inst.home().join("control"));
    let key = Key::generate(domain, selector, kind).unwrap();
    // The signing account's alone, as posternctl dkim new makes it: as root, postern-send
    // runs postern-remote as postern-remote, else nobody.
    let owner = nix::unistd::geteuid().is_root().then(|| {
        let a = ["postern-remote", "nobody"]
            .iter()
            .find_map(|n| postern_common::privilege::lookup_account(n).ok())
            .expect("account nobody");
        (
            nix::unistd::Uid::from_raw(a.uid),
            nix::unistd::Gid::from_raw(a.gid),
        )
    });
    keys::save(&control, &key, owner).unwrap();
    keys::set_active(&control, domain, selector, owner).unwrap();
    (record::name(selector, domain), record::value(&key).unwrap())
}

/// The message as the server got it: DATA's bytes without the final dot, unstuffed.
fn received(dir: &Path, n: usize) -> Vec<u8> {
    let data = std::fs::read(dir.join(format!("data.{n}"))).unwrap();
    let data = data.strip_suffix(b".\r\n").expect("DATA ends with a dot");
    let mut out = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// dkimpy's verdict on `msg`: (all signatures pass, its lines).
fn dkimpy(msg: &[u8], dns: &[(String, String)]) -> (bool, String) {
    let dir = tempdir();
    let script = dir.path().join("dkim_verify.py");
    std::fs::write(&script, VERIFY).unwrap();
    let file = dir.path().join("msg");
    std::fs::write(&file, msg).unwrap();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script).arg(&file);
    for (n, v) in dns {
        cmd.arg(n).arg(v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

const MESSAGE: &[u8] = b"From: Alice <alice@example.test>\n\
To: bob@far.test\n\
Subject: signed on the way out\n\
Date: Mon, 7 Dec 2026 20:00:00 +0000\n\
Message-ID: <dkim-1@example.test>\n\
\n\
.a leading dot, stuffed on the wire\n\
trailing blanks   \n\
a bare CR\rand no final line end";

#[test]
fn a_users_message_and_a_bounce_arrive_signed_through_the_queue() {
    if !dkimpy_present() {
        return;
    }
    let inst = Instance::new(&[("alice", 0)], "");
    let dns = vec![key(&inst, DOMAIN, "s1", KeyType::Rsa)];
    // Bounces come from MAILER-DAEMON@example.test, a domain with a key.
    inst.control("bouncehost", DOMAIN);
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["gone@far.test=550"]);
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    inst.inject("alice@example.test", &["bob@far.test"], MESSAGE);
    let send = inst.start_send();
    let d = send.wait_log("event=delivery ", T);
    assert!(d.contains("result=ok"), "{d}");

    let msg = received(rec.path(), 1);
    assert!(
        msg.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; "),
        "{}",
        String::from_utf8_lossy(&msg)
    );
    let (ok, out) = dkimpy(&msg, &dns);
    assert!(ok, "dkimpy: {out}\n{}", String::from_utf8_lossy(&msg));
    assert_eq!(out.trim(), "d=example.test s=s1 a=rsa-sha256 pass");
    eprintln!("user's message: {out}");

    // A recipient refused for good: postern-send's bounce goes out signed too.
    inst.inject(
        "carol@far.test",
        &["gone@far.test"],
        b"From: carol@far.test\nSubject: x\n\nhi\n",
    );
    let d = send.wait_log("rcpt=<carol@far.test>", T);
    assert!(d.contains("result=ok"), "{d}");
    let n: usize = d
        .rsplit("accepted as message ")
        .next()
        .and_then(|n| n.trim_end_matches('"').parse().ok())
        .expect("the server's message number");
    let bounce = received(rec.path(), n);
    let text = String::from_utf8_lossy(&bounce).into_owned();
    assert!(text.contains("MAILER-DAEMON@example.test"), "{text}");
    let (ok, out) = dkimpy(&bounce, &dns);
    assert!(ok, "dkimpy on the bounce: {out}\n{text}");
    eprintln!("bounce: {out}");
}

#[test]
fn postern_remote_signs_with_ed25519_and_leaves_other_domains_alone() {
    if !dkimpy_present() {
        return;
    }
    let inst = Instance::new(&[("alice", 0)], "");
    let dns = vec![key(&inst, DOMAIN, "e1", KeyType::Ed25519)];
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &[]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));

    let (code, report) = remote(
        &inst,
        "far.test",
        "alice@example.test",
        &["bob@far.test"],
        MESSAGE,
    );
    assert_eq!(code, 0);
    assert!(
        records(&report).last().unwrap().starts_with('K'),
        "{report:?}"
    );
    let (ok, out) = dkimpy(&received(rec.path(), 1), &dns);
    assert!(ok, "dkimpy: {out}");
    assert_eq!(out.trim(), "d=example.test s=e1 a=ed25519-sha256 pass");

    // Neither From: nor the sender in a domain with a key: sent as it was.
    let other = b"From: x@elsewhere.test\nSubject: s\n\nbody\n";
    let (code, _) = remote(
        &inst,
        "far.test",
        "x@elsewhere.test",
        &["bob@far.test"],
        other,
    );
    assert_eq!(code, 0);
    assert_eq!(
        received(rec.path(), 2),
        b"From: x@elsewhere.test\r\nSubject: s\r\n\r\nbody\r\n"
    );

    // A key other accounts may read is not used: the message stays queued.
    let key = inst.home().join("control/dkim/example.test/e1.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let (code, report) = remote(
        &inst,
        "far.test",
        "alice@example.test",
        &["bob@far.test"],
        MESSAGE,
    );
    assert_eq!(code, 0);
    let last = records(&report).last().unwrap().clone();
    assert!(
        last.starts_with("Z") && last.contains("DKIM signing failed"),
        "{last}"
    );
    assert!(last.contains("mode 444"), "{last}");
    assert!(!rec.path().join("data.3").exists(), "nothing sent");
}

/// One SMTP reply (its last line).
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
fn a_relay_clients_message_through_smtpd_arrives_signed() {
    use std::io::{BufReader, Write};
    use std::process::Stdio;
    if !dkimpy_present() {
        return;
    }
    let inst = Instance::new(&[("alice", 0)], "");
    let dns = vec![key(&inst, DOMAIN, "s1", KeyType::Rsa)];
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &[]);
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let send = inst.start_send();
    // postern-smtpd as tcpserver runs it for a relay client, queueing with postern-queue.
    let mut smtpd = Command::new(postern_testkit::workspace_bin("postern-smtpd"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("POSTERN_HOME", inst.home())
        .env("QMAILQUEUE", bin("postern-queue"))
        .env("PROTO", "TCP")
        .env("TCPREMOTEIP", "192.0.2.20")
        .env("TCPREMOTEPORT", "40000")
        .env("TCPLOCALIP", "127.0.0.1")
        .env("TCPLOCALPORT", "25")
        .env("RELAYCLIENT", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = smtpd.stdin.take().unwrap();
    let mut out = BufReader::new(smtpd.stdout.take().unwrap());
    assert!(reply(&mut out).starts_with("220"));
    let mut say = |line: &str, answer: bool| -> String {
        input.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        if answer {
            reply(&mut out)
        } else {
            String::new()
        }
    };
    assert!(say("EHLO laptop.example.test", true).starts_with("250"));
    assert!(say("MAIL FROM:<alice@example.test>", true).starts_with("250"));
    assert!(say("RCPT TO:<bob@far.test>", true).starts_with("250"));
    assert!(say("DATA", true).starts_with("354"));
    for l in String::from_utf8_lossy(MESSAGE).split('\n') {
        let l = l.replace('\r', "");
        say(
            &if l.starts_with('.') {
                format!(".{l}")
            } else {
                l
            },
            false,
        );
    }
    let queued = say(".", true);
    assert!(queued.starts_with("250"), "{queued}");
    assert!(say("QUIT", true).starts_with("221"));
    let _ = smtpd.wait();

    let d = send.wait_log("event=delivery ", T);
    assert!(d.contains("result=ok"), "{d}");
    let msg = received(rec.path(), 1);
    let text = String::from_utf8_lossy(&msg).into_owned();
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    assert!(
        text.contains("\r\nReceived: from laptop.example.test"),
        "smtpd's line kept: {text}"
    );
    let (ok, out) = dkimpy(&msg, &dns);
    assert!(ok, "dkimpy: {out}\n{text}");
    eprintln!("through smtpd: {out}");
}
