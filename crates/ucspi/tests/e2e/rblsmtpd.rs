//! postern-rblsmtpd against a real DNS server (dnsmasq on a loopback port named in
//! control/resolvers), and against one that never answers.

use crate::{bin, dnsmasq, instance, Server, TIMEOUT};
use postern_testkit::{tempdir, Daemon, TempDir};
use std::fs;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Outcome {
    code: Option<i32>,
    out: Vec<u8>,
    log: String,
}

impl Outcome {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// Run rblsmtpd for client `ip` with `input` on stdin.
fn rbl(home: &TempDir, ip: &str, rblsmtpd: Option<&str>, args: &[&str], input: &str) -> Outcome {
    let input_file = home.path().join("input");
    fs::write(&input_file, input).unwrap();
    let mut cmd = Command::new(bin("postern-rblsmtpd"));
    cmd.args(args)
        .env("POSTERN_HOME", home.path())
        .env("TCPREMOTEIP", ip)
        .env_remove("RBLSMTPD")
        .stdin(fs::File::open(&input_file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(v) = rblsmtpd {
        cmd.env("RBLSMTPD", v);
    }
    let mut d = Daemon::spawn("rblsmtpd", cmd);
    let mut out = d.child_mut().stdout.take().unwrap();
    let mut err = d.child_mut().stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut bytes = Vec::new();
    out.read_to_end(&mut bytes).unwrap();
    let status = d.wait_exit(TIMEOUT).expect("rblsmtpd finished");
    Outcome {
        code: status.code(),
        out: bytes,
        log: t.join().unwrap(),
    }
}

const PASS: [&str; 2] = ["echo", "passed"];

fn args<'a>(opts: &[&'a str]) -> Vec<&'a str> {
    opts.iter().copied().chain(PASS).collect()
}

#[test]
fn a_listed_address_gets_451_with_the_txt_reason_and_b_gets_553() {
    let dir = tempdir();
    let Some(dns) = dnsmasq(&dir) else { return };
    let home = instance(&format!("127.0.0.1:{}", dns.port));
    let o = rbl(
        &home,
        "127.0.0.2",
        None,
        &args(&["-t", "0", "-r", "zen.test"]),
        "",
    );
    assert_eq!(o.out(), "451 listed: go away\r\n");
    assert_eq!(o.code, Some(0));
    assert!(
        o.log.contains(
            "event=rbl ip=127.0.0.2 zone=zen.test result=listed code=451 text=\"listed: go away\""
        ),
        "{}",
        o.log
    );
    let o = rbl(
        &home,
        "127.0.0.2",
        None,
        &args(&["-b", "-t", "0", "-r", "zen.test"]),
        "",
    );
    assert_eq!(o.out(), "553 listed: go away\r\n");
    let o = rbl(
        &home,
        "127.0.0.9",
        None,
        &args(&["-t", "0", "-r", "zen.test"]),
        "",
    );
    assert_eq!(o.out(), "passed\n", "not listed: the program runs");
    assert!(o.log.contains("result=clear"), "{}", o.log);
}

#[test]
fn the_blocked_client_gets_the_smtp_dialogue() {
    let dir = tempdir();
    let Some(dns) = dnsmasq(&dir) else { return };
    let home = instance(&format!("127.0.0.1:{}", dns.port));
    let input = "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nNOOP\r\nQUIT\r\n";
    let o = rbl(
        &home,
        "127.0.0.2",
        None,
        &args(&["-t", "10", "-r", "zen.test"]),
        input,
    );
    assert_eq!(
        o.out(),
        "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n451 listed: go away\r\n451 listed: go away\r\n\
         451 listed: go away\r\n250 rblsmtpd.local\r\n221 rblsmtpd.local\r\n"
    );
}

#[test]
fn the_dialogue_is_dropped_after_t_seconds() {
    let home = instance("127.0.0.1:9");
    let mut cmd = Command::new(bin("postern-rblsmtpd"));
    cmd.args(["-t", "1", "-r", "zen.test", "echo", "passed"])
        .env("POSTERN_HOME", home.path())
        .env("TCPREMOTEIP", "127.0.0.2")
        .env("RBLSMTPD", "go away")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut d = Daemon::spawn("rblsmtpd", cmd);
    let _keep_stdin_open = d.child_mut().stdin.take();
    let status = d.wait_exit(TIMEOUT).expect("dropped after -t");
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    d.child_mut()
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "220 rblsmtpd.local\r\n");
}

#[test]
fn an_allow_listed_address_passes_even_if_listed() {
    let dir = tempdir();
    let Some(dns) = dnsmasq(&dir) else { return };
    let home = instance(&format!("127.0.0.1:{}", dns.port));
    let o = rbl(
        &home,
        "127.0.0.3",
        None,
        &args(&["-t", "0", "-a", "allow.test", "-r", "zen.test"]),
        "",
    );
    assert_eq!(o.out(), "passed\n");
    assert!(o.log.contains("zone=allow.test result=allow"), "{}", o.log);
    // In the other order the blocklist answers first, and the first answer sticks.
    let o = rbl(
        &home,
        "127.0.0.3",
        None,
        &args(&["-t", "0", "-r", "zen.test", "-a", "allow.test"]),
        "",
    );
    assert_eq!(o.out(), "451 listed too\r\n");
}

#[test]
fn the_rblsmtpd_variable_decides_first() {
    let dir = tempdir();
    let Some(dns) = dnsmasq(&dir) else { return };
    let home = instance(&format!("127.0.0.1:{}", dns.port));
    let opts = args(&["-t", "0", "-r", "zen.test"]);
    assert_eq!(
        rbl(&home, "127.0.0.2", Some(""), &opts, "").out(),
        "passed\n"
    );
    assert_eq!(
        rbl(&home, "127.0.0.9", Some("-go away"), &opts, "").out(),
        "553 go away\r\n"
    );
    assert_eq!(
        rbl(&home, "127.0.0.9", Some("try later"), &opts, "").out(),
        "451 try later\r\n"
    );
}

#[test]
fn a_dns_server_that_never_answers_fails_open_or_closed_within_t() {
    // UDP and TCP sockets that take queries and never answer.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let Ok(_tcp) = TcpListener::bind(("127.0.0.1", port)) else {
        eprintln!("skipped: TCP port {port} taken");
        return;
    };
    let home = instance(&format!("127.0.0.1:{port}"));
    let started = Instant::now();
    let o = rbl(
        &home,
        "127.0.0.2",
        None,
        &args(&["-t", "2", "-r", "zen.test"]),
        "",
    );
    assert_eq!(o.out(), "passed\n", "fail open by default (-C)");
    assert!(o.log.contains("result=error"), "{}", o.log);
    let o = rbl(
        &home,
        "127.0.0.2",
        None,
        &args(&["-c", "-t", "2", "-r", "zen.test"]),
        "QUIT\r\n",
    );
    assert_eq!(o.out(), "220 rblsmtpd.local\r\n221 rblsmtpd.local\r\n");
    let o = rbl(
        &home,
        "127.0.0.2",
        None,
        &args(&["-c", "-t", "2", "-r", "zen.test"]),
        "RCPT TO:<a@b>\r\n",
    );
    assert!(
        o.out().contains("451 temporary RBL lookup error\r\n"),
        "{}",
        o.out()
    );
    // Three runs, each bounded by -t 2 (plus process start-up), not by resolver retries.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_txt_answer_with_cr_lf_is_sanitised_on_the_wire() {
    let dir = tempdir();
    let Some(dns) = dnsmasq(&dir) else { return };
    let home = instance(&format!("127.0.0.1:{}", dns.port));
    let mut cmd = Command::new(bin("postern-tcpserver"));
    cmd.args(["-1", "-H", "-R", "0", "0"])
        .arg(bin("postern-rblsmtpd"))
        .args(["-t", "5", "-r", "zen.test", "echo", "passed"])
        .env("POSTERN_HOME", home.path());
    let s = Server::start(cmd);
    let mut conn = crate::tcpserver::connect_from("127.0.0.4", s.port);
    use std::io::Write;
    conn.write_all(b"RCPT TO:<a@b.test>\r\nQUIT\r\n").unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    assert_eq!(
        raw,
        b"220 rblsmtpd.local\r\n451 evil??250 ok\r\n221 rblsmtpd.local\r\n"
    );
    let line = s.wait_log(&["event=rbl", "ip=127.0.0.4"]);
    assert!(line.contains("text=\"evil??250 ok\""), "{line}");
    // A clean address goes through the same chain to the program.
    assert_eq!(
        crate::read_all(&format!("127.0.0.1:{}", s.port)),
        "passed\n"
    );
}

#[test]
fn usage_errors_exit_100() {
    for a in [
        vec![],
        vec!["echo"],
        vec!["-r", "zen.test"],
        vec!["-z", "-r", "z", "echo"],
        vec!["-t", "x", "-r", "z", "echo"],
    ] {
        let (code, _o, err) =
            postern_testkit::run(Command::new(bin("postern-rblsmtpd")).args(&a), TIMEOUT);
        assert_eq!(code, Some(100), "{a:?}");
        assert_eq!(err.lines().count(), 1);
        assert!(err.starts_with("postern-rblsmtpd: usage: "), "{err}");
    }
}
