//! postern-smtpd end to end. Each test makes an instance in a temp dir, starts a small
//! accept loop on 127.0.0.1 (port 0) that runs one postern-smtpd per connection with the
//! socket as fds 0 and 1 and the UCSPI variables set, as postern-tcpserver would, and
//! uses a shell script as `QMAILQUEUE` that saves fd 0 and fd 1 to files.

use postern_testkit::{expect_within, require, tempdir, wait_until, write_script, Daemon, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const SMTPD: &str = env!("CARGO_BIN_EXE_postern-smtpd");
const WAIT: Duration = Duration::from_secs(20);

/// The queue stand-in: message (fd 0) to N.msg, envelope (fd 1) to N.env, then exit
/// `$QQ_EXIT` (default 0). Files appear atomically (rename) once both are complete.
const QUEUE_SCRIPT: &str = r#"#!/bin/sh
d="$(dirname "$0")/queued"
mkdir -p "$d"
cat > "$d/$$.msg.tmp" || exit 54
cat <&1 > "$d/$$.env.tmp" || exit 54
env > "$d/$$.environ"
mv "$d/$$.msg.tmp" "$d/$$.msg"
mv "$d/$$.env.tmp" "$d/$$.env"
exit ${QQ_EXIT:-0}
"#;

/// A checkpassword that accepts alice@example.test / secret (and execs its program).
const CHECKPASSWORD: &str = r#"#!/bin/sh
input=$(tr '\0' '\n' <&3)
user=$(printf '%s\n' "$input" | sed -n 1p)
pass=$(printf '%s\n' "$input" | sed -n 2p)
[ "$user" = alice@example.test ] && [ "$pass" = secret ] || exit 1
exec "$@"
"#;

pub(crate) struct Server {
    dir: TempDir,
    /// Anything that must live as long as the server (the TLS key's directory).
    keep: Vec<TempDir>,
    port: u16,
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<Daemon>>>,
}

pub(crate) struct Setup {
    /// Programs (with arguments) in front of postern-smtpd, e.g. postern-tlsd.
    wrapper: Vec<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    control: Vec<(String, String)>,
    queue: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            wrapper: vec![],
            env: vec![],
            args: vec![],
            control: vec![
                ("me".into(), "mx.example.test\n".into()),
                ("rcpthosts".into(), "example.test\n".into()),
                ("timeoutsmtpd".into(), "10\n".into()),
                ("authfaildelay".into(), "0\n".into()),
            ],
            queue: QUEUE_SCRIPT.into(),
        }
    }
}

impl Setup {
    pub(crate) fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub(crate) fn control(mut self, name: &str, text: &str) -> Self {
        self.control.retain(|(n, _)| n != name);
        self.control.push((name.into(), text.into()));
        self
    }
    fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }
    fn wrapper(mut self, words: &[&str]) -> Self {
        self.wrapper = words.iter().map(|w| w.to_string()).collect();
        self
    }
    fn queue(mut self, script: &str) -> Self {
        self.queue = script.into();
        self
    }

    pub(crate) fn start(self) -> Server {
        let dir = tempdir();
        let control = dir.path().join("control");
        std::fs::create_dir_all(&control).unwrap();
        for (name, text) in &self.control {
            std::fs::write(control.join(name), text).unwrap();
        }
        write_script(&dir.path().join("qq"), &self.queue);
        write_script(&dir.path().join("checkpassword"), CHECKPASSWORD);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let (home, stop2, children2) = (dir.path().to_path_buf(), stop.clone(), children.clone());
        let mut args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                a.replace(
                    "@CHECKPASSWORD@",
                    &home.join("checkpassword").to_string_lossy(),
                )
            })
            .collect();
        let env = self.env;
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(SMTPD.to_string());
        argv.append(&mut args);
        let args = argv;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let peer = stream.peer_addr().unwrap();
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(home.join("log"))
                    .unwrap();
                let mut cmd = Command::new(&args[0]);
                cmd.args(&args[1..])
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("POSTERN_HOME", &home)
                    .env("QMAILQUEUE", home.join("qq"))
                    .env("PROTO", "TCP")
                    .env("TCPREMOTEIP", peer.ip().to_string())
                    .env("TCPREMOTEPORT", peer.port().to_string())
                    .env("TCPLOCALIP", "127.0.0.1")
                    .env("TCPLOCALPORT", port.to_string())
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .stdin(Stdio::from(OwnedFd::from(stream.try_clone().unwrap())))
                    .stdout(Stdio::from(OwnedFd::from(stream)))
                    .stderr(Stdio::from(log));
                children2
                    .lock()
                    .unwrap()
                    .push(Daemon::spawn("postern-smtpd", cmd));
            }
        });
        Server {
            dir,
            keep: vec![],
            port,
            stop,
            children,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.children.lock().unwrap().clear();
    }
}

impl Server {
    pub(crate) fn home(&self) -> &Path {
        self.dir.path()
    }

    /// Messages the queue script saved: (message, envelope), oldest first by name.
    pub(crate) fn queued(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let dir = self.home().join("queued");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return vec![];
        };
        let mut msgs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "msg"))
            .collect();
        msgs.sort();
        msgs.iter()
            .map(|m| {
                (
                    std::fs::read(m).unwrap(),
                    std::fs::read(m.with_extension("env")).unwrap_or_default(),
                )
            })
            .collect()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.home().join("log")).unwrap_or_default()
    }

    /// Wait until every session has ended (its disconnect line is logged).
    pub(crate) fn wait_sessions_done(&self, n: usize) {
        expect_within(WAIT, "the sessions to end", || {
            self.log().matches("event=disconnect").count() >= n
        });
    }

    pub(crate) fn connect(&self) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(s.try_clone().unwrap()),
            stream: s,
        };
        let greeting = raw.reply();
        assert!(
            greeting.starts_with("220 mx.example.test ESMTP"),
            "{greeting}"
        );
        raw
    }

    pub(crate) fn python(&self, script: &str) -> (Option<i32>, String, String) {
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).env("PORT", self.port.to_string());
        postern_testkit::run(&mut cmd, WAIT)
    }
}

/// A raw client: exact bytes out, reply lines in.
pub(crate) struct Raw {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One reply line without CR LF ("" at EOF).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(
            line.is_empty() || line.ends_with("\r\n"),
            "reply not CRLF-terminated: {line:?}"
        );
        line.trim_end().to_string()
    }

    /// A whole (possibly multi-line) reply; returns its last line.
    pub(crate) fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    pub(crate) fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Whether the server closed the connection (EOF within the wait).
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }

    fn envelope_to(&mut self, rcpt: &str) {
        assert!(self.cmd("EHLO client.test").starts_with("250 "));
        assert!(self
            .cmd("MAIL FROM:<a@client.test>")
            .starts_with("250 2.1.0"));
        assert!(self
            .cmd(&format!("RCPT TO:<{rcpt}>"))
            .starts_with("250 2.1.5"));
        assert!(self.cmd("DATA").starts_with("354"));
    }
}

#[test]
fn smtplib_sends_a_message_that_reaches_the_queue() {
    let s = Setup::default().start();
    let (code, out, err) = s.python(
        r#"
import os, smtplib
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
c.ehlo()
print("size", c.esmtp_features.get("size"), "pipelining" in c.esmtp_features, "starttls" in c.esmtp_features, "auth" in c.esmtp_features)
c.sendmail("sender@client.test", ["user@example.test", "other@example.test"], "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n")
c.quit()
"#,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "size 10240000 True False False");
    let q = s.queued();
    assert_eq!(q.len(), 1);
    let msg = String::from_utf8(q[0].0.clone()).unwrap();
    assert!(msg.starts_with("Received: from client.test (unknown [127.0.0.1])\n\tby mx.example.test with ESMTP;\n\t"), "{msg}");
    assert!(
        msg.ends_with("\nSubject: hi\n\n.leading dot\nbody\n"),
        "LF line ends, unstuffed: {msg:?}"
    );
    assert_eq!(
        q[0].1,
        b"Fsender@client.test\0Tuser@example.test\0Tother@example.test\0\0"
    );
    s.wait_sessions_done(1);
    let log = s.log();
    assert!(log.contains("event=connect ip=127.0.0.1 port="), "{log}");
    assert!(
        log.contains(
            "event=accept ip=127.0.0.1 helo=client.test from=<sender@client.test> rcpts=2 size="
        ),
        "{log}"
    );
    assert!(log.contains("tls=no auth=- qp="), "{log}");
    assert!(
        log.contains("event=disconnect ip=127.0.0.1 reason=quit messages=1"),
        "{log}"
    );
}

#[test]
fn swaks_pipelines_and_gets_refused_sizes() {
    let Some(swaks) = require("swaks", "swaks") else {
        return;
    };
    let s = Setup::default().control("databytes", "2000\n").start();
    let port = s.port.to_string();
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(&swaks);
        cmd.args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "a@client.test",
            "--to",
            "u@example.test",
        ])
        .args(["--helo", "client.test", "--pipeline", "--hide-all"])
        .args(extra);
        postern_testkit::run(&mut cmd, WAIT)
    };
    let (code, out, err) = run(&["--body", "pipelined body"]);
    assert_eq!(code, Some(0), "{out}{err}");
    expect_within(WAIT, "the message", || s.queued().len() == 1);
    assert!(String::from_utf8_lossy(&s.queued()[0].0).contains("pipelined body"));
    let big = "x".repeat(70);
    let body = vec![big.as_str(); 40].join("\n");
    let (code, _, _) = run(&["--body", &body]);
    assert_ne!(code, Some(0), "a message over databytes is refused");
    s.wait_sessions_done(2);
    assert!(s.log().contains("reason=size"));
    assert_eq!(s.queued().len(), 1);
}

#[test]
fn relay_refused_for_strangers_allowed_for_relayclient() {
    let s = Setup::default().start();
    let script = r#"
import os, smtplib
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
c.ehlo()
for rcpt in ["victim@elsewhere.test", "victim%elsewhere.test@example.test", "elsewhere.test!victim@example.test",
             '"victim@elsewhere.test"@example.test', "victim@elsewhere.test@example.test",
             "victim@[127.0.0.1]", "victim@elsewhere.test.", "VICTIM@ELSEWHERE.TEST"]:
    c.mail("a@client.test")
    code, text = c.rcpt(rcpt)
    print(code, text.decode().split()[0])
    c.rset()
c.quit()
"#;
    let (code, out, err) = s.python(script);
    assert_eq!(code, Some(0), "{err}");
    // The double @ is no mailbox at all: refused as a bad local part, before any relay
    // decision.
    let mut expected = vec!["553 5.7.1"; 8];
    expected[4] = "501 5.1.3";
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
    // Exact bytes smtplib would rewrite: source routes, and unbracketed paths.
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250 "));
    assert!(c.cmd("MAIL FROM:<a@client.test>").starts_with("250 "));
    for rcpt in [
        "<@example.test:victim@elsewhere.test>",
        "<@example.test,@x.test:victim@elsewhere.test>",
        "victim@elsewhere.test",
    ] {
        let reply = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert!(reply.starts_with("553 5.7.1"), "{rcpt}: {reply}");
    }
    assert!(c
        .cmd("RCPT TO:<@elsewhere.test:user@example.test>")
        .starts_with("250 2.1.5"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"hi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    expect_within(WAIT, "the message", || s.queued().len() == 1);
    assert_eq!(
        s.queued()[0].1,
        b"Fa@client.test\0Tuser@example.test\0\0",
        "the route is dropped"
    );
    drop(c);
    drop(s);
    let s = Setup::default().env("RELAYCLIENT", "").start();
    let (code, out, err) = s.python(script);
    assert_eq!(code, Some(0), "{err}");
    let mut expected = vec!["250 2.1.5"; 8];
    expected[4] = "501 5.1.3";
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
}

#[test]
fn bare_lf_in_data_gets_451_closes_and_queues_nothing() {
    let s = Setup::default().start();
    for bad in [
        &b"Subject: x\r\n\r\nsmuggled\n.\nMAIL FROM:<x@y>\r\n.\r\n"[..],
        b"a\rb\r\n.\r\n",
        b"a\0b\r\n.\r\n",
    ] {
        let mut c = s.connect();
        c.envelope_to("u@example.test");
        c.send(bad);
        let reply = c.line();
        assert!(reply.starts_with("451 4.5.2 "), "{reply}");
        assert!(c.closed());
    }
    let mut c = s.connect();
    c.send(b"EHLO x\nQUIT\r\n");
    assert!(c.line().starts_with("451 4.5.2 bare LF in command"));
    assert!(c.closed());
    s.wait_sessions_done(4);
    assert!(s.queued().is_empty());
    assert_eq!(
        s.log()
            .matches("event=reject ip=127.0.0.1 reason=framing")
            .count(),
        4
    );
}

#[test]
fn over_long_lines_are_refused_without_losing_step() {
    let s = Setup::default().start();
    let mut c = s.connect();
    assert!(c
        .cmd(&format!("NOOP {}", "x".repeat(2000)))
        .starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").starts_with("250"));
    c.envelope_to("u@example.test");
    c.send(format!("{}\r\n.\r\n", "y".repeat(5000)).as_bytes());
    assert!(c.reply().starts_with("552 5.3.4"));
    let long_local = format!("RCPT TO:<{}@example.test>", "l".repeat(65));
    assert!(c.cmd("MAIL FROM:<a@client.test>").starts_with("250"));
    assert!(c.cmd(&long_local).starts_with("501 5.1.3"));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(s.queued().is_empty());
}

#[test]
fn a_pipelined_second_message_is_its_own_transaction() {
    let s = Setup::default().start();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250 "));
    c.send(
        b"MAIL FROM:<a@client.test>\r\nRCPT TO:<one@example.test>\r\nDATA\r\nSubject: 1\r\n\r\nfirst\r\n.\r\n\
          MAIL FROM:<b@client.test>\r\nRCPT TO:<two@example.test>\r\nDATA\r\nSubject: 2\r\n\r\nsecond\r\n.\r\nQUIT\r\n",
    );
    let replies: Vec<String> = (0..9).map(|_| c.reply()).collect();
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(
        codes,
        ["250", "250", "354", "250", "250", "250", "354", "250", "221"],
        "{replies:#?}"
    );
    expect_within(WAIT, "two messages", || s.queued().len() == 2);
    let q = s.queued();
    let envs: Vec<&[u8]> = q.iter().map(|(_, e)| e.as_slice()).collect();
    assert!(envs.contains(&&b"Fa@client.test\0Tone@example.test\0\0"[..]));
    assert!(envs.contains(&&b"Fb@client.test\0Ttwo@example.test\0\0"[..]));
}

#[test]
fn ten_thousand_recipients_get_452_after_the_limit() {
    let s = Setup::default().control("maxrcpts", "50\n").start();
    let c = s.connect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut burst = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n".to_vec();
        for i in 0..10_000 {
            burst.extend_from_slice(format!("RCPT TO:<u{i}@example.test>\r\n").as_bytes());
        }
        burst.extend_from_slice(b"DATA\r\nhi\r\n.\r\nQUIT\r\n");
        writer.write_all(&burst).unwrap();
    });
    let mut c = c;
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("250 2.1.0"));
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..10_000 {
        *counts.entry(c.reply()[..3].to_string()).or_insert(0) += 1;
    }
    sender.join().unwrap();
    assert_eq!(counts.get("250"), Some(&50));
    assert_eq!(counts.get("452"), Some(&9_950));
    assert!(c.reply().starts_with("354"));
    assert!(c.reply().starts_with("250 2.0.0"));
    expect_within(WAIT, "the message", || s.queued().len() == 1);
    assert_eq!(s.queued()[0].1.iter().filter(|&&b| b == b'T').count(), 50);
}

#[test]
fn a_data_that_never_ends_times_out_and_queues_nothing() {
    let s = Setup::default().control("timeoutsmtpd", "1\n").start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"Subject: forever\r\n\r\nstill typing");
    let reply = c.line();
    assert!(reply.starts_with("451 4.4.2 timeout"), "{reply}");
    assert!(c.closed());
    s.wait_sessions_done(1);
    assert!(s.queued().is_empty());
    assert!(s.log().contains("reason=timeout"));
}

#[test]
fn a_crashing_filter_gets_451_and_nothing_is_queued() {
    let s = Setup::default()
        .queue("#!/bin/sh\ncat > /dev/null\nkill -SEGV $$\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"hi\r\n.\r\n");
    assert!(c.reply().starts_with("451 4.3.0 qq crashed"));
    assert!(c.cmd("QUIT").starts_with("221"));
    s.wait_sessions_done(1);
    assert!(s.log().contains("reason=queue"));
}

#[test]
fn a_hanging_filter_gets_451_after_timeoutqueue_and_is_killed() {
    let s = Setup::default()
        .control("timeoutqueue", "1\n")
        .queue("#!/bin/sh\necho $$ > \"$(dirname \"$0\")/filter.pid\"\nexec sleep 600\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"hi\r\n.\r\n");
    assert!(c.reply().starts_with("451 4.3.0 qq timeout"));
    let pid: u32 = std::fs::read_to_string(s.home().join("filter.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    expect_within(WAIT, "the filter to be killed", || {
        !postern_testkit::process_alive(pid)
    });
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn queue_exit_codes_become_replies_and_priority_is_set_for_relay_clients() {
    let s = Setup::default().env("QQ_EXIT", "31").start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"hi\r\n.\r\n");
    assert!(c.reply().starts_with("554 5.3.0"));
    drop(s);
    let s = Setup::default()
        .env("RELAYCLIENT", "")
        .env("POSTERN_PRIORITY", "1")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@elsewhere.test");
    c.send(b"hi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    let environ = std::fs::read_dir(s.home().join("queued"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "environ"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    assert!(environ.contains("POSTERN_PRIORITY=1"));
    drop(s);
    // A stranger's POSTERN_PRIORITY never reaches the queue.
    let s = Setup::default().env("POSTERN_PRIORITY", "1").start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"hi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    let environ = std::fs::read_dir(s.home().join("queued"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "environ"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    assert!(!environ.contains("POSTERN_PRIORITY"));
}

/// A filter that refuses with qmail-queue's custom error (exit 82, the text on fd 6, as
/// postern-scan does) has its text in the 554, cleaned: the client learns what was
/// refused, and nothing the filter wrote can add a reply line.
#[test]
fn a_filter_names_what_it_refused_through_fd_6() {
    let s = Setup::default()
        .queue("#!/bin/sh\ncat >/dev/null\nprintf 'D5.7.1 message refused: Executable File (.exe)' >&6\nexit 82\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"hi\r\n.\r\n");
    assert_eq!(
        c.reply(),
        "554 5.7.1 message refused: Executable File (.exe)"
    );
    assert!(c.cmd("QUIT").starts_with("221"));
    s.wait_sessions_done(1);
    assert!(
        s.log()
            .contains("reason=queue helo=client.test from=<a@client.test> code=82 detail=\"message refused: Executable File (.exe)\""),
        "{}",
        s.log()
    );
    assert!(s.queued().is_empty());

    let s = Setup::default()
        .queue("#!/bin/sh\ncat >/dev/null\nprintf 'D5.7.1 no\\r\\n250 2.0.0 ok' >&6\nexit 82\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    c.send(b"hi\r\n.\r\n");
    assert_eq!(c.reply(), "554 5.7.1 no 250 2.0.0 ok");
    assert!(
        c.cmd("QUIT").starts_with("221"),
        "no second reply was queued"
    );
}

const AUTH_SCRIPT: &str = r#"
import os, smtplib, sys
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
c.ehlo()
print("auth", c.esmtp_features.get("auth").strip())
c.user, c.password = "alice@example.test", sys.argv[2]
mech = sys.argv[1]
code, text = c.auth(mech, getattr(c, "auth_" + mech.lower()), initial_response_ok=(sys.argv[3] == "1"))
print(code)
c.sendmail("alice@example.test", ["someone@elsewhere.test"], "Subject: auth\r\n\r\nhi\r\n")
print("sent")
c.quit()
"#;

fn python_auth(s: &Server, mech: &str, pass: &str, initial: bool) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(AUTH_SCRIPT)
        .arg(mech)
        .arg(pass)
        .arg(if initial { "1" } else { "0" });
    cmd.env("PORT", s.port.to_string());
    postern_testkit::run(&mut cmd, WAIT)
}

#[test]
fn auth_plain_and_login_with_a_checkpassword_program_allow_relaying() {
    let s = Setup::default().args(&["@CHECKPASSWORD@", "true"]).start();
    for (mech, initial) in [
        ("PLAIN", true),
        ("PLAIN", false),
        ("LOGIN", false),
        ("LOGIN", true),
    ] {
        let (code, out, err) = python_auth(&s, mech, "secret", initial);
        assert_eq!(code, Some(0), "{mech} {initial}: {out}{err}");
        assert_eq!(out, "auth PLAIN LOGIN\n235\nsent\n", "{mech}");
    }
    let (code, out, err) = python_auth(&s, "PLAIN", "wrong", true);
    assert_ne!(code, Some(0));
    assert!(err.contains("535"), "{out}{err}");
    s.wait_sessions_done(5);
    let log = s.log();
    assert_eq!(
        log.matches("event=auth ip=127.0.0.1 user=alice@example.test")
            .count(),
        4,
        "{log}"
    );
    assert!(log.contains("reason=authfail"), "{log}");
    assert!(log.contains("auth=alice@example.test qp="), "{log}");
    let q = s.queued();
    assert_eq!(q.len(), 4);
    assert!(String::from_utf8_lossy(&q[0].0).contains("with ESMTPA;"));
    let environ = std::fs::read_dir(s.home().join("queued"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "environ"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    assert!(
        environ.contains("AUTHUSER=alice@example.test\n"),
        "{environ}"
    );
    assert!(environ.contains("POSTERN_PRIORITY=1\n"), "{environ}");
}

#[test]
fn three_auth_failures_end_the_session() {
    let s = Setup::default().args(&["@CHECKPASSWORD@", "true"]).start();
    let mut c = s.connect();
    assert!(c
        .cmd("EHLO client.test")
        .starts_with("250 AUTH PLAIN LOGIN"));
    let bad = "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==";
    assert!(c.cmd(bad).starts_with("535 5.7.8"));
    assert!(c.cmd(bad).starts_with("535 5.7.8"));
    assert!(c.cmd(bad).starts_with("421 4.7.0"));
    assert!(c.closed());
}

/// A domain relayed to an internal server, with its recipients in relayrecipients: a
/// dictionary run of 30 made-up names gets 30 × 550 at RCPT (nothing queued, so nothing
/// bounced); a listed address is accepted and not rewritten; at the default limit the
/// made-up names end the session like unknown local users do.
#[test]
fn relay_recipients_refuse_made_up_names_at_rcpt() {
    let setup = || {
        Setup::default()
            .control("rcpthosts", "corp.test\n")
            .control("relayrecipients", "alice@corp.test\n")
            .control("unknownrcptdelay", "0\n")
    };
    let s = setup().control("maxunknownrcpts", "100\n").start();
    assert!(postern_mailstore::relayrecipients::compile(s.home()).unwrap());
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<forged@victim.test>").starts_with("250"));
    let mut refused = 0;
    for i in 0..30 {
        let reply = c.cmd(&format!("RCPT TO:<user{i}@corp.test>"));
        assert!(reply.starts_with("550 5.1.1"), "{reply}");
        refused += 1;
    }
    assert_eq!(refused, 30);
    assert!(c.cmd("RCPT TO:<Alice@corp.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: hi\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].1,
        b"Fforged@victim.test\0TAlice@corp.test\0\0".to_vec()
    );

    // The default limit: the tenth made-up name ends the session.
    let s = setup().start();
    assert!(postern_mailstore::relayrecipients::compile(s.home()).unwrap());
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<forged@victim.test>").starts_with("250"));
    for i in 0..9 {
        assert!(c
            .cmd(&format!("RCPT TO:<x{i}@corp.test>"))
            .starts_with("550 5.1.1"));
    }
    assert!(c.cmd("RCPT TO:<x9@corp.test>").starts_with("421 4.7.0"));
    s.wait_sessions_done(1);
    assert!(s.log().contains("reason=dictionary"), "{}", s.log());
}

/// `authfaildelay` means milliseconds here as it does to checkpassword (1000 is a
/// second's pause, not 1000 s), and a pause ends when the client hangs up: a client
/// that left holds no connection slot.
#[test]
fn auth_fail_delay_is_milliseconds_and_ends_with_the_client() {
    let bad = "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==";
    let s = Setup::default()
        .control("authfaildelay", "1000\n")
        .args(&["@CHECKPASSWORD@", "true"])
        .start();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let start = std::time::Instant::now();
    assert!(c.cmd(bad).starts_with("535 5.7.8"));
    let paused = start.elapsed();
    assert!(paused >= Duration::from_millis(900), "{paused:?}");
    assert!(paused < WAIT, "{paused:?}");

    // The largest pause (30 s); the client hangs up right after its bad AUTH.
    let s = Setup::default()
        .control("authfaildelay", "30000\n")
        .args(&["@CHECKPASSWORD@", "true"])
        .start();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let start = std::time::Instant::now();
    c.send(format!("{bad}\r\n").as_bytes());
    drop(c);
    s.wait_sessions_done(1);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

/// Sessions all run as one network account: each smtpd is not dumpable, so another
/// session of that account cannot ptrace it or read its memory (the kernel then gives
/// its /proc files to root). Needs root to run smtpd as another account.
#[test]
#[ignore = "needs root: run smtpd as another account"]
fn a_session_is_not_dumpable() {
    postern_testkit::require_root("run smtpd as another account");
    let s = Setup::default()
        .wrapper(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .start();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let pid = s.children.lock().unwrap()[0].pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Name:\tpostern-smtpd"), "{status}");
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{pid}/environ")).unwrap(),
    );
    assert_eq!(
        owner, 0,
        "/proc/{pid} of a dumpable process belongs to its uid"
    );
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn auth_is_not_offered_in_cleartext_off_loopback() {
    // TCPREMOTEIP says the client is elsewhere: no AUTH without TLS.
    let s = Setup::default()
        .args(&["@CHECKPASSWORD@", "true"])
        .env("TCPREMOTEIP", "192.0.2.7")
        .start();
    let mut c = s.connect();
    assert!(c
        .cmd("EHLO client.test")
        .starts_with("250 ENHANCEDSTATUSCODES"));
    assert!(c
        .cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=")
        .starts_with("538 5.7.11"));
    drop(c);
    drop(s);
    let s = Setup::default()
        .args(&["@CHECKPASSWORD@", "true"])
        .env("TCPREMOTEIP", "192.0.2.7")
        .control("authcleartext", "")
        .start();
    let mut c = s.connect();
    assert!(c
        .cmd("EHLO client.test")
        .starts_with("250 AUTH PLAIN LOGIN"));
}

#[test]
fn submission_requires_auth() {
    for setup in [
        Setup::default().args(&["-s", "@CHECKPASSWORD@", "true"]),
        Setup::default()
            .args(&["@CHECKPASSWORD@", "true"])
            .env("SUBMISSION", "1"),
    ] {
        let s = setup.start();
        let (code, out, err) = s.python(
            r#"
import os, smtplib
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
try:
    c.sendmail("alice@example.test", ["u@example.test"], "Subject: x\r\n\r\nhi\r\n")
except smtplib.SMTPSenderRefused as e:
    print(e.smtp_code, e.smtp_error.decode())
c.login("alice@example.test", "secret")
c.sendmail("alice@example.test", ["u@elsewhere.test"], "Subject: x\r\n\r\nhi\r\n")
print("sent")
"#,
        );
        assert_eq!(code, Some(0), "{out}{err}");
        assert_eq!(out, "530 5.7.0 authentication required\nsent\n");
    }
}

#[test]
fn swaks_auth_login_on_submission() {
    let Some(swaks) = require("swaks", "swaks") else {
        return;
    };
    let s = Setup::default()
        .args(&["-s", "@CHECKPASSWORD@", "true"])
        .start();
    let mut cmd = Command::new(swaks);
    cmd.args([
        "--server",
        "127.0.0.1",
        "--port",
        &s.port.to_string(),
        "--helo",
        "client.test",
    ])
    .args([
        "--from",
        "alice@example.test",
        "--to",
        "friend@elsewhere.test",
        "--hide-all",
    ])
    .args([
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "secret",
    ]);
    let (code, out, err) = postern_testkit::run(&mut cmd, WAIT);
    assert_eq!(code, Some(0), "{out}{err}");
    expect_within(WAIT, "the message", || s.queued().len() == 1);
    assert_eq!(
        s.queued()[0].1,
        b"Falice@example.test\0Tfriend@elsewhere.test\0\0"
    );
}

#[test]
fn bad_usage_and_unreadable_control_files() {
    let (code, _out, err) = postern_testkit::run(
        Command::new(SMTPD).arg("checkpassword-without-program"),
        WAIT,
    );
    assert_eq!(code, Some(100));
    assert_eq!(
        err,
        "postern-smtpd: usage: postern-smtpd [-s] [CHECKPASSWORD SUBPROGRAM...]\n"
    );
    let (code, _, _) = postern_testkit::run(Command::new(SMTPD).arg("-z"), WAIT);
    assert_eq!(code, Some(100));
    // rcpthosts is a directory: unreadable, so 421, never "no restrictions".
    let s = Setup::default().start();
    std::fs::remove_file(s.home().join("control/rcpthosts")).unwrap();
    std::fs::create_dir(s.home().join("control/rcpthosts")).unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert_eq!(
        text,
        "421 4.3.0 temporary problem reading the configuration\r\n"
    );
    expect_within(WAIT, "the error line", || s.log().contains("event=error"));
    assert!(
        s.log()
            .contains("postern-smtpd: fatal: unable to read control/rcpthosts"),
        "{}",
        s.log()
    );
    let _ = c.shutdown(Shutdown::Both);
}

#[test]
fn greeting_comes_from_smtpgreeting() {
    let s = Setup::default()
        .control("smtpgreeting", "mx.example.test welcome\n")
        .start();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 100];
    let mut got = Vec::new();
    assert!(wait_until(WAIT, || {
        let n = c.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        got.ends_with(b"\r\n") || n == 0
    }));
    assert_eq!(got, b"220 mx.example.test welcome ESMTP\r\n");
}

/// postern-tlsd in front of postern-smtpd, with a self-signed certificate made here.
/// As root, tlsd refuses to run the server as root: it becomes nobody, so the instance
/// is made readable (and the queue stand-in's directory writable) for it.
fn tls_setup(setup: Setup) -> Option<Server> {
    let tlsd = postern_testkit::workspace_bin("postern-tlsd");
    let openssl = require("openssl", "openssl")?;
    let certs = tempdir();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let mut cmd = Command::new(openssl);
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ])
    .args(["-days", "1", "-subj", "/CN=mx.example.test", "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    let (code, _, err) = postern_testkit::run(&mut cmd, WAIT);
    assert_eq!(code, Some(0), "{err}");
    let mut wrapper = vec![
        tlsd.to_string_lossy().into_owned(),
        "-c".into(),
        cert.to_string_lossy().into_owned(),
    ];
    wrapper.extend(["-k".into(), key.to_string_lossy().into_owned()]);
    if nix::unistd::geteuid().is_root() {
        wrapper.extend(["-u", "65534", "-g", "65534"].map(String::from));
    }
    let words: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut server = setup.wrapper(&words).start();
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (server.home().to_path_buf(), 0o755),
        (server.home().join("queued"), 0o777),
    ] {
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    server.keep.push(certs);
    Some(server)
}

#[test]
fn starttls_through_tlsd_then_auth_and_send() {
    let setup = Setup::default()
        .args(&["@CHECKPASSWORD@", "true"])
        .env("TCPREMOTEIP", "192.0.2.7");
    let Some(s) = tls_setup(setup) else { return };
    let (code, out, err) = s.python(
        r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
c.ehlo()
print("before", "starttls" in c.esmtp_features, "auth" in c.esmtp_features)
print(c.starttls(context=ctx)[0])
c.ehlo()
print("after", "starttls" in c.esmtp_features, c.esmtp_features.get("auth", "").strip())
c.login("alice@example.test", "secret")
c.sendmail("alice@example.test", ["friend@elsewhere.test"], "Subject: tls\r\n\r\nhi\r\n")
print("sent")
c.quit()
"#,
    );
    assert_eq!(code, Some(0), "{out}{err}\n{}", s.log());
    assert_eq!(
        out,
        "before True False\n220\nafter False PLAIN LOGIN\nsent\n"
    );
    expect_within(WAIT, "the message", || s.queued().len() == 1);
    let msg = String::from_utf8_lossy(&s.queued()[0].0).into_owned();
    assert!(msg.contains("with ESMTPSA (TLSv1."), "{msg}");
    s.wait_sessions_done(1);
    let log = s.log();
    assert!(
        log.contains("event=starttls ip=192.0.2.7 version=TLSv1."),
        "{log}"
    );
    assert!(
        log.contains(
            "event=accept ip=192.0.2.7 helo=client.test from=<alice@example.test> rcpts=1"
        ),
        "{log}"
    );
    assert!(log.contains("tls=TLSv1."), "{log}");
}

#[test]
fn starttls_with_injected_plaintext_never_runs_it() {
    let Some(s) = tls_setup(Setup::default()) else {
        return;
    };
    let (code, out, err) = s.python(
        r#"
import os, socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])))
f = s.makefile("rb")
def reply(f):
    while True:
        l = f.readline().decode()
        if l[3:4] != "-": return l.strip()
print(reply(f)[:3])
s.sendall(b"EHLO client.test\r\n"); print(reply(f)[:3])
# The classic injection: a command in the same packet as STARTTLS.
s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
print(reply(f)[:3])
t = ctx.wrap_socket(s, server_hostname="mx.example.test")
g = t.makefile("rb")
t.sendall(b"EHLO client.test\r\n"); print(reply(g)[:3])
t.sendall(b"RCPT TO:<u@example.test>\r\n"); print(reply(g)[:9])
t.sendall(b"QUIT\r\n"); print(reply(g)[:3])
"#,
    );
    assert_eq!(code, Some(0), "{out}{err}\n{}", s.log());
    // After the handshake no MAIL is pending: the injected one was never executed.
    assert_eq!(out, "220\n250\n220\n250\n503 5.5.1\n221\n");
    s.wait_sessions_done(1);
    assert!(!s.log().contains("injected@evil.test"), "{}", s.log());
}

/// The real chain: postern-tcpserver runs postern-smtpd with postern-checkpassword as
/// its checker and the real postern-queue; users made by postern-user. Recipients are
/// validated against the compiled database; the message lands in the queue.
#[test]
fn the_real_chain_validates_recipients_authenticates_and_queues() {
    let bin = postern_testkit::target_dir();
    let needed = [
        "postern-tcpserver",
        "postern-user",
        "postern-checkpassword",
        "postern-queue",
    ];
    for name in needed {
        postern_testkit::workspace_bin(name);
    }
    let home = tempdir();
    let h = home.path();
    for d in ["control", "users", "queue"] {
        std::fs::create_dir_all(h.join(d)).unwrap();
    }
    for d in [
        "lock", "tmp", "new", "mess", "state", "bounce", "hold", "ctl",
    ] {
        std::fs::create_dir_all(h.join("queue").join(d)).unwrap();
    }
    std::fs::write(h.join("control/me"), "mx.example.test\n").unwrap();
    let user = |args: &[&str], stdin: &str| {
        let mut cmd = Command::new(bin.join("postern-user"));
        cmd.args(args)
            .env("POSTERN_HOME", h)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "postern-user {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    user(
        &["--owner", "nobody", "domain", "add", "example.test"],
        "Quartz-Lantern-9281\n",
    );
    user(&["add", "alice@example.test"], "Violet-Harbor-4471\n");
    user(
        &["alias", "add", "sales@example.test", "alice@example.test"],
        "",
    );
    let mut cmd = Command::new(bin.join("postern-tcpserver"));
    cmd.args(["-1", "-H", "-R", "127.0.0.1", "0", SMTPD])
        .arg(bin.join("postern-checkpassword"))
        .arg("true")
        .env("POSTERN_HOME", h)
        .env_remove("QMAILQUEUE")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(h.join("log")).unwrap()));
    let mut server = Daemon::spawn("postern-tcpserver", cmd);
    let mut first = String::new();
    BufReader::new(server.child_mut().stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("port line {first:?}"));
    let mut py = Command::new("python3");
    py.env("PORT", port.to_string()).arg("-c").arg(
        r#"
import os, smtplib
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
c.ehlo()
c.mail("someone@client.test")
for r in ["alice@example.test", "ALICE@Example.Test", "sales@example.test", "abuse@example.test", "nobody@example.test", "x@elsewhere.test"]:
    print(r, c.rcpt(r)[0])
c.rset()
try:
    c.login("alice@example.test", "wrong-password")
except smtplib.SMTPAuthenticationError as e:
    print("login", e.smtp_code)
c.login("alice@example.test", "Violet-Harbor-4471")
print("login ok")
try:
    c.sendmail("postmaster@example.test", ["friend@elsewhere.test"], "Subject: x\r\n\r\nhi\r\n")
except smtplib.SMTPSenderRefused as e:
    print("sender", e.smtp_code)
c.sendmail("sales@example.test", ["friend@elsewhere.test", "alice@example.test"], "Subject: chain\r\n\r\nhello\r\n")
print("sent")
c.quit()
"#,
    );
    let (code, out, err) = postern_testkit::run(&mut py, WAIT);
    let log = std::fs::read_to_string(h.join("log")).unwrap_or_default();
    assert_eq!(code, Some(0), "{out}{err}\n{log}");
    assert_eq!(
        out,
        "alice@example.test 250\nALICE@Example.Test 250\nsales@example.test 250\nabuse@example.test 250\n\
         nobody@example.test 550\nx@elsewhere.test 553\nlogin 535\nlogin ok\nsender 553\nsent\n",
        "{log}"
    );
    let new: Vec<_> = std::fs::read_dir(h.join("queue/new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(new.len(), 1, "{log}");
    let file = std::fs::read(&new[0]).unwrap();
    assert!(file.starts_with(b"PQ1\n"));
    let text = String::from_utf8_lossy(&file);
    assert!(
        text.contains("Fsales@example.test\0Tfriend@elsewhere.test\0Talice@example.test\0\0"),
        "{text:?}"
    );
    assert!(
        text.contains("Ipriority=1\0"),
        "authenticated: priority ({text:?})"
    );
    assert!(text.contains("Subject: chain\n\nhello\n"), "{text:?}");
    assert!(log.contains("reason=unknownuser"), "{log}");
    assert!(log.contains("reason=sendermismatch"), "{log}");
}

#[test]
fn a_filter_that_never_reads_a_big_message_times_out() {
    // The message is bigger than a pipe holds, so smtpd's writes to the filter block:
    // they have a deadline too, and the client still gets its reply.
    let s = Setup::default()
        .control("timeoutqueue", "1\n")
        .queue("#!/bin/sh\nexec sleep 600\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    let line = format!("{}\r\n", "z".repeat(998));
    let mut body = Vec::new();
    for _ in 0..1024 {
        body.extend_from_slice(line.as_bytes());
    }
    body.extend_from_slice(b".\r\n");
    c.send(&body);
    let reply = c.reply();
    assert!(reply.starts_with("451 4.3.0 qq timeout"), "{reply}");
    assert!(c.cmd("QUIT").starts_with("221"));
    s.wait_sessions_done(1);
    assert!(
        s.log().contains("code=none detail=\"qq timeout\""),
        "{}",
        s.log()
    );
}

/// The whole path of the issue: smtplib → postern-smtpd → postern-queue → postern-send →
/// postern-local → the user's Maildir → postern-popup/postern-pop3d → poplib.
#[test]
fn a_message_from_smtplib_is_fetched_by_poplib() {
    let bin = postern_testkit::target_dir();
    let needed = [
        "postern-tcpserver",
        "postern-user",
        "postern-checkpassword",
        "postern-queue",
        "postern-send",
        "postern-local",
        "postern-popup",
        "postern-pop3d",
    ];
    for name in needed {
        postern_testkit::workspace_bin(name);
    }
    let home = tempdir();
    let h = home.path();
    // Deliveries run as the mailbox owner (nobody): it must reach the instance.
    std::fs::set_permissions(h, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for d in ["control", "users", "queue"] {
        std::fs::create_dir_all(h.join(d)).unwrap();
    }
    for d in [
        "lock", "tmp", "new", "mess", "state", "bounce", "hold", "ctl",
    ] {
        std::fs::create_dir_all(h.join("queue").join(d)).unwrap();
    }
    std::fs::write(h.join("control/me"), "mx.example.test\n").unwrap();
    for (args, stdin) in [
        (
            &["--owner", "nobody", "domain", "add", "example.test"][..],
            "Quartz-Lantern-9281\n",
        ),
        (&["add", "alice@example.test"][..], "Violet-Harbor-4471\n"),
    ] {
        let mut cmd = Command::new(bin.join("postern-user"));
        cmd.args(args)
            .env("POSTERN_HOME", h)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "postern-user {args:?}");
    }
    let log = |name: &str| Stdio::from(std::fs::File::create(h.join(name)).unwrap());
    let mut send = Command::new(bin.join("postern-send"));
    send.env("POSTERN_HOME", h)
        .env("PATH", postern_testkit::path_with_workspace_bins())
        .stderr(log("send.log"));
    let _send = Daemon::spawn("postern-send", send);
    let serve = |args: Vec<PathBuf>, logname: &str| {
        let mut cmd = Command::new(bin.join("postern-tcpserver"));
        cmd.args(["-1", "-H", "-R", "127.0.0.1", "0"])
            .args(args)
            .env("POSTERN_HOME", h);
        cmd.env_remove("QMAILQUEUE")
            .stdout(Stdio::piped())
            .stderr(log(logname));
        let mut d = Daemon::spawn("postern-tcpserver", cmd);
        let mut first = String::new();
        BufReader::new(d.child_mut().stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        (d, first.trim().parse::<u16>().unwrap())
    };
    let (_smtp, smtp_port) = serve(
        vec![
            SMTPD.into(),
            bin.join("postern-checkpassword"),
            "true".into(),
        ],
        "smtpd.log",
    );
    let popup = vec![
        bin.join("postern-popup"),
        "mx.example.test".into(),
        bin.join("postern-checkpassword"),
        bin.join("postern-pop3d"),
    ];
    let (_pop, pop_port) = serve(popup, "pop.log");
    let mut py = Command::new("python3");
    py.arg("-c")
        .arg(
            r#"
import poplib, smtplib, sys, time
c = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.test")
c.sendmail("someone@client.test", ["alice@example.test"], "Subject: full chain\r\n\r\nhello alice\r\n")
c.quit()
for i in range(100):
    p = poplib.POP3("127.0.0.1", int(sys.argv[2]))
    p.user("alice@example.test"); p.pass_("Violet-Harbor-4471")
    if p.stat()[0]:
        print(b"\n".join(p.retr(1)[1]).decode())
        p.quit()
        break
    p.quit(); time.sleep(0.1)
"#,
        )
        .arg(smtp_port.to_string())
        .arg(pop_port.to_string());
    let (code, out, err) = postern_testkit::run(&mut py, Duration::from_secs(60));
    let logs: String = ["smtpd.log", "send.log", "pop.log"]
        .iter()
        .map(|n| std::fs::read_to_string(h.join(n)).unwrap_or_default())
        .collect();
    assert_eq!(code, Some(0), "{out}{err}\n{logs}");
    assert!(
        out.contains(
            "Received: from client.test (unknown [127.0.0.1])\n\tby mx.example.test with ESMTP;"
        ),
        "{out}\n{logs}"
    );
    assert!(
        out.contains("Subject: full chain\n\nhello alice"),
        "{out}\n{logs}"
    );
}

#[test]
fn swaks_starttls_and_auth_plain_on_submission() {
    let Some(swaks) = require("swaks", "swaks") else {
        return;
    };
    let setup = Setup::default()
        .args(&["-s", "@CHECKPASSWORD@", "true"])
        .env("TCPREMOTEIP", "192.0.2.7");
    let Some(s) = tls_setup(setup) else { return };
    let mut cmd = Command::new(swaks);
    cmd.args([
        "--server",
        "127.0.0.1",
        "--port",
        &s.port.to_string(),
        "--helo",
        "client.test",
    ])
    .args([
        "--from",
        "alice@example.test",
        "--to",
        "friend@elsewhere.test",
        "--tls",
    ])
    .args([
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "secret",
    ]);
    let (code, out, err) = postern_testkit::run(&mut cmd, WAIT);
    assert_eq!(code, Some(0), "{out}{err}\n{}", s.log());
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains("~> AUTH PLAIN"), "{out}");
    expect_within(WAIT, "the message", || s.queued().len() == 1);
    assert!(String::from_utf8_lossy(&s.queued()[0].0).contains("with ESMTPSA (TLSv1."));
}

// --- Slow clients (issue 16, item 4): the session time limit and the minimum rate ---

/// How long a slow-client test waits for the server to act before it gives up.
const SLOW_WAIT: Duration = Duration::from_secs(40);

/// Send `bytes` (over and over) one at a time, `every` apart, until the server answers
/// or closes, or [`SLOW_WAIT`] passes: the answer ("" if none) and when it came,
/// counted from `start`.
fn trickle_until_answered(
    c: &mut Raw,
    bytes: &[u8],
    every: Duration,
    start: Instant,
) -> (String, Duration) {
    c.stream.set_read_timeout(Some(every)).unwrap();
    let mut got = Vec::new();
    for &b in bytes.iter().cycle() {
        if start.elapsed() > SLOW_WAIT {
            break;
        }
        let _ = c.stream.write_all(&[b]);
        let mut buf = [0u8; 512];
        match c.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\r\n") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    c.stream.set_read_timeout(Some(WAIT)).unwrap();
    (
        String::from_utf8_lossy(&got).trim_end().to_string(),
        elapsed,
    )
}

#[test]
fn a_client_trickling_a_command_is_cut_at_the_session_time_limit() {
    // One byte every 2 s never trips the 5 s idle timeout; no minimum rate here, so
    // only the 6 s session limit can end it.
    let s = Setup::default()
        .control("timeoutsmtpd", "5\n")
        .control("timeoutsession", "6\n")
        .control("minrate", "0\n")
        .start();
    let start = Instant::now();
    let mut c = s.connect();
    let (reply, after) = trickle_until_answered(&mut c, b"NOOP ", Duration::from_secs(2), start);
    assert_eq!(reply, "421 4.4.2 session time limit, closing connection");
    assert!(
        after >= Duration::from_secs(5) && after <= Duration::from_secs(15),
        "cut after {after:?}, the limit is 6 s"
    );
    assert!(c.closed());
    s.wait_sessions_done(1);
    let log = s.log();
    assert!(log.contains("reason=sessionlimit"), "{log}");
    assert!(
        log.contains("event=disconnect") && log.contains("reason=sessionlimit messages=0"),
        "{log}"
    );
}

#[test]
fn a_client_trickling_a_command_is_cut_by_the_minimum_rate() {
    // The issue's client, one byte every 2 s with timeoutsmtpd=5, against 100 B/s over
    // a 4 s window: the line's first byte is free, the next two use up the 4 s.
    let s = Setup::default()
        .control("timeoutsmtpd", "5\n")
        .control("minrate", "100\n")
        .control("minratewindow", "4\n")
        .start();
    let start = Instant::now();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250 "));
    let (reply, after) = trickle_until_answered(
        &mut c,
        b"MAIL FROM:<a@client.test>",
        Duration::from_secs(2),
        start,
    );
    assert_eq!(reply, "421 4.4.2 too slow, closing connection");
    assert!(
        after >= Duration::from_secs(3) && after <= Duration::from_secs(15),
        "cut after {after:?}, the window is 4 s"
    );
    assert!(c.closed());
    s.wait_sessions_done(1);
    let log = s.log();
    assert!(
        log.contains("reason=slow helo=client.test during=command"),
        "{log}"
    );
    assert!(
        log.contains("event=disconnect") && log.contains("reason=slow messages=0"),
        "{log}"
    );
}

#[test]
fn data_at_a_crawl_is_cut_and_nothing_is_queued() {
    let s = Setup::default()
        .control("timeoutsmtpd", "5\n")
        .control("minrate", "100\n")
        .control("minratewindow", "4\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    let start = Instant::now();
    // 0.4 bytes a second, as the issue measured.
    let (reply, after) = trickle_until_answered(
        &mut c,
        b"Subject: crawling\r\n\r\nxxxxxxxxxxxxxxxx",
        Duration::from_millis(2500),
        start,
    );
    assert_eq!(reply, "421 4.4.2 too slow, closing connection");
    assert!(
        after >= Duration::from_secs(3) && after <= Duration::from_secs(15),
        "cut after {after:?}, the window is 4 s"
    );
    assert!(c.closed());
    s.wait_sessions_done(1);
    assert!(s.queued().is_empty(), "nothing is queued");
    let log = s.log();
    assert!(
        log.contains("reason=slow") && log.contains("during=\"message data\""),
        "{log}"
    );
}

#[test]
fn a_client_at_one_kilobyte_a_second_is_not_cut() {
    // The same tight limits: 100 B/s over 4 s. 12 KB of message at 1 KB/s is three
    // windows long and passes.
    let s = Setup::default()
        .control("timeoutsmtpd", "5\n")
        .control("minrate", "100\n")
        .control("minratewindow", "4\n")
        .control("timeoutsession", "60\n")
        .start();
    let mut c = s.connect();
    c.envelope_to("u@example.test");
    let mut message = b"Subject: steady\r\n\r\n".to_vec();
    for _ in 0..120 {
        message.extend_from_slice(&[b'z'; 98]);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b".\r\n");
    let start = Instant::now();
    for piece in message.chunks(100) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(start.elapsed() >= Duration::from_secs(12));
    let reply = c.reply();
    assert!(reply.starts_with("250 2.0.0 ok: queued"), "{reply}");
    assert!(c.cmd("QUIT").starts_with("221 "));
    s.wait_sessions_done(1);
    assert_eq!(s.queued().len(), 1);
    assert!(!s.log().contains("reason=slow"), "{}", s.log());
}
