//! Recipient verification by callout (`control/verifyrecipients`), end to end: the real
//! postern-smtpd, which runs the real postern-verify (built by `cargo build --workspace`,
//! found next to postern-smtpd), against a small SMTP server on 127.0.0.1 that stands
//! for the internal server behind the gateway (`callout_server.py`), routed by
//! `control/smtproutes`.

use super::smtpd::{Server, Setup};
use postern_testkit::{expect_within, tempdir, Daemon, TempDir};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = include_str!("callout_server.py");
/// What should happen within this long, happens.
const WAIT: Duration = Duration::from_secs(30);

/// The next hop: its process, its port and the directory of its command log.
struct NextHop {
    _daemon: Daemon,
    port: u16,
    dir: TempDir,
}

impl NextHop {
    fn start(args: &[&str]) -> NextHop {
        let dir = tempdir();
        let script = dir.path().join("callout_server.py");
        std::fs::write(&script, SERVER).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped());
        let mut daemon = Daemon::spawn("callout_server.py", cmd);
        let out = daemon.child_mut().stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        let port = line.trim().parse().expect("the server's port");
        NextHop {
            _daemon: daemon,
            port,
            dir,
        }
    }

    /// Every command line the server received, as Python's repr of the bytes.
    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("commands"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn rcpts_for(&self, addr: &str) -> usize {
        let want = format!("b'RCPT TO:<{addr}>\\r\\n'");
        self.commands().iter().filter(|c| **c == want).count()
    }

    fn route(&self) -> String {
        format!("corp.test:127.0.0.1:{}\n", self.port)
    }
}

/// Whether postern-verify is built beside postern-smtpd (where smtpd looks for it). It
/// must be (`cargo test --workspace` builds it): otherwise the test fails.
fn verifier_built() -> bool {
    let path = std::path::Path::new(super::smtpd::SMTPD)
        .parent()
        .unwrap()
        .join("postern-verify");
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --workspace` first",
        path.display()
    );
    true
}

/// A gateway for corp.test whose recipients are verified at `route`'s next hop; made-up
/// names may be tried without pauses or the dictionary limit getting in the way.
fn gateway(route: &str) -> Setup {
    Setup::default()
        .control("rcpthosts", "corp.test\n")
        .control("verifyrecipients", "# behind the gateway\ncorp.test\n")
        .control("smtproutes", route)
        .control("maxunknownrcpts", "100\n")
        .control("unknownrcptdelay", "0\n")
}

/// One session: EHLO, MAIL, then each RCPT; the replies to the RCPTs.
fn rcpts(s: &Server, addrs: &[&str]) -> Vec<String> {
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<forged@victim.test>").starts_with("250"));
    let replies = addrs
        .iter()
        .map(|a| c.cmd(&format!("RCPT TO:<{a}>")))
        .collect();
    assert!(c.cmd("QUIT").starts_with("221"));
    replies
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_dictionary_run_is_refused_at_rcpt_and_a_real_user_accepted() {
    if !verifier_built() {
        return;
    }
    let hop = NextHop::start(&["alice@corp.test=250"]);
    let s = gateway(&hop.route()).start();
    let names: Vec<String> = (0..30).map(|i| format!("user{i}@corp.test")).collect();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<forged@victim.test>").starts_with("250"));
    let mut transcript = String::new();
    for name in &names {
        let reply = c.cmd(&format!("RCPT TO:<{name}>"));
        transcript.push_str(&format!("RCPT TO:<{name}>  →  {reply}\n"));
        assert_eq!(reply, "550 5.1.1 sorry, no mailbox here by that name");
    }
    eprintln!("{transcript}");
    assert!(c.cmd("DATA").starts_with("554 5.5.1"), "no valid recipient");
    assert!(c.cmd("QUIT").starts_with("221"));
    s.wait_sessions_done(1);
    assert!(s.queued().is_empty(), "nothing queued");

    // The real user: 250, and the message queued for her alone.
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@client.test>").starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<alice@corp.test>"), "250 2.1.5 ok");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: hi\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].1, b"Fbob@client.test\0Talice@corp.test\0\0".to_vec());

    // The next hop was asked each address once, with the null sender, and never got
    // DATA: EHLO, MAIL FROM:<>, RCPT, RSET, QUIT per probe.
    let commands = hop.commands();
    for name in &names {
        assert_eq!(hop.rcpts_for(name), 1, "{name}");
    }
    assert_eq!(hop.rcpts_for("alice@corp.test"), 1);
    assert!(
        !commands.iter().any(|c| c.contains("DATA")),
        "{commands:#?}"
    );
    let verbs = |v: &str| commands.iter().filter(|c| c.starts_with(v)).count();
    assert_eq!(verbs("b'MAIL FROM:<>\\r\\n'"), 31, "{commands:#?}");
    assert_eq!(verbs("b'EHLO "), 31);
    assert_eq!(verbs("b'RSET"), 31);
    assert_eq!(verbs("b'QUIT"), 31);

    s.wait_sessions_done(2);
    let log = s.log();
    assert_eq!(count(&log, "event=verify"), 31, "{log}");
    assert_eq!(count(&log, "result=fail cached=no"), 30, "{log}");
    assert_eq!(count(&log, "reason=unverified"), 30, "{log}");
    assert!(
        log.contains(
            "event=verify ip=127.0.0.1 rcpt=<alice@corp.test> result=pass cached=no \
             detail=\"127.0.0.1 (127.0.0.1) said: 250 2.1.5 ok\""
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "reason=unverified helo=client.test from=<forged@victim.test> \
             rcpt=<user0@corp.test> detail=\"127.0.0.1 (127.0.0.1) said: 550 5.1.1 \
             <user0@corp.test>: no such user\""
        ),
        "{log}"
    );
}

/// The default dictionary limit counts refused callouts like unknown local users.
#[test]
fn refused_callouts_count_toward_the_dictionary_limit() {
    if !verifier_built() {
        return;
    }
    let hop = NextHop::start(&[]);
    let s = gateway(&hop.route())
        .control("maxunknownrcpts", "3\n")
        .start();
    let mut c = s.connect();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<forged@victim.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@corp.test>").starts_with("550 5.1.1"));
    assert!(c.cmd("RCPT TO:<b@corp.test>").starts_with("550 5.1.1"));
    assert!(c.cmd("RCPT TO:<c@corp.test>").starts_with("421 4.7.0"));
    s.wait_sessions_done(1);
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("reason=dictionary") && l.ends_with(" unknown=3")),
        "{log}"
    );
}

/// One probe per address: asked again (by a new smtpd process, as every connection is),
/// the answer comes from the cache on disk; a new smtpd after the next hop is gone
/// still has it; an answer that expires is asked for again.
#[test]
fn answers_are_cached_across_processes_and_expire() {
    if !verifier_built() {
        return;
    }
    let hop = NextHop::start(&["alice@corp.test=250"]);
    let s = gateway(&hop.route())
        .control("verifypositive", "3\n")
        .start();
    let t0 = Instant::now();
    assert_eq!(rcpts(&s, &["alice@corp.test"]), ["250 2.1.5 ok"]);
    assert_eq!(
        rcpts(&s, &["alice@corp.test", "nobody@corp.test"]),
        [
            "250 2.1.5 ok",
            "550 5.1.1 sorry, no mailbox here by that name"
        ]
    );
    assert_eq!(
        rcpts(&s, &["nobody@corp.test"]),
        ["550 5.1.1 sorry, no mailbox here by that name"]
    );
    assert_eq!(hop.rcpts_for("alice@corp.test"), 1, "probed once");
    assert_eq!(hop.rcpts_for("nobody@corp.test"), 1, "probed once");
    s.wait_sessions_done(3);
    let log = s.log();
    assert_eq!(
        count(&log, "rcpt=<alice@corp.test> result=pass cached=no"),
        1
    );
    assert_eq!(
        count(&log, "rcpt=<alice@corp.test> result=pass cached=yes"),
        1
    );
    assert_eq!(
        count(&log, "rcpt=<nobody@corp.test> result=fail cached=yes"),
        1
    );
    // The answers are files under run/verify, the network account's alone.
    use std::os::unix::fs::PermissionsExt;
    let dir = s.home().join("run/verify");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "two answers, no locks"
    );

    // verifypositive is 3 s: once it has passed, alice is asked about again.
    let elapsed = t0.elapsed();
    if elapsed < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_secs(4) - elapsed);
    }
    assert_eq!(rcpts(&s, &["alice@corp.test"]), ["250 2.1.5 ok"]);
    assert_eq!(hop.rcpts_for("alice@corp.test"), 2, "expired, probed again");
    // nobody's answer (verifynegative: 3 hours) still holds.
    assert_eq!(
        rcpts(&s, &["nobody@corp.test"]),
        ["550 5.1.1 sorry, no mailbox here by that name"]
    );
    assert_eq!(hop.rcpts_for("nobody@corp.test"), 1);

    // Without the next hop: what is cached still answers, a new address gets 450.
    drop(hop);
    assert_eq!(
        rcpts(&s, &["nobody@corp.test", "new@corp.test"]),
        [
            "550 5.1.1 sorry, no mailbox here by that name",
            "450 4.4.3 unable to verify the recipient now, try again later"
        ]
    );
}

#[test]
fn no_answer_is_450_never_250() {
    if !verifier_built() {
        return;
    }
    // A next hop that is not there (the port was free a moment ago).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = gateway(&format!("corp.test:127.0.0.1:{port}\n")).start();
    assert_eq!(
        rcpts(&s, &["alice@corp.test"]),
        ["450 4.4.3 unable to verify the recipient now, try again later"]
    );
    s.wait_sessions_done(1);
    let log = s.log();
    assert!(
        log.contains("rcpt=<alice@corp.test> result=tempfail cached=no detail=\"unable to connect to 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("reason=verifytempfail"), "{log}");
    assert!(s.queued().is_empty());

    // A next hop that never answers: 450 once verifytimeout (2 s) has passed.
    let silent = NextHop::start(&["--silent"]);
    let s = gateway(&silent.route())
        .control("verifytimeout", "2\n")
        .start();
    let start = Instant::now();
    assert_eq!(
        rcpts(&s, &["alice@corp.test"]),
        ["450 4.4.3 unable to verify the recipient now, try again later"]
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(2) && took < WAIT, "{took:?}");

    // A 4xx to the RCPT: 450, and (verifytempfail 0) asked again next time.
    let hop = NextHop::start(&["alice@corp.test=451"]);
    let s = gateway(&hop.route())
        .control("verifytempfail", "0\n")
        .start();
    for _ in 0..2 {
        assert_eq!(
            rcpts(&s, &["alice@corp.test"]),
            ["450 4.4.3 unable to verify the recipient now, try again later"]
        );
    }
    assert_eq!(hop.rcpts_for("alice@corp.test"), 2);
}

/// Eight sessions ask about the same new address at once; the next hop is slow (1 s
/// per RCPT). It is asked once: the other probers wait for that answer.
#[test]
fn concurrent_sessions_make_one_probe() {
    if !verifier_built() {
        return;
    }
    let hop = NextHop::start(&["alice@corp.test=250", "--delay", "1"]);
    let s = gateway(&hop.route()).start();
    let replies: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| rcpts(&s, &["alice@corp.test", "made-up@corp.test"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &replies {
        assert_eq!(
            r,
            &[
                "250 2.1.5 ok",
                "550 5.1.1 sorry, no mailbox here by that name"
            ]
        );
    }
    assert_eq!(hop.rcpts_for("alice@corp.test"), 1, "{:#?}", hop.commands());
    assert_eq!(
        hop.rcpts_for("made-up@corp.test"),
        1,
        "{:#?}",
        hop.commands()
    );
    expect_within(WAIT, "the sessions to end", || {
        count(&s.log(), "event=disconnect") >= 8
    });
    let log = s.log();
    assert_eq!(
        count(&log, "rcpt=<alice@corp.test> result=pass cached=no"),
        1
    );
    assert_eq!(
        count(&log, "rcpt=<alice@corp.test> result=pass cached=yes"),
        7
    );
}
