use postern_testkit::{
    copy_executable, expect_within, require, tempdir, write_script, Daemon, TempDir,
};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// An instance with postern-scan copied into bin/ beside a postern-queue that records
/// what it is given (message, envelope) under `queued/N.{msg,env}`.
pub(crate) struct Setup {
    dir: TempDir,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        let dir = tempdir();
        let home = dir.path();
        for d in [
            "bin",
            "control",
            "queued",
            "quarantine/tmp",
            "quarantine/new",
            "quarantine/cur",
        ] {
            fs::create_dir_all(home.join(d)).unwrap();
        }
        copy_executable(
            Path::new(env!("CARGO_BIN_EXE_postern-scan")),
            &home.join("bin/postern-scan"),
        );
        write_script(
            &home.join("bin/postern-queue"),
            &format!(
                "#!/bin/sh\nn=$(ls {q} | grep -c msg)\ncat > {q}/$n.msg\ncat <&1 > {q}/$n.env\nexit 0\n",
                q = home.join("queued").display()
            ),
        );
        fs::write(home.join("control/me"), "mx.example.test\n").unwrap();
        fs::write(home.join("control/rcpthosts"), "example.test\n").unwrap();
        // postern-scan mails each refusal itself (the tests below read those mails);
        // `alerts_are_left_to_the_rate_limiters_digest` shows the default.
        fs::write(home.join("control/ratelimit"), "alertinterval 0\n").unwrap();
        // SPF/DKIM/DMARC (on by default) would ask the system's DNS about the test
        // domains: off here, tests/e2e/auth.rs turns them on with its own dnsmasq.
        fs::write(home.join("control/authchecks"), "0\n").unwrap();
        Setup { dir }
    }

    pub(crate) fn home(&self) -> &Path {
        self.dir.path()
    }

    fn control(&self, name: &str, text: &str) {
        fs::write(self.home().join("control").join(name), text).unwrap();
    }

    /// Run postern-scan on `message` with envelope bytes `env`; (exit code, stderr).
    fn scan_raw(&self, message: &[u8], env: &[u8]) -> (i32, String) {
        let msg_path = self.home().join("in.msg");
        let env_path = self.home().join("in.env");
        fs::write(&msg_path, message).unwrap();
        fs::write(&env_path, env).unwrap();
        let out = Command::new(self.home().join("bin/postern-scan"))
            .env("POSTERN_HOME", self.home())
            .env("TCPREMOTEIP", "192.0.2.7")
            .stdin(File::open(&msg_path).unwrap())
            .stdout(File::open(&env_path).unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run postern-scan as postern-smtpd does, with a pipe as fd 6 for the reason of a
    /// refusal: (exit code, what it wrote on fd 6, stderr).
    fn scan_with_reason_pipe(&self, message: &str) -> (i32, Vec<u8>, String) {
        let msg_path = self.home().join("in.msg");
        let env_path = self.home().join("in.env");
        fs::write(&msg_path, message).unwrap();
        fs::write(&env_path, b"Fsender@outside.test\0Tuser@example.test\0\0").unwrap();
        let code_path = self.home().join("exit");
        // `6>&1` while stdout is still the pipe to cat, then fd 1 becomes the envelope.
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"( "$SCAN" <"$MSG" 6>&1 1<"$ENV"; echo $? >"$CODE" ) | cat"#)
            .env("SCAN", self.home().join("bin/postern-scan"))
            .env("MSG", &msg_path)
            .env("ENV", &env_path)
            .env("CODE", &code_path)
            .env("POSTERN_HOME", self.home())
            .env("TCPREMOTEIP", "192.0.2.7")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let code = fs::read_to_string(&code_path)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (
            code,
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn scan(&self, message: &str) -> (i32, String) {
        self.scan_raw(
            message.as_bytes(),
            b"Fsender@outside.test\0Tuser@example.test\0\0",
        )
    }

    fn queued(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for n in 0.. {
            let m = self.home().join(format!("queued/{n}.msg"));
            if !m.exists() {
                break;
            }
            out.push((
                fs::read_to_string(m).unwrap(),
                fs::read(self.home().join(format!("queued/{n}.env"))).unwrap(),
            ));
        }
        out
    }

    pub(crate) fn quarantined(&self) -> Vec<PathBuf> {
        fs::read_dir(self.home().join("quarantine/new"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

fn with_attachment(name: &str, base64_body: &str) -> String {
    format!(
        "From: a@outside.test\r\nTo: user@example.test\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{base64_body}\r\n--XX--\r\n"
    )
}

fn b64(data: &[u8]) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        });
    String::from_utf8(out.unwrap().stdout).unwrap()
}

#[test]
fn a_clean_message_goes_to_the_queue_unchanged() {
    let s = Setup::new();
    let msg = "From: a@outside.test\r\nSubject: hello\r\n\r\nJust text.\r\n";
    let (code, err) = s.scan(msg);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "event=scan ip=192.0.2.7 from=<sender@outside.test> rcpts=1 result=clean engines=none"
        ),
        "{err}"
    );
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0, msg);
    assert_eq!(q[0].1, b"Fsender@outside.test\0Tuser@example.test\0\0");
    assert!(s.quarantined().is_empty());
}

/// Regression (docs/security.md, Fuzzing: postern-scan read the envelope into `String`s
/// with `from_utf8_lossy`, so every byte of an address that was not UTF-8 reached
/// postern-queue as U+FFFD, and an address near the limit grew too long): the envelope
/// is bytes now, and postern-queue gets exactly the bytes postern-scan was given.
#[test]
fn postern_scan_passes_a_non_utf8_envelope_address_on_changed() {
    let s = Setup::new();
    let longest = [vec![0xe9u8; 10], b"@".to_vec(), vec![b'a'; 990]].concat(); // 1001 bytes
    let env = [
        &b"Fj\xfcrgen@outside.test\0"[..],
        b"Tuser@example.test\0",
        b"T\xe9l\xe8ve@example.test\0",
        b"T",
        &longest,
        b"\0\0",
    ]
    .concat();
    let msg = "From: a@outside.test\r\nSubject: hello\r\n\r\nJust text.\r\n";
    let (code, err) = s.scan_raw(msg.as_bytes(), &env);
    assert_eq!(code, 0, "{err}");
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].1, env,
        "the envelope changed on its way to postern-queue"
    );
}

#[test]
fn alerts_are_left_to_the_rate_limiters_digest() {
    // The default alertinterval: a refusal in an SMTP session (TCPREMOTEIP) is only
    // logged; postern-ratelimit mails it from the log, in its digest.
    let s = Setup::new();
    fs::remove_file(s.home().join("control/ratelimit")).unwrap();
    let (code, err) = s.scan(&with_attachment("Invoice.pdf.exe", "TVqQAAMAAAAEAAAA"));
    assert_eq!(code, 31, "{err}");
    assert!(err.contains("event=quarantine ip=192.0.2.7"), "{err}");
    assert_eq!(s.quarantined().len(), 1);
    assert!(s.queued().is_empty(), "no alert of its own");
    // Not from an SMTP session (postern-inject's mail): no log the rate limiter reads, so
    // postern-scan mails it at once.
    let msg = with_attachment("Invoice.pdf.exe", "TVqQAAMAAAAEAAAA");
    let out = Command::new(s.home().join("bin/postern-scan"))
        .env("POSTERN_HOME", s.home())
        .env_remove("TCPREMOTEIP")
        .stdin(write_to(s.home(), "local.msg", msg.as_bytes()))
        .stdout(write_to(
            s.home(),
            "local.env",
            b"Fsender@example.test\0Tuser@example.test\0\0",
        ))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(31));
    let q = s.queued();
    assert_eq!(q.len(), 1, "the alert");
    assert!(q[0]
        .0
        .contains("Subject: [postern] message quarantined: attachment"));
}

/// A file with `bytes`, opened for reading.
fn write_to(dir: &Path, name: &str, bytes: &[u8]) -> File {
    fs::write(dir.join(name), bytes).unwrap();
    File::open(dir.join(name)).unwrap()
}

#[test]
fn scanned_header_when_configured() {
    let s = Setup::new();
    s.control("scanheader", "yes\n");
    let (code, _) = s.scan("Subject: x\r\n\r\ny\r\n");
    assert_eq!(code, 0);
    assert!(s.queued()[0]
        .0
        .starts_with("X-Postern-Scanned: clean; engines=none\n"));
}

#[test]
fn a_forbidden_attachment_is_refused_quarantined_and_reported() {
    let s = Setup::new();
    let (code, err) = s.scan(&with_attachment("Invoice.pdf.exe", "TVqQAAMAAAAEAAAA"));
    assert_eq!(code, 31, "{err}");
    assert!(err.contains("event=quarantine ip=192.0.2.7 from=<sender@outside.test> rcpts=1 reason=attachment rule=\".exe (filter.rules:"), "{err}");
    let copies = s.quarantined();
    assert_eq!(copies.len(), 1);
    let copy = fs::read_to_string(&copies[0]).unwrap();
    assert!(
        copy.starts_with("X-Postern-Quarantine: reason=attachment rule=.exe (filter.rules:"),
        "{copy}"
    );
    assert!(copy.contains("X-Postern-Envelope-From: <sender@outside.test>\n"));
    assert!(copy.contains("X-Postern-Envelope-To: <user@example.test>\n"));
    assert!(copy.contains("X-Postern-Client-IP: 192.0.2.7\n"));
    assert!(copy.ends_with("--XX--\r\n"), "the whole message is kept");
    // One alert, to postmaster@ the first rcpthost, from <> so it can never loop.
    let q = s.queued();
    assert_eq!(q.len(), 1, "only the alert is queued");
    assert_eq!(q[0].1, b"F\0Tpostmaster@example.test\0\0");
    assert!(
        q[0].0
            .contains("Subject: [postern] message quarantined: attachment"),
        "{}",
        q[0].0
    );
    assert!(q[0].0.contains("Invoice.pdf.exe"));
    assert!(q[0].0.contains("Copy:       quarantine/new/"));
    assert!(
        q[0].0.contains("Subject: files"),
        "headers of the refused message are in the alert"
    );
}

#[test]
fn the_reason_on_fd_6_names_the_rule_never_the_file() {
    let s = Setup::new();
    // The shipped rules: the client is told the rule's description from filter.rules.
    let (code, record, err) =
        s.scan_with_reason_pipe(&with_attachment("Invoice.pdf.exe", "TVqQAAMAAAAEAAAA"));
    assert_eq!(code, 82, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&record),
        "D5.7.1 message refused: Executable File (.exe)"
    );
    assert!(err.contains("event=quarantine"), "{err}");
    assert!(
        !err.contains("postern-scan: refused"),
        "the quarantine line is the one log line: {err}"
    );
    assert_eq!(s.quarantined().len(), 1, "kept as for exit 31");

    // A description with bytes a client must not see is cleaned and cut; the attacker's
    // file name (with a line break of its own) is never in the reply.
    s.control(
        "filter.rules",
        &format!(
            ".scr\t0\tScreen saver \x1b[31m\u{e9}t\u{e9} {}\n",
            "x".repeat(400)
        ),
    );
    let hostile = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''evil%0D%0A250%20ok.scr\r\n\r\nx\r\n--B--\r\n";
    let (code, record, err) = s.scan_with_reason_pipe(hostile);
    assert_eq!(code, 82, "{err}");
    let text = String::from_utf8_lossy(&record).into_owned();
    assert!(
        text.starts_with("D5.7.1 message refused: Screen saver [31m t xxx"),
        "{text}"
    );
    assert!(
        text.len() <= 1 + postern_common::custom_error::MAX_TEXT,
        "{text}"
    );
    assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
    assert!(!text.contains("evil") && !text.contains("250"), "{text}");

    // MIME trouble and viruses say what they are, not what the message held.
    let (code, record, _) = s.scan_with_reason_pipe(
        "Content-Type: text/plain\r\nContent-Type: application/zip\r\n\r\nx\r\n",
    );
    assert_eq!(code, 82);
    assert_eq!(
        String::from_utf8_lossy(&record),
        "D5.7.1 message refused: malformed or ambiguous MIME structure"
    );
    let scanner = s.home().join("bin/fake-av");
    write_script(
        &scanner,
        "#!/bin/sh\nif grep -q EICAR \"$1\"; then echo Fake.EICAR; exit 1; fi\nexit 0\n",
    );
    s.control("scanners", &format!("command:{}\n", scanner.display()));
    let (code, record, _) = s.scan_with_reason_pipe(&format!("Subject: x\r\n\r\n{EICAR}\r\n"));
    assert_eq!(code, 82);
    assert_eq!(
        String::from_utf8_lossy(&record),
        "D5.7.1 message refused: virus found: Fake.EICAR"
    );

    // Clean mail: nothing on fd 6, and postern-queue does not inherit it.
    write_script(
        &s.home().join("bin/postern-queue"),
        "#!/bin/sh\ncat >/dev/null\nif { true >&6; } 2>/dev/null; then echo fd6-open >&2; fi\nexit 0\n",
    );
    let (code, record, err) = s.scan_with_reason_pipe("Subject: fine\r\n\r\nhello\r\n");
    assert_eq!(code, 0, "{err}");
    assert!(record.is_empty());
    assert!(!err.contains("fd6-open"), "{err}");
}

#[test]
fn alertto_and_goodmailfrom() {
    let s = Setup::new();
    s.control("alertto", "security@example.test\n");
    s.control("goodmailfrom", "@partner.test\n");
    let env = b"Fboss@partner.test\0Tuser@example.test\0\0";
    let (code, _) = s.scan_raw(with_attachment("tool.exe", "TVqQ").as_bytes(), env);
    assert_eq!(code, 0, "goodmailfrom skips the content rules");
    let (code, _) = s.scan(&with_attachment("tool.exe", "TVqQ"));
    assert_eq!(code, 31);
    assert_eq!(
        s.queued().last().unwrap().1,
        b"F\0Tsecurity@example.test\0\0"
    );
}

#[test]
fn every_decoding_path_reaches_the_rules() {
    let s = Setup::new();
    // RFC 2231 split name, RFC 2047 encoded name, uuencode inside text, zip member.
    let split = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0=\"setup\"; filename*1=\".bat\"\r\n\r\nx\r\n--B--\r\n";
    let encoded = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?B?cnVuLnZicw==?=\"\r\n\r\nx\r\n--B--\r\n";
    let uu =
        "Content-Type: text/plain\r\n\r\nhere:\r\nbegin 644 patch.pif\r\n#9&5L\r\n`\r\nend\r\n";
    for (msg, name) in [
        (split, "setup.bat"),
        (encoded, "run.vbs"),
        (uu, "patch.pif"),
    ] {
        let (code, err) = s.scan(msg);
        assert_eq!(code, 31, "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
    }
    // A zip made by the system's python zipfile, not by us.
    let zip_path = s.home().join("a.zip");
    let ok = Command::new("python3")
        .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED); z.writestr('docs/statement.pdf.scr','MZ'*500); z.close()"])
        .arg(&zip_path)
        .status()
        .unwrap();
    assert!(ok.success());
    let (code, err) = s.scan(&with_attachment(
        "statement.zip",
        &b64(&fs::read(&zip_path).unwrap()),
    ));
    assert_eq!(code, 31, "{err}");
    assert!(
        err.contains("statement.pdf.scr (in zip:statement.zip)"),
        "{err}"
    );
}

#[test]
fn partial_and_mime_bombs_are_refused_quickly() {
    let s = Setup::new();
    let (code, err) =
        s.scan("Content-Type: message/partial; id=\"a\"; number=1; total=2\r\n\r\nx\r\n");
    assert_eq!(code, 31);
    assert!(err.contains("reason=partial"), "{err}");
    s.control("allowpartial", "1\n");
    s.control("filter.rules", ".exe\t0\tno programs\n");
    assert_eq!(
        s.scan("Content-Type: message/partial; id=\"a\"; number=1; total=2\r\n\r\nx\r\n")
            .0,
        0
    );

    let mut bomb = String::from("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for _ in 0..100_000 {
        bomb.push_str("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
    }
    bomb.push_str("--b--\r\n");
    let started = Instant::now();
    let (code, err) = s.scan(&bomb);
    assert_eq!(code, 31, "{err}");
    assert!(err.contains("reason=mime"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );

    let mut deep = String::new();
    for i in 0..500 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=d{i}\r\n\r\n--d{i}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\nx\r\n");
    let (code, err) = s.scan(&deep);
    assert_eq!(code, 31, "{err}");
    assert!(err.contains("reason=mime"), "{err}");
}

#[test]
fn bad_input_and_bad_configuration() {
    let s = Setup::new();
    assert_eq!(s.scan_raw(b"x", b"Xa\0Tb\0\0").0, 91);
    assert_eq!(s.scan_raw(b"x", b"Fa\0Tb\0").0, 54);
    assert_eq!(
        s.scan_raw(b"x", format!("Fa\0T{}\0\0", "x".repeat(1100)).as_bytes())
            .0,
        11
    );
    s.control("filter.rules", ".exe\t0\tok\n.com zero\n");
    let (code, err) = s.scan("Subject: x\r\n\r\ny\r\n");
    assert_eq!(
        code, 55,
        "a broken rules file is temporary trouble, never 'no rules'"
    );
    assert!(err.contains("control/filter.rules:2:"), "{err}");
    s.control("filter.rules.active", ".exe\t0\tok\n");
    assert_eq!(
        s.scan("Subject: x\r\n\r\ny\r\n").0,
        0,
        "the last checked rules stay in force"
    );
    s.control("scanners", "nonsense\n");
    let (code, err) = s.scan("Subject: x\r\n\r\ny\r\n");
    assert_eq!(code, 55);
    assert!(err.contains("control/scanners:1:"), "{err}");
    assert_eq!(
        s.queued().len(),
        1,
        "nothing queued on any failure, only the one accepted"
    );
}

/// A clamd on a unix socket in `dir`, with one custom signature for the EICAR string.
fn start_clamd(dir: &Path) -> Option<Daemon> {
    let clamd = require("clamd", "clamav-daemon")?;
    fs::create_dir_all(dir.join("db")).unwrap();
    let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
    fs::write(
        dir.join("db/postern-test.ndb"),
        format!("Postern-Test-EICAR:0:*:{hex}\n"),
    )
    .unwrap();
    let sock = dir.join("clamd.sock");
    fs::write(
        dir.join("clamd.conf"),
        format!(
            "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\nScanMail yes\n",
            sock.display(),
            dir.join("db").display(),
            dir.join("clamd.log").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(clamd);
    cmd.arg("-c").arg(dir.join("clamd.conf"));
    let d = Daemon::spawn_quiet("clamd", cmd);
    expect_within(Duration::from_secs(60), "clamd to listen", || sock.exists());
    Some(d)
}

#[test]
fn clamd_finds_eicar_and_a_dead_clamd_is_temporary() {
    let s = Setup::new();
    let clam_dir = s.home().join("clamd");
    let Some(clamd) = start_clamd(&clam_dir) else {
        return;
    };
    s.control(
        "scanners",
        &format!("clamd:{}\n", clam_dir.join("clamd.sock").display()),
    );
    let (code, err) = s.scan(&with_attachment("eicar.txt", &b64(EICAR.as_bytes())));
    assert_eq!(code, 31, "{err}");
    assert!(err.contains("reason=virus rule=clamd:"), "{err}");
    assert!(
        err.contains("Postern-Test-EICAR"),
        "the signature is named: {err}"
    );
    assert_eq!(s.quarantined().len(), 1);
    assert!(
        s.queued()[0].0.contains("Postern-Test-EICAR"),
        "the alert names the signature"
    );

    // goodmailfrom never skips the virus scan.
    s.control("goodmailfrom", "sender@outside.test\n");
    assert_eq!(
        s.scan(&with_attachment("eicar.txt", &b64(EICAR.as_bytes())))
            .0,
        31
    );

    let (code, err) = s.scan("Subject: clean\r\n\r\nnothing to see\r\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "engines=clamd:{}",
            clam_dir.join("clamd.sock").display()
        )),
        "{err}"
    );

    drop(clamd);
    let (code, err) = s.scan("Subject: clean\r\n\r\nnothing to see\r\n");
    assert_eq!(code, 71, "clamd down: 451, not 'clean': {err}");
    assert!(err.contains("event=scanerror"), "{err}");
    s.control("scanfailopen", "1\n");
    assert_eq!(s.scan("Subject: clean\r\n\r\nnothing to see\r\n").0, 0);
}

#[test]
fn command_scanners_follow_the_exit_code_convention() {
    let s = Setup::new();
    let scanner = s.home().join("bin/fake-av");
    write_script(&scanner, "#!/bin/sh\n[ -r \"$1\" ] || exit 2\nif grep -q EICAR \"$1\"; then echo Fake.EICAR; exit 1; fi\nexit 0\n");
    s.control("scanners", &format!("command:{}\n", scanner.display()));
    let (code, err) = s.scan(&format!("Subject: x\r\n\r\n{EICAR}\r\n"));
    assert_eq!(code, 31, "{err}");
    assert!(err.contains("Fake.EICAR"), "{err}");
    assert_eq!(s.scan("Subject: x\r\n\r\nfine\r\n").0, 0);
    write_script(&scanner, "#!/bin/sh\nexit 2\n");
    assert_eq!(s.scan("Subject: x\r\n\r\nfine\r\n").0, 71);
}
