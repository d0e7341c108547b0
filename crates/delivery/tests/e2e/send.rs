//! postern-send: takeover, local and remote deliveries, retries, bounces (once, never to
//! `<>`, double bounces once), the mutex, recovery of crash states, admin requests.

use crate::helpers::*;
use crate::remote::{dead_port, sink_dumps, smtp_sink};
use postern_testkit::{expect_within, run, tempdir};
use std::fs;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn wait_empty(inst: &Instance) {
    expect_within(T, "an empty queue", || {
        inst.queued("new") == 0 && inst.queued("mess") == 0 && inst.queued("state") == 0
    });
}

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

#[test]
fn local_message_is_delivered_and_removed() {
    let inst = Instance::new(&[("alice", 0)], "");
    let send = inst.start_send();
    inst.inject(
        "bob@far.test",
        &["alice@example.test"],
        b"Message-ID: <1@t>\nSubject: hi\n\nhello\n",
    );
    expect_within(T, "delivery", || inst.count("alice") == 1);
    wait_empty(&inst);
    let m = text(&inst.messages("alice")[0]);
    assert!(
        m.starts_with("Return-Path: <bob@far.test>\nDelivered-To: alice@example.test\nReceived: "),
        "{m}"
    );
    assert!(
        m.ends_with("Message-ID: <1@t>\nSubject: hi\n\nhello\n"),
        "{m}"
    );
    let new = send.wait_log("event=new ", T);
    assert_eq!(field(&new, "from").as_deref(), Some("<bob@far.test>"));
    assert_eq!(field(&new, "rcpts").as_deref(), Some("1"));
    let d = send.wait_log("event=delivery ", T);
    assert_eq!(field(&d, "kind").as_deref(), Some("local"));
    assert_eq!(field(&d, "result").as_deref(), Some("ok"));
    assert_eq!(field(&d, "rcpt").as_deref(), Some("<alice@example.test>"));
    send.wait_log("event=done ", T);
}

#[test]
fn one_scheduler_per_queue_and_sigterm_stops() {
    let inst = Instance::new(&[("alice", 0)], "");
    let mut send = inst.start_send();
    let (code, _, err) = run(&mut inst.command("postern-send"), Duration::from_secs(10));
    assert_eq!(code, Some(111));
    assert!(
        err.contains("another postern-send is running on this queue"),
        "{err}"
    );
    let (code, _, err) = run(
        inst.command("postern-send").arg("x"),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(100), "{err}");
    send.daemon.signal(libc::SIGTERM);
    let st = send
        .daemon
        .wait_exit(T)
        .expect("postern-send exits on SIGTERM");
    assert_eq!(st.code(), Some(0));
    send.wait_log("event=stop", T);
}

#[test]
fn remote_delivery_to_smtp_sink() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    let Some((_sink, port)) = smtp_sink(dir.path(), &[]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let send = inst.start_send();
    inst.inject(
        "alice@example.test",
        &["x@far.test", "y@far.test", "z@other.test"],
        b"Subject: out\n\nbody\n",
    );
    wait_empty(&inst);
    let lines = send.lines("event=delivery ");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| field(l, "kind").as_deref() == Some("remote")
            && field(l, "result").as_deref() == Some("ok")));
    expect_within(T, "two transactions", || sink_dumps(dir.path()).len() == 2);
}

#[test]
fn remote_4xx_is_retried_and_sigalrm_retries_now() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    let Some((_sink, port)) = smtp_sink(dir.path(), &["-r", "rcpt"]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let send = inst.start_send();
    inst.inject(
        "alice@example.test",
        &["x@far.test"],
        b"Subject: soft\n\nbody\n",
    );
    let l = send.wait_log("event=delivery ", T);
    assert_eq!(field(&l, "result").as_deref(), Some("defer"), "{l}");
    assert_eq!(field(&l, "tries").as_deref(), Some("1"));
    let r = send.wait_log("event=retry ", T);
    let next: u64 = field(&r, "next").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 400 s after birth when the attempt began in the second of birth, 441 s when it
    // began a second or more later (a loaded machine).
    assert!(
        next >= now + 300 && next <= now + 441,
        "remote retry about 400 s after birth: {r}"
    );
    let state = fs::read_dir(inst.queue().join("state"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(fs::read_to_string(&state)
        .unwrap()
        .contains("status=deferred"));
    send.daemon.signal(libc::SIGALRM);
    expect_within(T, "second attempt", || {
        send.lines("event=delivery ").len() == 2
    });
    assert_eq!(
        field(&send.lines("event=delivery ")[1], "tries").as_deref(),
        Some("2")
    );
    assert_eq!(inst.count("alice"), 0, "no bounce for a temporary failure");
}

#[test]
fn dead_host_is_retried() {
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("smtproutes", &format!(":127.0.0.1:{}", dead_port()));
    let send = inst.start_send();
    inst.inject(
        "alice@example.test",
        &["x@far.test"],
        b"Subject: dead\n\nbody\n",
    );
    let l = send.wait_log("event=delivery ", T);
    assert_eq!(field(&l, "result").as_deref(), Some("defer"), "{l}");
    assert!(
        field(&l, "text").unwrap().contains("Unable to connect"),
        "{l}"
    );
    assert_eq!(inst.queued("mess"), 1);
}

#[test]
fn remote_5xx_bounces_once_with_the_reason() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    let Some((_sink, port)) = smtp_sink(dir.path(), &["-f", "rcpt"]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let send = inst.start_send();
    inst.inject(
        "alice@example.test",
        &["x@far.test", "y@far.test"],
        b"Subject: hard\nX-Orig: yes\n\nbody\n",
    );
    expect_within(T, "bounce delivered", || inst.count("alice") == 1);
    wait_empty(&inst);
    let b = text(&inst.messages("alice")[0]);
    assert!(
        b.contains("\nReturn-Path: <>\n") || b.starts_with("Return-Path: <>\n"),
        "{b}"
    );
    assert!(b.contains("Subject: failure notice\n"), "{b}");
    assert!(b.contains("Hi. This is the postern-send program at mx.example.test.\nI'm afraid I wasn't able to deliver"), "{b}");
    assert!(b.contains("\n<x@far.test>:\nConnected to 127.0.0.1 (127.0.0.1) but recipient was rejected.\nRemote host said: 5"), "{b}");
    assert!(b.contains("\n<y@far.test>:\n"), "{b}");
    assert!(
        b.contains(
            "--- Below this line is a copy of the message.\n\nReturn-Path: <alice@example.test>\n"
        ),
        "{b}"
    );
    assert!(b.contains("Subject: hard\nX-Orig: yes\n"), "{b}");
    let bounces = send.lines("event=bounce ");
    assert_eq!(bounces.len(), 1, "one bounce per message: {bounces:?}");
    assert_eq!(field(&bounces[0], "rcpts").as_deref(), Some("2"));
}

#[test]
fn failed_bounce_goes_once_to_doublebounceto_and_never_to_null() {
    // ghost@ does not exist: the bounce to it fails, and goes to the postmaster once.
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("doublebounceto", "alice@example.test");
    let send = inst.start_send();
    inst.inject(
        "ghost@example.test",
        &["nosuch@example.test"],
        b"Subject: lost\n\nbody\n",
    );
    expect_within(T, "double bounce", || inst.count("alice") == 1);
    wait_empty(&inst);
    let b = text(&inst.messages("alice")[0]);
    assert!(b.starts_with("Return-Path: <#@[]>\n"), "{b}");
    assert!(
        b.contains("I tried to deliver a bounce message to this address, but the bounce bounced!"),
        "{b}"
    );
    assert!(
        b.contains("<ghost@example.test>:\nno mailbox here by that name"),
        "{b}"
    );
    assert!(
        b.contains("--- Below this line is the original bounce."),
        "{b}"
    );
    let kinds: Vec<_> = send
        .lines("event=bounce ")
        .iter()
        .map(|l| (field(l, "kind").unwrap(), field(l, "to").unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("bounce".into(), "<ghost@example.test>".into()),
            ("double".into(), "<alice@example.test>".into())
        ]
    );
    assert!(send.lines("to=<>").is_empty());
}

#[test]
fn failed_double_bounce_is_dropped() {
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("doublebounceto", "gone@example.test");
    let send = inst.start_send();
    inst.inject(
        "",
        &["nosuch@example.test"],
        b"Subject: bounce of something\n\nbody\n",
    );
    send.wait_log("event=drop ", T);
    wait_empty(&inst);
    assert_eq!(send.lines("event=bounce ").len(), 1, "{}", send.all());
    assert_eq!(inst.count("alice"), 0);
}

#[test]
fn delivered_to_loop_bounces_to_the_sender() {
    let inst = Instance::new(&[("alice", 0), ("carol", 0)], "");
    let send = inst.start_send();
    inst.inject(
        "carol@example.test",
        &["alice@example.test"],
        b"Delivered-To: alice@example.test\nSubject: loop\n\nbody\n",
    );
    expect_within(T, "bounce", || inst.count("carol") == 1);
    assert_eq!(inst.count("alice"), 0);
    let b = text(&inst.messages("carol")[0]);
    assert!(
        b.contains("<alice@example.test>:\nthis message is looping"),
        "{b}"
    );
    send.wait_log("event=done ", T);
}

#[test]
fn over_quota_defers_and_expiry_bounces() {
    let inst = Instance::new(&[("alice", 0), ("small", 50)], "");
    inst.control("queuelifetime", "0");
    let send = inst.start_send();
    inst.inject("alice@example.test", &["small@example.test"], &[b'x'; 300]);
    expect_within(T, "bounce", || inst.count("alice") == 1);
    let d = send.wait_log("event=delivery ", T);
    assert_eq!(field(&d, "result").as_deref(), Some("fail"), "{d}");
    let b = text(&inst.messages("alice")[0]);
    assert!(b.contains("over quota (#4.2.2)\nI'm not going to try again; this message has been in the queue too long."), "{b}");
}

/// A mailbox made unsafe by a misconfiguration (here carol's Maildir is a symbolic link
/// to alice's) defers: the message stays queued, nothing is written and nothing
/// bounces, and the log line of the deferral says why, so the admin can fix it.
#[test]
fn unsafe_mailbox_defers_keeps_the_message_and_logs_why() {
    let inst = Instance::new(&[("alice", 0), ("carol", 0)], "");
    let carol = inst.maildir("carol");
    fs::remove_dir_all(&carol).unwrap();
    std::os::unix::fs::symlink(inst.maildir("alice"), &carol).unwrap();
    let send = inst.start_send();
    inst.inject(
        "alice@example.test",
        &["carol@example.test"],
        b"Subject: to carol\n\nhello\n",
    );
    let d = send.wait_log("event=delivery ", T);
    assert_eq!(field(&d, "kind").as_deref(), Some("local"), "{d}");
    assert_eq!(field(&d, "result").as_deref(), Some("defer"), "{d}");
    let why = field(&d, "text").unwrap_or_default();
    assert!(
        why.contains("is a symbolic link") && why.contains(&carol.display().to_string()),
        "{d}"
    );
    assert!(why.contains("(#4.3.5)"), "{d}");
    send.wait_log("event=retry ", T);
    assert_eq!(inst.queued("mess"), 1, "the message stays queued");
    let id = only_id(&inst, "mess");
    let st = fs::read_to_string(inst.queue().join("state").join(&id)).unwrap();
    assert!(st.contains("status=deferred"), "{st}");
    assert!(!st.contains("bounced=1"), "{st}");
    // No bounce to alice, and nothing written through the link.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inst.count("alice"), 0, "{}", send.all());
    assert!(send.lines("event=bounce").is_empty(), "{}", send.all());
    assert!(send.lines("result=fail").is_empty(), "{}", send.all());
}

#[test]
fn admin_requests_hold_release_requeue_delete() {
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("smtproutes", &format!(":127.0.0.1:{}", dead_port()));
    let send = inst.start_send();
    inst.inject(
        "alice@example.test",
        &["x@far.test"],
        b"Subject: held\n\nbody\n",
    );
    send.wait_log("event=retry ", T);
    let id = fs::read_dir(inst.queue().join("mess"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let q = postern_queue::layout::Queue::for_home(inst.home());
    let request = |action: &str| {
        fs::write(inst.queue().join("ctl").join(format!("{action}.{id}")), b"").unwrap();
        postern_queue::layout::pull_trigger(&q);
    };
    request("hold");
    expect_within(T, "hold", || inst.queue().join("hold").join(&id).exists());
    request("release");
    expect_within(T, "release and retry", || {
        send.lines("event=delivery ").len() == 2
    });
    request("requeue");
    expect_within(T, "requeue", || send.lines("event=delivery ").len() == 3);
    request("delete");
    wait_empty(&inst);
    // The queue empties a moment before the log line reaches our reader.
    expect_within(T, "the delete in the log", || {
        send.lines("event=admin ").len() == 4
    });
    let admin: Vec<_> = send
        .lines("event=admin ")
        .iter()
        .map(|l| field(l, "action").unwrap())
        .collect();
    assert_eq!(admin, vec!["hold", "release", "requeue", "delete"]);
    assert!(send.lines("event=bounce ").is_empty());
    assert_eq!(inst.count("alice"), 0);
    assert!(fs::read_dir(inst.queue().join("ctl"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn crash_states_are_recovered_at_start() {
    use postern_wire::queue_file::{encode_file, Envelope};
    let inst = Instance::new(&[("alice", 0)], "");
    let q = inst.queue();
    let msg = |n: u32| format!("Message-ID: <{n}@t>\n\nbody {n}\n").into_bytes();
    let env = Envelope::new(b"s@far.test".to_vec(), vec![b"alice@example.test".to_vec()]);
    // S1: committed only.
    fs::write(q.join("new/1700000000.1.1"), encode_file(&env, &msg(1))).unwrap();
    // Legacy S2 (an older postern-send wrote the state first): state, rename pending.
    fs::write(q.join("new/1700000000.2.1"), encode_file(&env, &msg(2))).unwrap();
    fs::write(
        q.join("state/1700000000.2.1"),
        "v=1 birth=1700000000 tries=0 next=0 priority=0\nrcpt=<alice@example.test> kind=local status=todo tries=0 last=\"\"\n",
    )
    .unwrap();
    // S3: being delivered, one recipient already done.
    let env2 = Envelope::new(
        b"s@far.test".to_vec(),
        vec![
            b"alice@example.test".to_vec(),
            b"alice-x@example.test".to_vec(),
        ],
    );
    fs::write(q.join("mess/1700000000.3.1"), encode_file(&env2, &msg(3))).unwrap();
    fs::write(
        q.join("state/1700000000.3.1"),
        "v=1 birth=1700000000 tries=1 next=0 priority=0\nrcpt=<alice@example.test> kind=local status=done tries=1 last=ok\nrcpt=<alice-x@example.test> kind=local status=deferred tries=1 last=x\n",
    )
    .unwrap();
    // S2: taken over, nothing recorded yet (no state file): delivered as a fresh
    // takeover.
    fs::write(q.join("mess/1700000000.4.1"), encode_file(&env, &msg(4))).unwrap();
    // S4: finished (mess/ID unlinked first), state and hold marker left: removed.
    fs::write(
        q.join("state/1700000000.6.1"),
        "v=1 birth=1700000000 tries=1 next=0 priority=0\nrcpt=<alice@example.test> kind=local status=deferred tries=1 last=x\n",
    )
    .unwrap();
    fs::write(q.join("hold/1700000000.6.1"), "").unwrap();
    // A half-written state temp file; a stale tmp file.
    fs::write(q.join("state/.1700000000.5.1.tmp"), "v=1 bi").unwrap();
    fs::write(q.join("tmp/1600000000.1.1"), "partial").unwrap();
    let old = std::process::Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(q.join("tmp/1600000000.1.1"))
        .status()
        .unwrap();
    assert!(old.success());
    let send = inst.start_send();
    expect_within(T, "four deliveries", || inst.count("alice") == 4);
    wait_empty(&inst);
    let all: String = inst.messages("alice").iter().map(|m| text(m)).collect();
    for n in [1, 2, 4] {
        assert_eq!(all.matches(&format!("body {n}\n")).count(), 1, "{all}");
    }
    assert!(
        all.contains("Delivered-To: alice-x@example.test\nMessage-ID: <3@t>"),
        "only the deferred recipient again"
    );
    assert!(!q.join("state/1700000000.6.1").exists(), "S4 state removed");
    assert!(
        !q.join("hold/1700000000.6.1").exists(),
        "S4 hold marker removed"
    );
    assert!(!q.join("tmp/1600000000.1.1").exists());
    assert!(!q.join("state/.1700000000.5.1.tmp").exists());
    assert_eq!(
        send.lines("event=new ").len(),
        1,
        "only the S1 message is new"
    );
}

#[test]
fn sighup_rereads_control_files_and_keeps_the_old_on_error() {
    let inst = Instance::new(&[("alice", 0)], "");
    let send = inst.start_send();
    inst.control("concurrencylocal", "3");
    send.daemon.signal(libc::SIGHUP);
    send.wait_log("event=reload", T);
    inst.control("concurrencylocal", "lots");
    send.daemon.signal(libc::SIGHUP);
    let e = send.wait_log("event=error ", T);
    assert!(
        e.contains("control/concurrencylocal:1: not a whole number: lots"),
        "{e}"
    );
    // Still delivering with the old settings.
    inst.inject(
        "bob@far.test",
        &["alice@example.test"],
        b"Subject: after hup\n\nx\n",
    );
    expect_within(T, "delivery", || inst.count("alice") == 1);
}

#[test]
fn local_and_remote_channels_retry_independently() {
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("smtproutes", &format!(":127.0.0.1:{}", dead_port()));
    let send = inst.start_send();
    inst.inject(
        "bob@far.test",
        &["alice@example.test", "x@far.test", "y@far.test"],
        b"Subject: mixed\n\nx\n",
    );
    expect_within(T, "local delivery", || inst.count("alice") == 1);
    let r = send.wait_log("event=retry ", T);
    let next: u64 = field(&r, "next").unwrap().parse().unwrap();
    let birth = fs::read_dir(inst.queue().join("state"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let st = fs::read_to_string(&birth).unwrap();
    assert!(
        st.contains("rcpt=<alice@example.test> kind=local status=done"),
        "{st}"
    );
    assert!(
        st.contains("rcpt=<x@far.test> kind=remote status=deferred"),
        "{st}"
    );
    let b: u64 = st
        .split("birth=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The remote schedule: (isqrt(now - birth) + 20)^2 after birth, now within a second.
    assert!(next == b + 400 || next == b + 441, "{next} vs birth {b}");
    // One postern-remote run for both far.test recipients.
    let remote: Vec<_> = send.lines("kind=remote");
    assert_eq!(remote.len(), 2);
    send.daemon.signal(libc::SIGALRM);
    expect_within(T, "remote retried", || send.lines("kind=remote").len() == 4);
    assert_eq!(
        send.lines("kind=local").len(),
        1,
        "the done local recipient is not retried"
    );
    assert_eq!(inst.count("alice"), 1);
}

/// The only message ID in a queue directory.
fn only_id(inst: &Instance, dir: &str) -> String {
    let ids: Vec<String> = fs::read_dir(inst.queue().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 1, "{dir}: {ids:?}");
    ids.into_iter().next().unwrap()
}

/// Regression (admin requests for messages still in new/ were dropped): postern-qread
/// accepts an ID still in new/; postern-send keeps the request until it has taken the
/// message over, then carries it out.
#[test]
fn hold_request_written_before_the_takeover_is_honoured() {
    let inst = Instance::new(&[("alice", 0)], "");
    // A recipients.cdb that cannot be read: the takeover fails (temporarily), so the
    // message stays in new/ for as long as we like.
    let db = inst.home().join("control/recipients.cdb");
    fs::remove_file(&db).unwrap();
    fs::create_dir(&db).unwrap();
    let send = inst.start_send();
    inst.inject(
        "bob@far.test",
        &["alice@example.test"],
        b"Subject: hold me\n\nx\n",
    );
    expect_within(T, "a failed takeover", || {
        !send.lines("recipients.cdb").is_empty()
    });
    let id = only_id(&inst, "new");
    let q = postern_queue::layout::Queue::for_home(inst.home());
    fs::write(inst.queue().join("ctl").join(format!("hold.{id}")), b"").unwrap();
    let errors = send.lines("event=error ").len();
    postern_queue::layout::pull_trigger(&q);
    // A scan after the request: it must wait, not be dropped as "no such message".
    expect_within(T, "another scan", || {
        send.lines("event=error ").len() > errors
    });
    assert!(send.lines("event=admin ").is_empty(), "{}", send.all());
    assert!(inst.queue().join("ctl").join(format!("hold.{id}")).exists());
    // The database is back: the takeover, then the hold.
    fs::remove_dir(&db).unwrap();
    postern_mailstore::compile_all(inst.home()).unwrap();
    postern_queue::layout::pull_trigger(&q);
    let a = send.wait_log("event=admin ", T);
    assert_eq!(field(&a, "action").as_deref(), Some("hold"), "{a}");
    assert_eq!(field(&a, "id").as_deref(), Some(id.as_str()), "{a}");
    assert_eq!(field(&a, "result"), None, "{a}");
    assert!(inst.queue().join("hold").join(&id).exists());
    assert!(inst.queue().join("mess").join(&id).exists());
    assert!(!inst.queue().join("ctl").join(format!("hold.{id}")).exists());
    assert!(
        send.lines("event=delivery ").is_empty(),
        "held: not delivered"
    );
    // Released: delivered.
    fs::write(inst.queue().join("ctl").join(format!("release.{id}")), b"").unwrap();
    postern_queue::layout::pull_trigger(&q);
    expect_within(T, "delivery after release", || inst.count("alice") == 1);
    wait_empty(&inst);
}

/// Regression (the new/ → mess/ rename could replace a message): the takeover renames
/// with RENAME_NOREPLACE, so a file in new/ whose ID is already in mess/ is left alone
/// (and logged), and the message in mess/ is delivered as it is.
#[test]
fn takeover_never_replaces_a_message_already_in_mess() {
    use postern_wire::queue_file::{encode_file, Envelope};
    let inst = Instance::new(&[("alice", 0)], "");
    let q = inst.queue();
    let id = "1700000000.000000001.1";
    let env = Envelope::new(b"s@far.test".to_vec(), vec![b"alice@example.test".to_vec()]);
    fs::write(
        q.join("mess").join(id),
        encode_file(&env, b"Subject: original\n\nthe original\n"),
    )
    .unwrap();
    fs::write(
        q.join("state").join(id),
        "v=1 birth=1700000000 tries=0 next=0 priority=0\nrcpt=<alice@example.test> kind=local status=todo tries=0 last=\"\"\n",
    )
    .unwrap();
    fs::write(
        q.join("new").join(id),
        encode_file(&env, b"Subject: intruder\n\nthe intruder\n"),
    )
    .unwrap();
    let send = inst.start_send();
    expect_within(T, "delivery", || inst.count("alice") == 1);
    let c = send.wait_log("event=corrupt ", T);
    assert_eq!(field(&c, "id").as_deref(), Some(id), "{c}");
    send.wait_log("event=done ", T);
    let m = text(&inst.messages("alice")[0]);
    assert!(m.contains("the original"), "{m}");
    let left = fs::read(q.join("new").join(id)).unwrap();
    assert!(text(&left).contains("the intruder"), "left alone in new/");
    assert!(!q.join("mess").join(id).exists());
    assert_eq!(inst.count("alice"), 1);
}

/// Regression (duplicate bounce after a crash): the bounce was queued, then the message
/// removed; a crash (or a failed removal) in between bounced again at the next pass.
/// "Bounced" is now recorded in the state before the bounce is queued: a finished
/// message whose state says so is only removed.
#[test]
fn duplicate_bounce_after_a_crash_between_bounce_and_removal() {
    use postern_wire::queue_file::{encode_file, Envelope};
    let inst = Instance::new(&[("alice", 0)], "");
    let q = inst.queue();
    let env = Envelope::new(b"alice@example.test".to_vec(), vec![b"x@far.test".to_vec()]);
    let failed = |bounced: &str| {
        format!(
            "v=1 birth=1700000000 tries=1 next=0 priority=0 held=0 from=<alice@example.test>{bounced}\n\
             rcpt=<x@far.test> kind=remote status=failed tries=1 last=\"Sorry, no.\"\n"
        )
    };
    // The crash window: the bounce was queued (and recorded), the message not removed.
    fs::write(
        q.join("mess/1700000000.1.1"),
        encode_file(&env, b"Subject: one\n\n1\n"),
    )
    .unwrap();
    fs::write(q.join("state/1700000000.1.1"), failed(" bounced=1")).unwrap();
    // The same failure not bounced yet: bounced once.
    fs::write(
        q.join("mess/1700000000.2.1"),
        encode_file(&env, b"Subject: two\n\n2\n"),
    )
    .unwrap();
    fs::write(q.join("state/1700000000.2.1"), failed("")).unwrap();
    let send = inst.start_send();
    expect_within(T, "a bounce delivered", || inst.count("alice") >= 1);
    wait_empty(&inst);
    let bounces = send.lines("event=bounce ");
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    assert_eq!(field(&bounces[0], "id").as_deref(), Some("1700000000.2.1"));
    assert!(text(&inst.messages("alice")[0]).contains("Subject: two\n"));
    let done: Vec<String> = send
        .lines("event=done ")
        .iter()
        .filter_map(|l| field(l, "id"))
        .collect();
    assert!(done.contains(&"1700000000.1.1".to_string()), "{done:?}");
    assert_eq!(inst.count("alice"), 1, "no second bounce");
}

/// New contract (no state file on the fast path): a message whose recipients all succeed
/// at the first attempt never gets a `state/ID` — neither at the takeover nor after the
/// delivery. Every entry made in state/ is watched with inotify.
#[test]
fn clean_single_recipient_message_never_writes_a_state_file() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inst = Instance::new(&[("alice", 0)], "");
    let watch = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    watch
        .add_watch(
            &inst.queue().join("state"),
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .unwrap();
    let events = || match watch.read_events() {
        Ok(ev) => ev
            .into_iter()
            .map(|e| format!("{:?}", e.name))
            .collect::<Vec<_>>(),
        Err(nix::errno::Errno::EAGAIN) => Vec::new(),
        Err(e) => panic!("inotify: {e}"),
    };
    let send = inst.start_send();
    for n in 1..=5 {
        inst.inject(
            "bob@far.test",
            &["alice@example.test"],
            format!("Subject: clean {n}\n\nx\n").as_bytes(),
        );
        expect_within(T, "delivery", || inst.count("alice") == n);
        wait_empty(&inst);
    }
    expect_within(T, "five done", || send.lines("event=done ").len() == 5);
    assert_eq!(events(), Vec::<String>::new(), "a state file was written");
    // The watch works: an entry made now is seen.
    fs::write(inst.queue().join("state/probe"), "").unwrap();
    assert_eq!(events().len(), 1);
    fs::remove_file(inst.queue().join("state/probe")).unwrap();
}

/// New contract: a partial result of a multi-recipient message is recorded. One
/// recipient done, one deferred: the state survives a restart (SIGKILL), and after it
/// only the deferred recipient is tried again.
#[test]
fn partial_result_survives_a_restart_and_done_is_not_redelivered() {
    let inst = Instance::new(&[("alice", 0)], "");
    inst.control("smtproutes", &format!(":127.0.0.1:{}", dead_port()));
    let mut send = inst.start_send();
    inst.inject(
        "bob@far.test",
        &["alice@example.test", "x@far.test"],
        b"Subject: partial\n\nx\n",
    );
    expect_within(T, "local delivery", || inst.count("alice") == 1);
    send.wait_log("event=retry ", T);
    let id = only_id(&inst, "state");
    assert!(inst.queue().join("mess").join(&id).exists());
    let st = fs::read_to_string(inst.queue().join("state").join(&id)).unwrap();
    assert!(
        st.contains("rcpt=<alice@example.test> kind=local status=done"),
        "{st}"
    );
    assert!(
        st.contains("rcpt=<x@far.test> kind=remote status=deferred"),
        "{st}"
    );
    send.daemon.signal(libc::SIGKILL);
    send.daemon.wait_exit(T).expect("postern-send killed");
    let send = inst.start_send();
    send.wait_log("event=start ", T);
    send.daemon.signal(libc::SIGALRM);
    expect_within(T, "remote retried", || {
        send.lines("kind=remote result=defer").len() == 1
    });
    assert!(send.lines("kind=local").is_empty(), "{}", send.all());
    assert_eq!(
        inst.count("alice"),
        1,
        "the done recipient is not redelivered"
    );
    let st = fs::read_to_string(inst.queue().join("state").join(&id)).unwrap();
    assert!(
        st.contains("rcpt=<alice@example.test> kind=local status=done"),
        "{st}"
    );
}
