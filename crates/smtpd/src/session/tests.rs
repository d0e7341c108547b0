//! In-process session tests: a fake outside world, the dialog files of
//! `tests/dialogs/*.txt`, and a few checks that read better as code.
//!
//! Dialog format, one directive per line:
//! - `# …` comment; blank lines ignored.
//! - `! KEY VALUE` set up the world before the session starts: `rcpthosts D,D`,
//!   `hosted D`, `valid ADDR`, `alias ADDR LOGIN`, `relayclient`, `submission`,
//!   `auth` (checkpassword accepts alice@example.test / secret), `tls`, `databytes N`,
//!   `maxrcpts N`, `maxunknown N`, `ip IP`, `queue CODE` (the queue exits CODE),
//!   `badmailfrom E`, `badrcptto E`, `authsenders LINE`, `authcleartext`,
//!   `ratelimit KIND KEY` (an entry of `ratelimit.blocked` in force), `verified D`
//!   (D is in `verifyrecipients`), `callout ADDR pass|fail|tempfail|error` (what the
//!   next hop says about ADDR; unlisted: tempfail; `error`: the prober cannot run).
//! - `> TEXT` the client sends TEXT and CR LF; `>| TEXT` sends TEXT without CR LF.
//!   Escapes in TEXT: `\r`, `\n`, `\0`, `\\`, `\xNN`.
//! - `< PREFIX` the next reply line starts with PREFIX.
//! - `= closed` the session ended before the input did (no more replies).
//! - `= queued N` exactly N messages were queued; `= message N TEXT` message N
//!   contains TEXT; `= rcpts N LIST` its recipients, comma-separated; `= authuser N
//!   LOGIN` the `AUTHUSER` its queue run got (empty: none).
//! - `= log TEXT` some log line contains TEXT; `= nolog TEXT` none does.
//!
//! - `~` the client waits for the replies here: the input up to this point arrives in
//!   one piece, the rest later (STARTTLS discards only what already arrived).
//!
//! Otherwise all client lines go in at once, as a client that pipelines everything
//! would send them; the replies are compared in order.

use super::*;
use crate::line::fake::Timeline;
use crate::queue::Outcome;
use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

#[derive(Default, Clone)]
struct Message {
    text: Vec<u8>,
    sender: String,
    rcpts: Vec<String>,
    priority: bool,
    /// What the queue would get as `AUTHUSER`.
    auth_user: Option<String>,
}

#[derive(Default)]
struct World {
    hosted: Vec<String>,
    verified: Vec<String>,
    callouts: Vec<(String, String)>,
    /// Addresses asked about, in order (a second ask is answered "cached").
    asked: Vec<String>,
    valid: Vec<String>,
    aliases: Vec<(String, String)>,
    auth: bool,
    tls: bool,
    queue_code: i32,
    queued: Rc<RefCell<Vec<Message>>>,
    logs: Vec<String>,
    slept: Duration,
    tls_injected: usize,
    /// Greylisting triplets seen (`ip sender rcpt`): the first sight defers.
    greylisted: Vec<String>,
}

struct FakeJob {
    msg: Message,
    code: i32,
    sink: Rc<RefCell<Vec<Message>>>,
}

impl Job for FakeJob {
    fn write(&mut self, text: &[u8]) -> io::Result<()> {
        self.msg.text.extend_from_slice(text);
        Ok(())
    }
    fn finish(mut self: Box<Self>, sender: &str, rcpts: &[String]) -> Outcome {
        if self.code != 0 {
            return Outcome::Refused {
                reply: postern_wire::qmail_queue::exit_code::smtp_reply(Some(self.code))
                    .to_string(),
                code: Some(self.code),
            };
        }
        self.msg.sender = sender.to_string();
        self.msg.rcpts = rcpts.to_vec();
        self.sink.borrow_mut().push(self.msg.clone());
        Outcome::Queued { pid: 42 }
    }
    fn abort(self: Box<Self>) {}
}

impl World {
    /// The same setup, with nothing recorded yet.
    fn fresh(&self) -> World {
        World {
            hosted: self.hosted.clone(),
            verified: self.verified.clone(),
            callouts: self.callouts.clone(),
            valid: self.valid.clone(),
            aliases: self.aliases.clone(),
            auth: self.auth,
            tls: self.tls,
            queue_code: self.queue_code,
            tls_injected: self.tls_injected,
            greylisted: self.greylisted.clone(),
            ..World::default()
        }
    }
}

impl Outside for World {
    fn recipient(&mut self, addr: &str, domain: &str) -> Result<Verdict> {
        if !self.hosted.iter().any(|d| d == domain) {
            if self.verified.iter().any(|d| d == domain) {
                return Ok(Verdict::Verify);
            }
            return Ok(Verdict::NotHosted);
        }
        Ok(if self.valid.iter().any(|v| v.eq_ignore_ascii_case(addr)) {
            Verdict::Valid
        } else {
            Verdict::Unknown
        })
    }
    fn greylist(
        &mut self,
        settings: &crate::greylist::Settings,
        ip: &str,
        sender: &str,
        rcpt: &str,
    ) -> Result<crate::greylist::Verdict> {
        let key = format!("{ip} {sender} {rcpt}");
        if self.greylisted.contains(&key) {
            return Ok(crate::greylist::Verdict::Retried);
        }
        self.greylisted.push(key);
        Ok(crate::greylist::Verdict::Defer {
            wait: settings.delay,
        })
    }

    fn verify(&mut self, addr: &str) -> Result<Answer> {
        let cached = self.asked.iter().any(|a| a == addr);
        self.asked.push(addr.to_string());
        let said = self
            .callouts
            .iter()
            .find(|(a, _)| a == addr)
            .map_or("tempfail", |(_, r)| r.as_str());
        if said == "error" {
            return Err(postern_common::Error::temp("postern-verify crashed"));
        }
        Ok(Answer {
            outcome: postern_mailstore::verifycache::Outcome::parse(said).expect("callout RESULT"),
            cached,
            text: format!("next.hop.test said: {said}"),
        })
    }
    fn alias_of(&mut self, sender: &str, login: &str) -> Result<bool> {
        Ok(self.aliases.iter().any(|(a, l)| a == sender && l == login))
    }
    fn auth_configured(&self) -> bool {
        self.auth
    }
    fn check_password(&mut self, user: &[u8], pass: &[u8]) -> Result<bool> {
        // As postern-checkpassword: the user database lower-cases the login.
        Ok(user.eq_ignore_ascii_case(b"alice@example.test") && pass == b"secret")
    }
    fn queue(&mut self, priority: bool, auth_user: Option<&str>) -> Result<Box<dyn Job>> {
        let msg = Message {
            priority,
            auth_user: auth_user.map(String::from),
            ..Message::default()
        };
        Ok(Box::new(FakeJob {
            msg,
            code: self.queue_code,
            sink: self.queued.clone(),
        }))
    }
    fn tls_configured(&self) -> bool {
        self.tls
    }
    fn tls_request(&mut self) -> Result<usize> {
        Ok(self.tls_injected)
    }
    fn tls_start(&mut self) -> Result<std::result::Result<Tls, String>> {
        Ok(Ok(Tls {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        }))
    }
    fn sleep(&mut self, pause: Duration) {
        self.slept += pause;
    }
    fn log(&mut self, line: LogLine) {
        self.logs.push(line.to_string());
    }
}

fn base_config() -> Config {
    Config {
        me: "mx.example.test".into(),
        greeting: "mx.example.test".into(),
        rcpthosts: vec!["example.test".into()],
        databytes: 10_240_000,
        badmailfrom: vec![],
        ratelimit_blocked: vec![],
        badrcptto: vec![],
        authsenders: vec![],
        timeout: Duration::from_secs(300),
        session_timeout: Some(Duration::from_secs(1800)),
        min_rate: 100,
        min_rate_window: Duration::from_secs(30),
        queue_timeout: Duration::from_secs(1200),
        auth_fail_delay: Duration::from_secs(3),
        unknown_rcpt_delay: Duration::from_secs(1),
        max_unknown_rcpts: 10,
        max_rcpts: 100,
        authcleartext: false,
        greylist: crate::greylist::Settings::off(),
        goodmailfrom: vec![],
    }
}

/// The outcome of one session run.
struct Run {
    replies: Vec<String>,
    world: World,
}

/// Input that arrives in pieces: each read returns bytes from one piece only.
struct Chunks(std::collections::VecDeque<Vec<u8>>);

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(front) = self.0.front_mut() else {
            return Ok(0);
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.0.pop_front();
        }
        Ok(n)
    }
}

fn run_session(input: &[u8], cfg: &Config, peer: &Peer, world: World, submission: bool) -> Run {
    run_chunks(vec![input.to_vec()], cfg, peer, world, submission)
}

fn run_chunks(
    input: Vec<Vec<u8>>,
    cfg: &Config,
    peer: &Peer,
    world: World,
    submission: bool,
) -> Run {
    let mut world = world;
    let mut out = Vec::new();
    let chunks = Chunks(input.into_iter().filter(|c| !c.is_empty()).collect());
    Session::new(chunks, &mut out, cfg, peer, &mut world, submission)
        .run()
        .unwrap();
    let text = String::from_utf8(out).expect("replies are ASCII");
    assert!(
        text.is_empty() || text.ends_with("\r\n"),
        "replies end in CRLF: {text:?}"
    );
    let replies = text.split_terminator("\r\n").map(String::from).collect();
    Run { replies, world }
}

fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    out.push(u8::from_str_radix(&text[i + 2..i + 4], 16).expect("\\xNN"));
                    i += 2;
                }
                c => panic!("unknown escape \\{}", c as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn run_dialog(name: &str, script: &str) {
    let mut cfg = base_config();
    let mut peer = Peer {
        ip: "192.0.2.7".into(),
        ..Peer::default()
    };
    let mut world = World::default();
    let mut submission = false;
    let mut chunks = vec![];
    let mut input = Vec::new();
    let mut expect = Vec::new();
    let mut checks = Vec::new();
    for (n, line) in script.lines().enumerate() {
        let at = format!("{name}:{}", n + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(setup) = line.strip_prefix("! ") {
            let (key, value) = setup.split_once(' ').unwrap_or((setup, ""));
            match key {
                "rcpthosts" => {
                    cfg.rcpthosts = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                "hosted" => world.hosted.push(value.into()),
                "valid" => world.valid.push(value.into()),
                "verified" => world.verified.push(value.into()),
                "callout" => {
                    let (a, r) = value.split_once(' ').expect("callout ADDR RESULT");
                    world.callouts.push((a.into(), r.into()));
                }
                "alias" => {
                    let (a, l) = value.split_once(' ').expect("alias ADDR LOGIN");
                    world.aliases.push((a.into(), l.into()));
                }
                "relayclient" => peer.relayclient = true,
                "submission" => submission = true,
                "auth" => world.auth = true,
                "tls" => world.tls = true,
                "tlsinjected" => world.tls_injected = value.parse().unwrap(),
                "databytes" => cfg.databytes = value.parse().unwrap(),
                "maxrcpts" => cfg.max_rcpts = value.parse().unwrap(),
                "maxunknown" => cfg.max_unknown_rcpts = value.parse().unwrap(),
                "ip" => peer.ip = value.into(),
                "queue" => world.queue_code = value.parse().unwrap(),
                "badmailfrom" => cfg.badmailfrom.push(value.into()),
                "badrcptto" => cfg.badrcptto.push(value.into()),
                "authsenders" => {
                    let (w, p) = value.split_once(':').unwrap();
                    cfg.authsenders.push((w.into(), p.into()));
                }
                "authcleartext" => cfg.authcleartext = true,
                "ratelimit" => {
                    let (kind, key) = value.split_once(' ').expect("ratelimit KIND KEY");
                    cfg.ratelimit_blocked.push(crate::config::Blocked {
                        kind: kind.into(),
                        key: key.into(),
                        until: u64::MAX,
                    });
                }
                _ => panic!("{at}: unknown setup {key}"),
            }
        } else if let Some(raw) = line.strip_prefix(">| ") {
            input.extend(unescape(raw));
        } else if let Some(raw) = line.strip_prefix("> ") {
            input.extend(unescape(raw));
            input.extend_from_slice(b"\r\n");
        } else if line == "~" {
            chunks.push(std::mem::take(&mut input));
        } else if line == ">" {
            input.extend_from_slice(b"\r\n");
        } else if let Some(prefix) = line.strip_prefix("< ") {
            expect.push((at, prefix.to_string()));
        } else if let Some(check) = line.strip_prefix("= ") {
            checks.push((at, check.to_string()));
        } else {
            panic!("{at}: cannot read this line: {line}");
        }
    }
    chunks.push(input);
    if !world.tls {
        // The same dialog fed one byte per read must give the same replies.
        let bytes: Vec<Vec<u8>> = chunks.concat().into_iter().map(|b| vec![b]).collect();
        let trickled = run_chunks(bytes, &cfg, &peer, world.fresh(), submission);
        let whole = run_chunks(chunks.clone(), &cfg, &peer, world.fresh(), submission);
        assert_eq!(
            trickled.replies, whole.replies,
            "{name}: byte-at-a-time input changes the replies"
        );
    }
    let run = run_chunks(chunks, &cfg, &peer, world, submission);
    for (i, (at, prefix)) in expect.iter().enumerate() {
        let got = run.replies.get(i).unwrap_or_else(|| {
            panic!(
                "{at}: expected {prefix:?}, no more replies; got {:#?}",
                run.replies
            )
        });
        assert!(
            got.starts_with(prefix.as_str()),
            "{at}: expected a reply starting {prefix:?}, got {got:?}\nall replies: {:#?}",
            run.replies
        );
    }
    let queued = run.world.queued.borrow();
    for (at, check) in checks {
        let (what, rest) = check.split_once(' ').unwrap_or((&check, ""));
        match what {
            "closed" => assert_eq!(
                run.replies.len(),
                expect.len(),
                "{at}: more replies than expected: {:#?}",
                run.replies
            ),
            "queued" => assert_eq!(
                queued.len(),
                rest.parse::<usize>().unwrap(),
                "{at}: queued messages"
            ),
            "message" => {
                let (n, text) = rest.split_once(' ').unwrap();
                let m = &queued[n.parse::<usize>().unwrap()];
                let body = String::from_utf8_lossy(&m.text);
                assert!(
                    body.contains(&*String::from_utf8_lossy(&unescape(text))),
                    "{at}: message {n} lacks {text:?}: {body:?}"
                );
            }
            "rcpts" => {
                let (n, list) = rest.split_once(' ').unwrap();
                let m = &queued[n.parse::<usize>().unwrap()];
                assert_eq!(m.rcpts.join(","), list, "{at}: recipients");
            }
            "sender" => {
                let (n, s) = rest.split_once(' ').unwrap_or((rest, ""));
                assert_eq!(
                    queued[n.parse::<usize>().unwrap()].sender,
                    s,
                    "{at}: sender"
                );
            }
            "authuser" => {
                let (n, u) = rest.split_once(' ').unwrap_or((rest, ""));
                assert_eq!(
                    queued[n.parse::<usize>().unwrap()]
                        .auth_user
                        .as_deref()
                        .unwrap_or(""),
                    u,
                    "{at}: AUTHUSER"
                );
            }
            "priority" => {
                let (n, p) = rest.split_once(' ').unwrap();
                assert_eq!(
                    queued[n.parse::<usize>().unwrap()].priority,
                    p == "1",
                    "{at}: priority"
                );
            }
            "log" => assert!(
                run.world.logs.iter().any(|l| l.contains(rest)),
                "{at}: no log line has {rest:?}: {:#?}",
                run.world.logs
            ),
            "nolog" => assert!(
                !run.world.logs.iter().any(|l| l.contains(rest)),
                "{at}: a log line has {rest:?}: {:#?}",
                run.world.logs
            ),
            "slept" => assert_eq!(
                run.world.slept,
                Duration::from_secs(rest.parse().unwrap()),
                "{at}: total pause"
            ),
            _ => panic!("{at}: unknown check {what}"),
        }
    }
}

#[test]
fn dialogs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialogs");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(
        names.len() > 10,
        "dialog files missing in {}",
        dir.display()
    );
    // `POSTERN_DIALOG=NAME` runs only the dialogs whose file name contains NAME.
    let only = std::env::var("POSTERN_DIALOG").unwrap_or_default();
    for path in names.iter().filter(|p| {
        p.extension().is_some_and(|e| e == "txt")
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&only))
    }) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        run_dialog(&name, &std::fs::read_to_string(path).unwrap());
    }
}

#[test]
fn ten_thousand_recipients_are_bounded() {
    let mut input = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n".to_vec();
    for i in 0..10_000 {
        input.extend_from_slice(format!("RCPT TO:<u{i}@example.test>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    let cfg = base_config();
    let peer = Peer {
        ip: "192.0.2.7".into(),
        ..Peer::default()
    };
    let run = run_session(&input, &cfg, &peer, World::default(), false);
    let ok = run
        .replies
        .iter()
        .filter(|r| r.starts_with("250 2.1.5"))
        .count();
    let full = run
        .replies
        .iter()
        .filter(|r| r.starts_with("452 4.5.3"))
        .count();
    assert_eq!((ok, full), (100, 9_900));
    assert_eq!(run.world.queued.borrow()[0].rcpts.len(), 100);
    assert_eq!(
        run.world
            .logs
            .iter()
            .filter(|l| l.contains("reason=toomanyrcpts"))
            .count(),
        1,
        "one log line, not 9 900"
    );
}

#[test]
fn replies_are_flushed_when_input_runs_dry() {
    // A writer that records how the replies were grouped into flushes.
    struct Flushes(Vec<Vec<u8>>, Vec<u8>);
    impl Write for Flushes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            if !self.1.is_empty() {
                self.0.push(std::mem::take(&mut self.1));
            }
            Ok(())
        }
    }
    let input = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let cfg = base_config();
    let peer = Peer::default();
    let mut world = World::default();
    let mut out = Flushes(vec![], vec![]);
    Session::new(&input[..], &mut out, &cfg, &peer, &mut world, false)
        .run()
        .unwrap();
    let groups: Vec<String> = out
        .0
        .iter()
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    // Greeting alone (nothing read yet); the pipelined group up to 354; the rest.
    assert_eq!(groups.len(), 3, "{groups:#?}");
    assert!(
        groups[1].ends_with("354 go ahead, end with <CRLF>.<CRLF>\r\n"),
        "{groups:#?}"
    );
}

#[test]
fn received_header_comes_first() {
    let input = b"HELO evil\r\nMAIL FROM:<>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\n";
    let cfg = base_config();
    let peer = Peer {
        ip: "192.0.2.7".into(),
        ..Peer::default()
    };
    let run = run_session(input, &cfg, &peer, World::default(), false);
    let m = &run.world.queued.borrow()[0];
    let text = String::from_utf8_lossy(&m.text);
    assert!(
        text.starts_with(
            "Received: from evil (unknown [192.0.2.7])\n\tby mx.example.test with SMTP;\n\t"
        ),
        "{text}"
    );
    assert!(text.ends_with("\nSubject: s\n\n.dot\n"), "{text}");
    assert_eq!(m.sender, "");
}

/// A session against a client on a fake clock: the replies, the world, and the fake
/// time at which the session ended.
fn run_timeline(input: Timeline, cfg: &Config) -> (Run, Duration) {
    let clock = input.clock();
    let peer = Peer {
        ip: "192.0.2.7".into(),
        ..Peer::default()
    };
    let mut world = World::default();
    let mut out = Vec::new();
    Session::new(input, &mut out, cfg, &peer, &mut world, false)
        .run()
        .unwrap();
    let text = String::from_utf8(out).expect("replies are ASCII");
    let replies = text.split_terminator("\r\n").map(String::from).collect();
    (Run { replies, world }, clock.get())
}

const ENVELOPE: &[u8] =
    b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_trickle_inside_a_command_is_cut_by_the_minimum_rate() {
    // The client: one byte every 2 s, under an idle timeout of 5 s.
    let cfg = Config {
        timeout: secs(5),
        ..base_config()
    };
    let input = Timeline::default()
        .then(secs(1), b"EHLO c.test\r\n")
        .trickle(secs(2), &b"NOOP ".repeat(100));
    let (run, end) = run_timeline(input, &cfg);
    assert!(run.replies[0].starts_with("220 "));
    let last = run.replies.last().unwrap();
    assert!(last.starts_with("421 4.4.2 too slow"), "{:#?}", run.replies);
    // The first byte of the line costs nothing, then 30 s of credit at 2 s a byte.
    assert!(end > secs(31) && end < secs(34), "cut at {end:?}");
    assert!(
        run.world
            .logs
            .iter()
            .any(|l| l.contains("event=reject ip=192.0.2.7 reason=slow")
                && l.contains("during=command")),
        "{:#?}",
        run.world.logs
    );
    assert!(run
        .world
        .logs
        .iter()
        .any(|l| l.contains("event=disconnect") && l.contains("reason=slow")));
}

#[test]
fn a_client_that_keeps_the_rate_is_cut_at_the_session_time_limit() {
    // A complete NOOP every 4 s never falls behind, but the session ends at 62 s.
    let cfg = Config {
        timeout: secs(5),
        session_timeout: Some(secs(62)),
        ..base_config()
    };
    let mut input = Timeline::default();
    for _ in 0..100 {
        input = input.then(secs(4), b"NOOP\r\n");
    }
    let (run, end) = run_timeline(input, &cfg);
    assert_eq!(end, secs(62));
    let noops = run.replies.iter().filter(|r| r.starts_with("250 ")).count();
    assert_eq!(noops, 15, "{:#?}", run.replies);
    assert_eq!(
        run.replies.last().unwrap(),
        "421 4.4.2 session time limit, closing connection"
    );
    assert!(run
        .world
        .logs
        .iter()
        .any(|l| l.contains("reason=sessionlimit") && l.contains("during=command")));
    // Without a session limit the same client goes on until it has sent everything.
    let cfg = Config {
        session_timeout: None,
        ..cfg
    };
    let mut input = Timeline::default();
    for _ in 0..100 {
        input = input.then(secs(4), b"NOOP\r\n");
    }
    let (run, end) = run_timeline(input, &cfg);
    assert_eq!(end, secs(400));
    assert_eq!(run.replies.len(), 101);
}

#[test]
fn data_at_a_crawl_is_cut_and_nothing_is_queued() {
    let cfg = Config {
        timeout: secs(5),
        ..base_config()
    };
    // 0.4 bytes a second, as in the issue.
    let input = Timeline::default()
        .then(secs(0), ENVELOPE)
        .then(secs(1), b"Subject: slow\r\n\r\n")
        .trickle(Duration::from_millis(2500), &b"x".repeat(1000));
    let (run, end) = run_timeline(input, &cfg);
    assert!(run.replies.iter().any(|r| r.starts_with("354")));
    assert!(
        run.replies
            .last()
            .unwrap()
            .starts_with("421 4.4.2 too slow"),
        "{:#?}",
        run.replies
    );
    assert!(end > secs(30) && end < secs(33), "cut at {end:?}");
    assert!(run.world.queued.borrow().is_empty());
    assert!(
        run.world
            .logs
            .iter()
            .any(|l| l.contains("reason=slow") && l.contains("during=\"message data\"")),
        "{:#?}",
        run.world.logs
    );
}

#[test]
fn a_client_at_one_kilobyte_a_second_is_served() {
    let cfg = Config {
        timeout: secs(5),
        session_timeout: Some(secs(600)),
        ..base_config()
    };
    // Everything, commands included, in 100-byte pieces 0.1 s apart: 120 s of DATA.
    let mut session = ENVELOPE.to_vec();
    for _ in 0..1200 {
        session.extend_from_slice(&[b'y'; 98]);
        session.extend_from_slice(b"\r\n");
    }
    session.extend_from_slice(b".\r\nQUIT\r\n");
    let mut input = Timeline::default();
    for piece in session.chunks(100) {
        input = input.then(Duration::from_millis(100), piece);
    }
    let (run, end) = run_timeline(input, &cfg);
    assert!(end > secs(120), "{end:?}");
    assert!(
        run.replies
            .iter()
            .any(|r| r.starts_with("250 2.0.0 ok: queued")),
        "{:#?}",
        run.replies
    );
    assert!(run.replies.last().unwrap().starts_with("221 "));
    assert_eq!(run.world.queued.borrow().len(), 1);
}

#[test]
fn a_pause_between_commands_costs_no_rate_credit() {
    // A client that thinks for up to 290 s between commands (under the 300 s idle
    // timeout) owes no bytes while it thinks: only the session limit bounds it.
    let cfg = base_config();
    let input = Timeline::default()
        .then(secs(0), b"EHLO c.test\r\n")
        .then(secs(290), b"NOOP\r\n")
        .then(secs(290), b"MAIL FROM:<a@c.test>\r\n")
        .then(secs(290), b"QUIT\r\n");
    let (run, end) = run_timeline(input, &cfg);
    assert_eq!(end, secs(870));
    assert!(
        run.replies.last().unwrap().starts_with("221 "),
        "{:#?}",
        run.replies
    );
    // In DATA the same pause is a stall: cut once the credit is gone.
    let input = Timeline::default()
        .then(secs(0), ENVELOPE)
        .then(secs(290), b"hi\r\n.\r\n");
    let (run, end) = run_timeline(input, &cfg);
    assert_eq!(end, secs(30));
    assert!(run
        .replies
        .last()
        .unwrap()
        .starts_with("421 4.4.2 too slow"));
}

#[test]
fn greylisting_defers_first_sight_and_spares_relay_clients_and_goodmailfrom() {
    let cfg = Config {
        greylist: crate::greylist::Settings {
            on: true,
            ..crate::greylist::Settings::off()
        },
        goodmailfrom: vec!["@partner.test".into()],
        ..base_config()
    };
    let peer = Peer {
        ip: "192.0.2.7".into(),
        ..Peer::default()
    };
    let dialogue = |from: &str| {
        format!(
            "EHLO c.test\r\nMAIL FROM:<{from}>\r\nRCPT TO:<u@example.test>\r\n\
             RCPT TO:<v@example.test>\r\nQUIT\r\n"
        )
    };
    let count =
        |run: &Run, prefix: &str| run.replies.iter().filter(|r| r.starts_with(prefix)).count();
    let first = run_session(
        dialogue("a@c.test").as_bytes(),
        &cfg,
        &peer,
        World::default(),
        false,
    );
    assert_eq!(
        count(&first, "451 4.7.1 greylisted, please try again later"),
        2,
        "{:#?}",
        first.replies
    );
    assert!(
        first.world.logs.iter().any(|l| l.contains(
            "event=greylist ip=192.0.2.7 from=<a@c.test> rcpt=<u@example.test> result=defer wait=300"
        )),
        "{:#?}",
        first.world.logs
    );
    // The retry (the state carried over) is accepted.
    let retry = run_session(
        dialogue("a@c.test").as_bytes(),
        &cfg,
        &peer,
        first.world.fresh(),
        false,
    );
    assert_eq!(count(&retry, "250 2.1.5"), 2, "{:#?}", retry.replies);
    assert!(retry
        .world
        .logs
        .iter()
        .any(|l| l.contains("result=retried")));
    // goodmailfrom senders and relay clients are never asked about.
    let good = run_session(
        dialogue("b@partner.test").as_bytes(),
        &cfg,
        &peer,
        World::default(),
        false,
    );
    assert_eq!(count(&good, "250 2.1.5"), 2, "{:#?}", good.replies);
    assert!(good.world.greylisted.is_empty());
    let relay = Peer {
        relayclient: true,
        ..peer.clone()
    };
    let inside = run_session(
        dialogue("a@c.test").as_bytes(),
        &cfg,
        &relay,
        World::default(),
        false,
    );
    assert_eq!(count(&inside, "250 2.1.5"), 2, "{:#?}", inside.replies);
    assert!(inside.world.greylisted.is_empty());
    // Off (the default): never asked.
    let off = run_session(
        dialogue("a@c.test").as_bytes(),
        &base_config(),
        &peer,
        World::default(),
        false,
    );
    assert_eq!(count(&off, "250 2.1.5"), 2);
    assert!(off.world.greylisted.is_empty());
}
