//! postern-pregreet behind the real postern-tcpserver: an early talker on a raw socket
//! is refused and remembered; a client that waits reaches the program with every byte it
//! sent, in order, even when its address is remembered and it talks at once.

use super::{bin, Server, TIMEOUT};
use postern_testkit::tempdir;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

/// An instance directory with `control/` and `run/pregreet/`, `wait` seconds.
fn home(wait: &str) -> postern_testkit::TempDir {
    let home = tempdir();
    fs::create_dir_all(home.path().join("control")).unwrap();
    fs::create_dir_all(home.path().join("run/pregreet")).unwrap();
    fs::write(home.path().join("control/me"), "mx.test\n").unwrap();
    fs::write(home.path().join("control/pregreetwait"), wait).unwrap();
    home
}

/// tcpserver → pregreet → a fake server that greets and keeps what it reads in
/// `home/got`.
fn start(home: &Path, rules: Option<&Path>) -> Server {
    let fake = home.join("fake-smtpd");
    postern_testkit::write_script(
        &fake,
        &format!(
            "#!/bin/sh\nprintf '220 fake ready\\r\\n'\nexec cat > {}/got\n",
            home.display()
        ),
    );
    let mut cmd = Command::new(bin("postern-tcpserver"));
    cmd.env("POSTERN_HOME", home).args(["-1", "-v", "-R", "-H"]);
    if let Some(cdb) = rules {
        cmd.arg("-x").arg(cdb);
    }
    cmd.args(["127.0.0.1", "0"])
        .arg(bin("postern-pregreet"))
        .arg(fake);
    Server::start(cmd)
}

fn read_until(s: &mut TcpStream, end: &str) -> String {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains(end) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn an_early_talker_gets_554_is_logged_and_remembered() {
    let home = home("2\n");
    let s = start(home.path(), None);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(b"EHLO bot.example\r\n").unwrap();
    let reply = read_until(&mut c, "503");
    assert!(
        reply.starts_with("554 5.7.1 mx.test you talked before the greeting"),
        "{reply:?}"
    );
    assert!(
        reply.contains("503 5.5.1 bad sequence of commands\r\n"),
        "{reply:?}"
    );
    c.write_all(b"QUIT\r\n").unwrap();
    let bye = read_until(&mut c, "221");
    assert!(bye.starts_with("221 2.0.0 mx.test"), "{bye:?}");
    let line = s.wait_log(&["event=pregreet", "result=drop", "why=talked-first"]);
    assert!(line.contains("ip=127.0.0.1"), "{line}");
    assert!(line.contains("EHLO bot.example"), "{line}");
    assert!(!home.path().join("got").exists(), "the server never ran");
    assert!(home.path().join("run/pregreet/d-127.0.0.1").exists());

    // Remembered: the next connection is refused before it says a word, without the wait
    // (a 30 s wait would outlast the read timeout below).
    fs::write(home.path().join("control/pregreetwait"), "30\n").unwrap();
    let mut again = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    again
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 128];
    let n = again.read(&mut buf).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("554 5.7.1"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.wait_log(&["event=pregreet", "result=drop", "why=remembered"]);
}

#[test]
fn a_client_that_waits_loses_no_byte_even_when_it_then_talks_at_once() {
    let home = home("1\n");
    let s = start(home.path(), None);
    // First connection: waits for the greeting, then sends.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let greeting = read_until(&mut c, "\r\n");
    assert_eq!(greeting, "220 fake ready\r\n");
    c.write_all(b"EHLO ok.example\r\n").unwrap();
    drop(c);
    postern_testkit::expect_within(TIMEOUT, "the fake server got the line", || {
        fs::read(home.path().join("got")).ok().as_deref() == Some(&b"EHLO ok.example\r\n"[..])
    });
    assert!(home.path().join("run/pregreet/p-127.0.0.1").exists());

    // Remembered as a pass: no wait, and bytes sent before the greeting (pipelined, in
    // several writes, binary included) all reach the server in order.
    fs::write(home.path().join("control/pregreetwait"), "30\n").unwrap();
    fs::remove_file(home.path().join("got")).unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let mut sent = Vec::new();
    for i in 0..50u32 {
        let chunk = format!("NOOP {i}\r\n\x01\x7f\r\n");
        c.write_all(chunk.as_bytes()).unwrap();
        sent.extend_from_slice(chunk.as_bytes());
    }
    let greeting = read_until(&mut c, "\r\n");
    assert_eq!(greeting, "220 fake ready\r\n");
    drop(c);
    postern_testkit::expect_within(TIMEOUT, "every byte reached the server", || {
        fs::read(home.path().join("got")).ok().as_deref() == Some(&sent[..])
    });
    assert!(
        !s.log_lines().iter().any(|l| l.contains("event=pregreet")),
        "nothing to log for clients that wait: {:?}",
        s.log_lines()
    );
}

#[test]
fn relay_clients_and_a_zero_wait_from_the_rules_skip_the_check() {
    let home = home("30\n");
    let (code, err) = super::compile_with(
        &bin("postern-tcprules"),
        home.path(),
        "tcp.smtp",
        "127.0.0.1:allow,PREGREETWAIT=\"0\"\n",
    );
    assert_eq!(code, Some(0), "{err}");
    let s = start(home.path(), Some(&home.path().join("tcp.smtp.cdb")));
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(b"EHLO early\r\n").unwrap();
    let greeting = read_until(&mut c, "\r\n");
    assert_eq!(greeting, "220 fake ready\r\n", "no 30 s wait, no refusal");
    drop(c);
    postern_testkit::expect_within(TIMEOUT, "the server got the early line", || {
        fs::read(home.path().join("got")).ok().as_deref() == Some(&b"EHLO early\r\n"[..])
    });
}

#[test]
fn bad_settings_and_usage_fail_with_one_line() {
    let out = Command::new(bin("postern-pregreet")).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "postern-pregreet: usage: postern-pregreet program [arg ...]\n"
    );
    let home = home("# seconds\nsoon\n");
    let out = Command::new(bin("postern-pregreet"))
        .env("POSTERN_HOME", home.path())
        .env("TCPREMOTEIP", "127.0.0.1")
        .arg("/bin/true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("postern-pregreet: fatal: control/pregreetwait:2: the wait is"),
        "{err}"
    );
}
