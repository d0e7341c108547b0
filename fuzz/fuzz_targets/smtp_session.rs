//! A whole postern-smtpd session — the command state machine, DATA (dot-unstuffing,
//! framing, size and hop limits), AUTH PLAIN/LOGIN (SASL), STARTTLS, relay and recipient
//! checks, recipient verification by callout — driven in-process through a fake
//! `Outside`, as the session's unit tests do.
//!
//! Input: four setup bytes, then what the client sends.
//! - byte 0, flags: 1 RELAYCLIENT, 2 submission port, 4 AUTH configured (a checkpassword
//!   that accepts alice@example.test / secret), 8 TLS configured, 16 authcleartext, 32
//!   the client is on 127.0.0.1, 64 the queue refuses (exit code = byte 1), 128 a
//!   ratelimit block on sender alice@example.test.
//! - byte 1: `databytes` (0: 10240000, else byte * 64).
//! - byte 2: `maxrcpts` (0: 100) and, halved, `maxunknown`.
//! - byte 3: read size for the second run (0: one byte at a time).
//!
//! Checks: the session ends cleanly; every reply is `NNN` + space or dash + printable
//! ASCII ending in CRLF; every log line is one line; what is queued holds no CR or NUL
//! and has recipients; without TLS the replies and the queued messages do not depend on
//! how the input is cut into reads (TLS discards pipelined input, by design).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::control::Control;
use postern_common::logline::LogLine;
use postern_common::Result;
use postern_fuzz::Trickle;
use postern_mailstore::verifycache::{self, Answer};
use postern_smtpd::config::{Blocked, Config, Peer};
use postern_smtpd::queue::{Job, Outcome};
use postern_smtpd::recipients::Verdict;
use postern_smtpd::session::{Outside, Session, Tls};
use postern_wire::qmail_queue::exit_code::smtp_reply;
use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Message {
    text: Vec<u8>,
    sender: String,
    rcpts: Vec<String>,
    priority: bool,
    auth_user: Option<String>,
}

struct Job1 {
    msg: Message,
    code: i32,
    sink: Rc<RefCell<Vec<Message>>>,
}

impl Job for Job1 {
    fn write(&mut self, text: &[u8]) -> io::Result<()> {
        self.msg.text.extend_from_slice(text);
        Ok(())
    }
    fn finish(mut self: Box<Self>, sender: &str, rcpts: &[String]) -> Outcome {
        if self.code != 0 {
            return Outcome::Refused {
                reply: smtp_reply(Some(self.code)).to_string(),
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

#[derive(Default)]
struct World {
    auth: bool,
    tls: bool,
    queue_code: i32,
    queued: Rc<RefCell<Vec<Message>>>,
    logs: usize,
}

const VALID: &[&str] = &[
    "alice@example.test",
    "bob@example.test",
    "postmaster@example.test",
    "alias@example.test",
];

impl Outside for World {
    fn recipient(&mut self, addr: &str, domain: &str) -> Result<Verdict> {
        if domain == "verify.example.test" {
            return Ok(Verdict::Verify);
        }
        if domain != "example.test" {
            return Ok(Verdict::NotHosted);
        }
        Ok(if VALID.iter().any(|v| v.eq_ignore_ascii_case(addr)) {
            Verdict::Valid
        } else {
            Verdict::Unknown
        })
    }
    /// The next hop of `verify.example.test` knows every local part but `nosuch…`,
    /// answers `later…` with 4xx, and cannot be asked about `crash…`.
    fn verify(&mut self, addr: &str) -> Result<Answer> {
        let outcome = if addr.starts_with("nosuch") {
            verifycache::Outcome::Fail
        } else if addr.starts_with("later") {
            verifycache::Outcome::TempFail
        } else if addr.starts_with("crash") {
            return Err(postern_common::Error::temp("postern-verify crashed"));
        } else {
            verifycache::Outcome::Pass
        };
        Ok(Answer {
            outcome,
            cached: false,
            text: format!("next.hop.test said: {}", outcome.as_str()),
        })
    }
    fn alias_of(&mut self, sender: &str, login: &str) -> Result<bool> {
        Ok(sender == "alias@example.test" && login == "alice@example.test")
    }
    fn auth_configured(&self) -> bool {
        self.auth
    }
    fn check_password(&mut self, user: &[u8], pass: &[u8]) -> Result<bool> {
        Ok(user.eq_ignore_ascii_case(b"alice@example.test") && pass == b"secret")
    }
    fn queue(&mut self, priority: bool, auth_user: Option<&str>) -> Result<Box<dyn Job>> {
        Ok(Box::new(Job1 {
            msg: Message {
                priority,
                auth_user: auth_user.map(String::from),
                ..Message::default()
            },
            code: self.queue_code,
            sink: self.queued.clone(),
        }))
    }
    fn tls_configured(&self) -> bool {
        self.tls
    }
    fn tls_request(&mut self) -> Result<usize> {
        Ok(0)
    }
    fn tls_start(&mut self) -> Result<std::result::Result<Tls, String>> {
        Ok(Ok(Tls {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        }))
    }
    fn sleep(&mut self, _pause: Duration) {}
    fn log(&mut self, line: LogLine) {
        let text = line.to_string();
        assert!(
            !text.contains('\n') && !text.contains('\r'),
            "log line broken in two: {text:?}"
        );
        self.logs += 1;
    }
}

struct Setup {
    cfg: Config,
    peer: Peer,
    submission: bool,
    auth: bool,
    tls: bool,
    queue_code: i32,
    read_size: usize,
}

/// The configuration postern-smtpd would load from a control directory holding `me`,
/// `rcpthosts`, `badmailfrom`, `badrcptto` and `authsenders` (loaded once, so the target
/// follows whatever `Config` grows).
fn base_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("postern-fuzz-smtpd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary control directory");
        for (name, text) in [
            ("me", "mx.example.test\n"),
            ("rcpthosts", "example.test\nverify.example.test\n"),
            ("badmailfrom", "spammer@bad.test\n@bad.test\n"),
            ("badrcptto", "blocked@example.test\n"),
            ("authsenders", "*:@example.test\n"),
        ] {
            std::fs::write(dir.join(name), text).expect("control file");
        }
        let cfg = Config::load(&Control::at(dir.clone())).expect("the control files load");
        let _ = std::fs::remove_dir_all(&dir);
        cfg
    })
}

fn setup(head: &[u8; 4]) -> Setup {
    let flags = head[0];
    let mut cfg = base_config().clone();
    cfg.databytes = match head[1] {
        0 => 10_240_000,
        n => u64::from(n) * 64,
    };
    cfg.max_unknown_rcpts = match head[2] / 2 {
        0 => 10,
        n => u64::from(n),
    };
    cfg.max_rcpts = match head[2] {
        0 => 100,
        n => u64::from(n),
    };
    cfg.authcleartext = flags & 16 != 0;
    if flags & 128 != 0 {
        cfg.ratelimit_blocked.push(Blocked {
            kind: "sender".into(),
            key: "alice@example.test".into(),
            until: u64::MAX,
        });
    }
    let peer = Peer {
        ip: if flags & 32 != 0 {
            "127.0.0.1"
        } else {
            "192.0.2.7"
        }
        .into(),
        relayclient: flags & 1 != 0,
        ..Peer::default()
    };
    Setup {
        cfg,
        peer,
        submission: flags & 2 != 0,
        auth: flags & 4 != 0,
        tls: flags & 8 != 0,
        queue_code: if flags & 64 != 0 {
            i32::from(head[1])
        } else {
            0
        },
        read_size: usize::from(head[3]),
    }
}

fn run(s: &Setup, input: impl Read) -> (Vec<u8>, Vec<Message>) {
    let mut world = World {
        auth: s.auth,
        tls: s.tls,
        queue_code: s.queue_code,
        ..World::default()
    };
    let mut out = Vec::new();
    Session::new(input, &mut out, &s.cfg, &s.peer, &mut world, s.submission)
        .run()
        .expect("the session ends cleanly");
    let queued = world.queued.borrow().clone();
    (out, queued)
}

/// The message without the date of its `Received:` field (its last line): the two runs
/// may fall in different seconds.
fn without_date(m: &Message) -> Message {
    let mut m = m.clone();
    if m.text.starts_with(b"Received:") {
        let mut end = 0;
        for line in m.text.split_inclusive(|&b| b == b'\n') {
            if end > 0 && !line.starts_with(b"\t") && !line.starts_with(b" ") {
                break;
            }
            end += line.len();
        }
        let field = &m.text[..end];
        let cut = field.iter().rposition(|&b| b == b';').unwrap_or(end);
        m.text.drain(cut..end);
    }
    m
}

fn check_replies(out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "replies end in CRLF"
    );
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line
            .strip_suffix(b"\r")
            .expect("every reply line ends in CRLF");
        assert!(line.len() >= 4, "short reply {line:?}");
        assert!(
            line[..3].iter().all(u8::is_ascii_digit),
            "reply code: {line:?}"
        );
        assert!(
            line[3] == b' ' || line[3] == b'-',
            "reply separator: {line:?}"
        );
        assert!(
            line.iter().all(|&b| (0x20..0x7f).contains(&b)),
            "unprintable reply: {line:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let s = setup(head);
    let (out, queued) = run(&s, input);
    check_replies(&out);
    for m in &queued {
        assert!(!m.rcpts.is_empty(), "queued without recipients");
        assert!(
            !m.text.contains(&b'\r') && !m.text.contains(&0),
            "CR or NUL queued"
        );
        assert!(m.rcpts.len() as u64 <= s.cfg.max_rcpts);
    }
    if !s.tls {
        let (out2, queued2) = run(
            &s,
            Trickle {
                data: input,
                size: s.read_size,
            },
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&out2),
            "the replies depend on how the input is read"
        );
        assert_eq!(
            queued.iter().map(without_date).collect::<Vec<_>>(),
            queued2.iter().map(without_date).collect::<Vec<_>>(),
            "the queued messages depend on the reads"
        );
    }
});
