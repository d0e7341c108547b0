//! postern-inject: the sendmail face in front of the queue.

use crate::*;
use std::io::Write as _;
use std::time::Duration;

/// Run postern-inject (or a name for it) with `args`, `input` on stdin.
fn inject(
    program: &Path,
    inst: &Instance,
    args: &[&str],
    input: &[u8],
    extra_env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("POSTERN_HOME", inst.home())
        .env("LOGNAME", "cron")
        .env_remove("QMAILQUEUE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn inject_bin() -> PathBuf {
    PathBuf::from(INJECT)
}

fn header_lines(msg: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(msg);
    text.split("\n\n")
        .next()
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn dash_t_reads_recipients_removes_bcc_and_adds_missing_fields() {
    let inst = Instance::create();
    let input = b"To: Ann <ann@example.test>, bob\r\nCc: \"Carl, C\" <carl@example.test>\r\nBcc: hidden@example.test\r\nSubject: report\r\n\r\nline 1\r\nline 2\r\n";
    let out = inject(
        &inject_bin(),
        &inst,
        &[
            "-t",
            "-oi",
            "-oem",
            "-odb",
            "-f",
            "ops@example.test",
            "-F",
            "Ops Team",
        ],
        input,
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (qf, msg) = inst.only_new();
    assert_eq!(qf.envelope.sender, b"ops@example.test");
    let rcpts: Vec<String> = qf
        .envelope
        .recipients
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    assert_eq!(
        rcpts,
        [
            "ann@example.test",
            "bob@mx.example.test",
            "carl@example.test",
            "hidden@example.test"
        ]
    );
    let head = header_lines(&msg);
    assert!(head[0].starts_with("Received: (postern-queue "));
    assert!(
        !head
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
        "Bcc removed: {head:?}"
    );
    assert!(
        head.contains(&"From: \"Ops Team\" <ops@example.test>".to_string()),
        "{head:?}"
    );
    assert!(head.iter().any(|l| l.starts_with("Date: ")), "{head:?}");
    assert!(
        head.iter()
            .any(|l| l.starts_with("Message-ID: <") && l.ends_with("@mx.example.test>")),
        "{head:?}"
    );
    assert!(
        String::from_utf8_lossy(&msg).ends_with("\n\nline 1\nline 2\n"),
        "CRLF became LF"
    );
}

#[test]
fn present_fields_are_kept_and_the_default_sender_is_user_at_me() {
    let inst = Instance::create();
    let input = b"From: me@elsewhere.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@y>\n\nbody\n";
    let out = inject(&inject_bin(), &inst, &["root@example.test"], input, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (qf, msg) = inst.only_new();
    assert_eq!(qf.envelope.sender, b"cron@mx.example.test");
    assert_eq!(qf.envelope.recipients, vec![b"root@example.test".to_vec()]);
    let head = header_lines(&msg);
    assert_eq!(
        &head[1..],
        [
            "From: me@elsewhere.test",
            "Date: Mon, 1 Jan 2024 00:00:00 +0000",
            "Message-ID: <x@y>"
        ]
    );
}

#[test]
fn a_body_without_header_gets_one() {
    let inst = Instance::create();
    let out = inject(
        &inject_bin(),
        &inst,
        &["-f", "<>", "a@b.test"],
        b"disk is full\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    let (qf, msg) = inst.only_new();
    assert!(qf.envelope.sender.is_empty());
    let text = String::from_utf8_lossy(&msg);
    assert!(text.contains("\nFrom: cron@mx.example.test\n"), "{text}");
    assert!(text.ends_with("\n\ndisk is full\n"), "{text}");
}

#[test]
fn bad_usage_exits_100_with_one_line() {
    let inst = Instance::create();
    for args in [&[][..], &["-z", "a@b"], &["-t", "-f"], &["-bp"]] {
        let out = inject(&inject_bin(), &inst, args, b"x\n", &[]);
        assert_eq!(out.status.code(), Some(100), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("postern-inject: usage: "), "{err}");
    }
    // -t without any recipient in the header: permanent, nothing queued.
    let out = inject(&inject_bin(), &inst, &["-t"], b"Subject: x\n\nbody\n", &[]);
    assert_eq!(out.status.code(), Some(100));
    assert!(inst.names("new").is_empty());
}

#[test]
fn runs_qmailqueue_when_set() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let filter = crate::queue::write_filter(scratch.path());
    let out = inject(
        &inject_bin(),
        &inst,
        &["a@b.test"],
        b"Subject: x\n\nbody\n",
        &[("QMAILQUEUE", filter.to_str().unwrap())],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, msg) = inst.only_new();
    assert_eq!(header_lines(&msg)[1], "X-Filtered: yes");
}

#[test]
fn queue_failures_become_100_or_111_with_the_reason() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let perm = scratch.path().join("perm");
    postern_testkit::write_script(&perm, "#!/bin/sh\ncat >/dev/null\nexit 31\n");
    let out = inject(
        &inject_bin(),
        &inst,
        &["a@b.test"],
        b"x\n",
        &[("QMAILQUEUE", perm.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(100));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(#5.3.4)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The real postern-queue, with no queue: 61 → temporary.
    let mut cmd = Command::new(INJECT);
    cmd.arg("a@b.test")
        .env("POSTERN_HOME", scratch.path().join("absent"))
        .env_remove("QMAILQUEUE");
    let (code, _, err) = postern_testkit::run(&mut cmd, Duration::from_secs(30));
    assert_eq!(code, Some(111));
    assert!(
        err.contains("qq trouble in home directory (#4.3.0) (exit 61)"),
        "{err}"
    );
    // No queue program at all.
    let out = inject(
        &inject_bin(),
        &inst,
        &["a@b.test"],
        b"x\n",
        &[("QMAILQUEUE", "/nonexistent/qq")],
    );
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unable to run /nonexistent/qq"));
}

#[test]
fn called_as_sendmail() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let link = scratch.path().join("sendmail");
    std::os::unix::fs::symlink(INJECT, &link).unwrap();
    let out = inject(&link, &inst, &["-t", "-i"], b"To: x@y.test\n\nhi\n", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        inst.only_new().0.envelope.recipients,
        vec![b"x@y.test".to_vec()]
    );
    let out = inject(&link, &inst, &["-bp"], b"", &[]);
    assert_eq!(out.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("sendmail: usage: "));
}

#[test]
fn dash_bs_speaks_smtp_on_stdin_and_stdout() {
    let inst = Instance::create();
    let dialogue = b"EHLO app\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<ann@example.test>\r\nRCPT TO:<audit@example.test>\r\n\
DATA\r\nTo: ann@example.test\r\nBcc: audit@example.test\r\nSubject: one\r\n\r\n..dotted\r\n.\r\n\
MAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: two\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let out = inject(&inject_bin(), &inst, &["-bs"], dialogue, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        [
            "220", "250", "250", "250", "250", "250", "250", "354", "250", "250", "250", "354",
            "250", "221"
        ],
        "{replies}"
    );
    assert!(
        replies.starts_with("220 mx.example.test ESMTP\r\n"),
        "{replies}"
    );
    let ids = inst.names("new");
    assert_eq!(ids.len(), 2);
    let (first, msg1) = read_queue_file(&inst.queue().new_file(&ids[0]));
    let (second, msg2) = read_queue_file(&inst.queue().new_file(&ids[1]));
    let (first, msg1, second, msg2) = if first.envelope.sender.is_empty() {
        (second, msg2, first, msg1)
    } else {
        (first, msg1, second, msg2)
    };
    assert_eq!(first.envelope.sender, b"app@example.test");
    assert_eq!(
        first.envelope.recipients,
        vec![b"ann@example.test".to_vec(), b"audit@example.test".to_vec()]
    );
    let text1 = String::from_utf8_lossy(&msg1);
    assert!(
        !text1.contains("Bcc:") && text1.ends_with("\n\n.dotted\n"),
        "{text1}"
    );
    assert!(text1.contains("\nFrom: app@example.test\n"), "{text1}");
    assert!(second.envelope.sender.is_empty());
    assert!(String::from_utf8_lossy(&msg2).contains("\nFrom: cron@mx.example.test\n"));
}

#[test]
fn dash_bs_input_ending_inside_data_queues_nothing() {
    let inst = Instance::create();
    let dialogue = b"HELO app\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: cut\r\n\r\nhalf";
    let out = inject(&inject_bin(), &inst, &["-bs"], dialogue, &[]);
    assert_eq!(out.status.code(), Some(0));
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.trim_end().ends_with("nothing was queued"),
        "{replies}"
    );
    assert!(
        replies.lines().last().unwrap().starts_with("451 "),
        "{replies}"
    );
    assert!(inst.names("new").is_empty());
    assert!(inst.names("tmp").is_empty());
}

/// Regression (postern-inject put a `Bcc :` line in the body): a field name followed by
/// WSP before the colon (RFC 5322 §4.5.3) was taken for the start of the body, so with
/// -t the message went only to a@x.test and showed the Bcc line to everyone.
#[test]
fn bcc_with_space_before_the_colon_is_removed_and_read_with_t() {
    let inst = Instance::create();
    let input = b"To: a@x.test\nBcc : secret@y.test\nSubject: hi\n\nbody";
    let out = inject(&inject_bin(), &inst, &["-t"], input, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (qf, msg) = inst.only_new();
    assert_eq!(
        qf.envelope.recipients,
        [b"a@x.test".to_vec(), b"secret@y.test".to_vec()]
    );
    let text = String::from_utf8_lossy(&msg);
    assert!(!text.contains("secret"), "the Bcc is shown: {text}");
    let head = header_lines(&msg);
    assert!(head.contains(&"Subject: hi".to_string()), "{head:?}");
    assert!(text.ends_with("\n\nbody"), "{text}");
}
