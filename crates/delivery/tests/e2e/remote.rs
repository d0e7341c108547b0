//! postern-remote against a raw-socket SMTP server (exact bytes on the wire) and against
//! Postfix's smtp-sink (a real MTA's SMTP engine).

use crate::helpers::*;
use postern_testkit::{require, run, tempdir, Daemon};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVER: &str = include_str!("smtp_server.py");

/// A raw SMTP server on a kernel-chosen port, recording into `dir`.
pub fn raw_server(dir: &Path, args: &[&str]) -> (Daemon, u16) {
    let script = dir.join("smtp_server.py");
    std::fs::write(&script, SERVER).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null());
    let mut d = Daemon::spawn("smtp_server.py", cmd);
    let out = d.child_mut().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    (d, line.trim().parse().expect("server port"))
}

/// Run postern-remote: the raw report.
pub fn remote(
    inst: &Instance,
    domain: &str,
    sender: &str,
    rcpts: &[&str],
    msg: &[u8],
) -> (i32, Vec<u8>) {
    let mut cmd = inst.command("postern-remote");
    cmd.arg(domain)
        .arg(sender)
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut d = Daemon::spawn("postern-remote", cmd);
    let child = d.child_mut();
    let _ = child.stdin.take().unwrap().write_all(msg);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        out
    });
    let st = d
        .wait_exit(Duration::from_secs(30))
        .expect("postern-remote finished within 30 s");
    (st.code().unwrap_or(-1), reader.join().unwrap())
}

pub fn records(report: &[u8]) -> Vec<String> {
    report
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn exact_bytes_crlf_and_dot_stuffing() {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &[]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let msg = b"Subject: dots\n\n.leading dot\n..two\nbare lf\r\ncrlf\nlast line without newline";
    let (code, report) = remote(
        &inst,
        "far.test",
        "a@example.test",
        &["x@far.test", "y@far.test"],
        msg,
    );
    assert_eq!(code, 0);
    let recs = records(&report);
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert_eq!(recs[0], "r");
    assert_eq!(recs[1], "r");
    assert!(recs[2].starts_with("K"), "{recs:?}");
    assert!(recs[2].contains("250 accepted as message 1"), "{recs:?}");
    let data = std::fs::read(rec.path().join("data.1")).unwrap();
    assert_eq!(
        data,
        b"Subject: dots\r\n\r\n..leading dot\r\n...two\r\nbare lf\r\ncrlf\r\nlast line without newline\r\n.\r\n".to_vec()
    );
    let cmds = std::fs::read_to_string(rec.path().join("commands")).unwrap();
    assert!(cmds.contains("MAIL FROM:<a@example.test> SIZE="), "{cmds}");
    assert!(cmds.contains("RCPT TO:<x@far.test>\\r\\n"), "{cmds}");
    assert!(cmds.starts_with("b'EHLO mx.example.test\\r\\n'"), "{cmds}");
}

#[test]
fn per_recipient_results_without_pipelining() {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (_srv, port) = raw_server(
        rec.path(),
        &["--no-pipelining", "bad@far.test=550", "later@far.test=451"],
    );
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let (code, report) = remote(
        &inst,
        "far.test",
        "",
        &["ok@far.test", "bad@far.test", "later@far.test"],
        b"S: x\n\nb\n",
    );
    assert_eq!(code, 0);
    let recs = records(&report);
    assert_eq!(recs[0], "r");
    assert!(
        recs[1].starts_with('h') && recs[1].contains("550 no thanks for bad@far.test"),
        "{recs:?}"
    );
    assert!(
        recs[2].starts_with('s') && recs[2].contains("451"),
        "{recs:?}"
    );
    assert!(recs[3].starts_with('K'), "{recs:?}");
    let cmds = std::fs::read_to_string(rec.path().join("commands")).unwrap();
    assert!(cmds.contains("MAIL FROM:<> SIZE="), "{cmds}");
}

#[test]
fn no_recipient_accepted_is_permanent_and_8bit_is_declared() {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["bad@far.test=550"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["bad@far.test"],
        "S: caf\u{e9}\n\nx\n".as_bytes(),
    );
    let recs = records(&report);
    assert!(recs[0].starts_with('h'));
    assert!(
        recs[1].starts_with('D') && recs[1].contains("Giving up"),
        "{recs:?}"
    );
    let cmds = std::fs::read_to_string(rec.path().join("commands")).unwrap();
    assert!(cmds.contains("BODY=8BITMIME"), "{cmds}");
    assert!(cmds.contains("QUIT"), "{cmds}");
}

#[test]
fn opportunistic_starttls_encrypts_without_verifying() {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (cert, key) = (rec.path().join("cert.pem"), rec.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=self-signed.test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let (_srv, port) = raw_server(
        rec.path(),
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: secret\n\nb\n",
    );
    let recs = records(&report);
    assert!(recs[1].starts_with('K'), "{recs:?}");
    let cmds = std::fs::read_to_string(rec.path().join("commands")).unwrap();
    assert!(cmds.contains("STARTTLS"), "{cmds}");
    assert!(
        cmds.contains("\ntls TLSv1.3\n") || cmds.contains("\ntls TLSv1.2\n"),
        "{cmds}"
    );
    // EHLO again after the handshake, and the transaction only inside TLS.
    let after = cmds.split("\ntls ").nth(1).unwrap();
    assert!(
        after.contains("EHLO") && after.contains("MAIL FROM:<a@b.test>"),
        "{cmds}"
    );
    assert_eq!(
        std::fs::read(rec.path().join("data.1")).unwrap(),
        b"S: secret\r\n\r\nb\r\n.\r\n"
    );
}

#[test]
fn failed_tls_handshake_falls_back_to_plain_text() {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--broken-tls"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    let recs = records(&report);
    assert!(recs[1].starts_with('K'), "{recs:?}");
    let cmds = std::fs::read_to_string(rec.path().join("commands")).unwrap();
    assert_eq!(cmds.matches("STARTTLS").count(), 1, "{cmds}");
    assert_eq!(
        cmds.matches("EHLO").count(),
        2,
        "a second, plain connection: {cmds}"
    );
}

#[test]
fn dead_host_and_bad_greeting_are_temporary() {
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{}", dead_port()));
    let (code, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    assert_eq!(code, 0);
    let recs = records(&report);
    assert_eq!(recs.len(), 1);
    assert!(
        recs[0].starts_with('Z') && recs[0].contains("Unable to connect"),
        "{recs:?}"
    );
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--greeting", "554"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    let recs = records(&report);
    assert!(
        recs[0].starts_with('Z') && recs[0].contains("greeting failed"),
        "{recs:?}"
    );
}

#[test]
fn bad_usage_and_bad_routes() {
    let inst = Instance::new(&[("alice", 0)], "");
    let (code, _, err) = run(
        inst.command("postern-remote").arg("far.test"),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(100));
    assert_eq!(
        err.trim(),
        "postern-remote: usage: postern-remote domain sender recipient..."
    );
    inst.control("smtproutes", "far.test:host:notaport");
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    let recs = records(&report);
    assert!(
        recs[0].starts_with("Zcontrol/smtproutes:1: bad port"),
        "{recs:?}"
    );
}

/// smtp-sink, Postfix's test server, as the peer on a free loopback port. `extra` are
/// its options; it runs as `nobody` and dumps messages into `dir` (`-d dir/msg.`).
pub fn smtp_sink(dir: &Path, extra: &[&str]) -> Option<(Daemon, u16)> {
    use std::os::unix::fs::PermissionsExt;
    let sink = require("smtp-sink", "postfix")?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = dead_port();
    let mut cmd = Command::new(sink);
    cmd.current_dir(dir)
        .args(["-u", "nobody", "-d"])
        .arg(dir.join("msg-%H%M%S."))
        .args(extra)
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let d = Daemon::spawn("smtp-sink", cmd);
    postern_testkit::expect_within(Duration::from_secs(10), "smtp-sink listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some((d, port))
}

/// The messages smtp-sink dumped into `dir`.
pub fn sink_dumps(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("msg-"))
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn smtp_sink_accepts_one_transaction_for_all_recipients() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    let Some((_sink, port)) = smtp_sink(dir.path(), &[]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test", "y@far.test"],
        b"Subject: sink\n\nhello\n",
    );
    let recs = records(&report);
    assert_eq!(&recs[..2], &["r", "r"]);
    assert!(recs[2].starts_with('K'), "{recs:?}");
    postern_testkit::expect_within(Duration::from_secs(5), "dump file", || {
        !sink_dumps(dir.path()).is_empty()
    });
    let dumps = sink_dumps(dir.path());
    assert_eq!(dumps.len(), 1, "one transaction");
    assert!(dumps[0].contains("Subject: sink"), "{}", dumps[0]);
    assert!(
        dumps[0].contains("x@far.test") && dumps[0].contains("y@far.test"),
        "{}",
        dumps[0]
    );
}

#[test]
fn smtp_sink_soft_and_hard_rejections() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    let Some((_sink, port)) = smtp_sink(dir.path(), &["-r", "rcpt"]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    let recs = records(&report);
    assert!(
        recs[0].starts_with('s') && recs[0].contains("Remote host said: 4"),
        "{recs:?}"
    );
    drop(_sink);
    let Some((_sink, port)) = smtp_sink(dir.path(), &["-f", "data"]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    let recs = records(&report);
    assert_eq!(recs[0], "r");
    assert!(
        recs[1].starts_with('D')
            && recs[1].contains("DATA command failed")
            && recs[1].contains("5"),
        "{recs:?}"
    );
}

/// dnsmasq on a loopback port, answering for `.test` only: far.test MX 10 mx.far.test,
/// mx.far.test A 127.0.0.1, a.test A 127.0.0.1 (no MX), everything else NXDOMAIN.
fn dnsmasq() -> Option<(Daemon, u16)> {
    let records = [
        "--local=/test/",
        "--mx-host=far.test,mx.far.test,10",
        "--host-record=mx.far.test,127.0.0.1",
        "--host-record=a.test,127.0.0.1",
        "--mx-host=loop.test,mx.example.test,10",
    ];
    postern_testkit::dnsmasq(&records.map(String::from))
}

#[test]
fn mx_then_address_lookups_through_control_resolvers() {
    let inst = Instance::new(&[("alice", 0)], "");
    let Some((_dns, port)) = dnsmasq() else {
        return;
    };
    inst.control("resolvers", &format!("127.0.0.1:{port}"));
    inst.control("timeoutconnect", "5");
    // MX → mx.far.test → 127.0.0.1 port 25; and a domain without MX → its own A.
    for domain in ["far.test", "a.test"] {
        let (_, report) = remote(
            &inst,
            domain,
            "a@b.test",
            &[&format!("x@{domain}")],
            b"S: x\n\nb\n",
        );
        let recs = records(&report);
        assert!(
            recs.last().unwrap().contains("127.0.0.1"),
            "{domain}: {recs:?}"
        );
    }
    let (_, report) = remote(&inst, "nx.test", "a@b.test", &["x@nx.test"], b"S: x\n\nb\n");
    let recs = records(&report);
    assert!(
        recs[0].starts_with("DSorry, I couldn't find any host named nx.test"),
        "{recs:?}"
    );
    // We are the best MX ourselves (control/me) and have no route: a loop, refused.
    let (_, report) = remote(
        &inst,
        "loop.test",
        "a@b.test",
        &["x@loop.test"],
        b"S: x\n\nb\n",
    );
    let recs = records(&report);
    assert!(
        recs[0].starts_with("DSorry. Although I'm listed as a best-preference MX"),
        "{recs:?}"
    );
    // No server answering at all: temporary.
    inst.control("resolvers", &format!("127.0.0.1:{}", dead_port()));
    let (_, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    assert!(
        records(&report)[0].starts_with('Z'),
        "{:?}",
        records(&report)
    );
}

/// What a raw server recorded: the command lines, and whether any message bytes were
/// sent (a whole DATA, or part of one).
pub fn recorded(dir: &Path) -> (String, bool) {
    let cmds = std::fs::read_to_string(dir.join("commands")).unwrap_or_default();
    let partial = std::fs::read(dir.join("partial")).unwrap_or_default();
    (cmds, dir.join("data.1").exists() || !partial.is_empty())
}

/// A hostile or broken server's reply that is not a clean CRLF line: a temporary
/// failure naming the fault, and the message never sent.
fn malformed_reply_defers(raw: &[&str], fault: &str) {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), raw);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (code, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        b"S: x\n\nb\n",
    );
    assert_eq!(code, 0);
    let recs = records(&report);
    let last = recs.last().unwrap();
    assert!(
        last.starts_with('Z')
            && last.contains("malformed reply from 127.0.0.1 (127.0.0.1)")
            && last.contains(fault),
        "{raw:?}: {recs:?}"
    );
    assert!(
        recs.iter()
            .all(|r| !r.starts_with('K') && !r.starts_with('D')),
        "{raw:?}: {recs:?}"
    );
    let (cmds, sent) = recorded(rec.path());
    assert!(!sent, "{raw:?}: a message was sent; commands: {cmds}");
    assert!(!cmds.contains("\\r\\n.\\r\\n"), "{cmds}");
}

#[test]
fn greeting_with_a_bare_lf_defers_and_sends_nothing() {
    malformed_reply_defers(
        &["--raw", "greeting", r"220 test.server ESMTP\n"],
        "bare LF",
    );
    // A greeting made of a bare-LF line and then a proper one: still malformed.
    malformed_reply_defers(
        &["--raw", "greeting", r"220-test.server\n220 ESMTP\r\n"],
        "bare LF",
    );
}

#[test]
fn greeting_with_a_nul_defers_and_sends_nothing() {
    malformed_reply_defers(
        &["--raw", "greeting", r"220 test.server\x00 ESMTP\r\n"],
        "NUL",
    );
}

#[test]
fn a_malformed_reply_inside_the_session_defers_and_sends_nothing() {
    malformed_reply_defers(
        &["--raw", "ehlo", r"250-test.server\r\n250 PIPE\rLINING\r\n"],
        "bare CR",
    );
    malformed_reply_defers(&["--raw", "mail", r"250 ok\n"], "bare LF");
    malformed_reply_defers(
        &["--no-pipelining", "--raw", "rcpt", r"250 o\x00k\r\n"],
        "NUL",
    );
}

#[test]
fn message_over_the_servers_size_is_permanent_and_not_sent() {
    let inst = Instance::new(&[("alice", 0)], "");
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--size", "10"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (code, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test", "y@far.test"],
        b"Subject: big\n\nmore than ten bytes\n",
    );
    assert_eq!(code, 0);
    let recs = records(&report);
    assert_eq!(recs.len(), 1, "no recipient was tried: {recs:?}");
    assert!(
        recs[0].starts_with("Dmessage too big for 127.0.0.1 (127.0.0.1) (SIZE 10)")
            && recs[0].contains("#5.3.4"),
        "{recs:?}"
    );
    let (cmds, sent) = recorded(rec.path());
    assert!(!sent, "a message was sent; commands: {cmds}");
    assert!(!cmds.contains("MAIL"), "{cmds}");
    assert!(!cmds.contains("RCPT"), "{cmds}");
    assert!(cmds.contains("QUIT"), "{cmds}");

    // Exactly at the limit: sent, with SIZE= the RFC 1870 size (CRLF line ends,
    // without the dot-stuffing and the final dot).
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--size", "25"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let msg = b"Subject: s\n\n.dot\nend\n"; // 12 + 2 + 6 + 5 bytes with CRLF
    let (_, report) = remote(&inst, "far.test", "a@b.test", &["x@far.test"], msg);
    let recs = records(&report);
    assert!(recs.last().unwrap().starts_with('K'), "{recs:?}");
    let (cmds, sent) = recorded(rec.path());
    assert!(sent);
    assert!(
        cmds.contains("MAIL FROM:<a@b.test> SIZE=25\\r\\n"),
        "{cmds}"
    );

    // SIZE 0 means no limit.
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--size", "0"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, report) = remote(&inst, "far.test", "a@b.test", &["x@far.test"], msg);
    let recs = records(&report);
    assert!(recs.last().unwrap().starts_with('K'), "{recs:?}");
}

#[test]
fn a_utf8_address_needs_smtputf8_and_is_never_mangled() {
    let inst = Instance::new(&[("alice", 0)], "");
    // A server without SMTPUTF8: nothing is sent, the message fails for good with 5.6.7.
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &[]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (code, report) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["jörg@far.test"],
        b"Subject: x\n\nhi\n",
    );
    assert_eq!(code, 0);
    let recs = records(&report);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(
        recs[0].starts_with('D')
            && recs[0].contains("does not offer SMTPUTF8")
            && recs[0].contains("#5.6.7"),
        "{recs:?}"
    );
    let (cmds, sent) = recorded(rec.path());
    assert!(!sent && !cmds.contains("MAIL"), "{cmds}");

    // One that offers it: MAIL carries SMTPUTF8 and the address goes as UTF-8.
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--smtputf8"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, report) = remote(
        &inst,
        "far.test",
        "zoë@b.test",
        &["jörg@far.test"],
        b"Subject: x\n\nhi\n",
    );
    let recs = records(&report);
    assert!(recs.last().unwrap().starts_with('K'), "{recs:?}");
    let (cmds, sent) = recorded(rec.path());
    assert!(sent);
    assert!(
        cmds.contains("MAIL FROM:<zo\\xc3\\xab@b.test> SIZE="),
        "{cmds}"
    );
    assert!(cmds.contains(" SMTPUTF8\\r\\n"), "{cmds}");
    assert!(cmds.contains("RCPT TO:<j\\xc3\\xb6rg@far.test>"), "{cmds}");

    // ASCII addresses never ask for it, even from a server that offers it.
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--smtputf8"]);
    inst.control("smtproutes", &format!("far.test:127.0.0.1:{port}"));
    let (_, _) = remote(
        &inst,
        "far.test",
        "a@b.test",
        &["x@far.test"],
        "Subject: caf\u{e9}\n\nhi\n".as_bytes(),
    );
    let (cmds, _) = recorded(rec.path());
    assert!(!cmds.contains("SMTPUTF8"), "{cmds}");
}
