//! postern-send and the rate limiter's holds (docs/postern-ratelimit.md, contracts):
//! `control/holdbulk` holds non-priority inbound mail while priority mail flows, and
//! `control/ratelimit.holdauth` holds a user's submitted mail; held mail is neither
//! delivered nor bounced nor expired, and goes once the hold is removed or runs out.

use crate::helpers::*;
use crate::remote::dead_port;
use postern_testkit::expect_within;
use std::fs;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Queue a message with `POSTERN_PRIORITY=1` (as postern-smtpd does for authenticated
/// users and relay clients).
fn inject_priority(inst: &Instance, sender: &str, rcpts: &[&str], message: &[u8]) {
    inject_with(
        &bin("postern-queue"),
        inst.home(),
        sender,
        rcpts,
        message,
        &[("POSTERN_PRIORITY", "1")],
    );
}

/// The `event=hold` lines for messages from the log.
fn holds(send: &Sender, reason: &str) -> Vec<String> {
    send.lines("event=hold ")
        .into_iter()
        .filter(|l| field(l, "reason").as_deref() == Some(reason))
        .collect()
}

/// The ID of the message whose `event=new` line has `from=<sender>`.
fn id_from(send: &Sender, sender: &str) -> String {
    let line = send.wait_log(&format!("from=<{sender}>"), T);
    field(&line, "id").unwrap()
}

fn state(inst: &Instance, id: &str) -> String {
    fs::read_to_string(inst.queue().join("state").join(id)).unwrap_or_default()
}

#[test]
fn holdbulk_holds_inbound_mail_until_removed_while_priority_mail_flows() {
    let inst = Instance::new(&[("alice", 0), ("postmaster", 0)], "");
    // An admin's file: a first line that is not a number holds while the file exists.
    inst.control("holdbulk", "held by hand during the storm");
    let send = inst.start_send();
    inst.inject(
        "spam@far.test",
        &["alice@example.test"],
        b"Subject: bulk\n\nbulk\n",
    );
    let bulk = id_from(&send, "spam@far.test");
    expect_within(T, "the hold", || holds(&send, "holdbulk").len() == 1);
    let h = &holds(&send, "holdbulk")[0];
    assert_eq!(field(h, "id").as_deref(), Some(bulk.as_str()), "{h}");
    // Priority mail flows meanwhile: the priority lane, a bounce, mail to postmaster@.
    inject_priority(
        &inst,
        "boss@example.test",
        &["alice@example.test"],
        b"Subject: internal\n\ninternal\n",
    );
    inst.inject(
        "",
        &["alice@example.test"],
        b"Subject: a bounce\n\nbounce\n",
    );
    inst.inject(
        "spam@far.test",
        &["postmaster@example.test"],
        b"Subject: complaint\n\ncomplaint\n",
    );
    expect_within(T, "priority deliveries", || {
        inst.count("alice") == 2 && inst.count("postmaster") == 1
    });
    let all: String = inst
        .messages("alice")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert!(!all.contains("Subject: bulk"), "held mail was delivered");
    assert!(
        state(&inst, &bulk).contains("holdsince="),
        "{}",
        state(&inst, &bulk)
    );
    // A reread with the hold still in force: still held, not logged again.
    send.daemon.signal(libc::SIGHUP);
    send.wait_log("event=reload", T);
    assert_eq!(inst.count("alice"), 2);
    // The file is removed: the held mail goes.
    fs::remove_file(inst.home().join("control/holdbulk")).unwrap();
    send.daemon.signal(libc::SIGHUP);
    expect_within(T, "the held message delivered", || inst.count("alice") == 3);
    expect_within(T, "an empty queue", || inst.queued("mess") == 0);
    assert_eq!(
        holds(&send, "holdbulk").len(),
        1,
        "one hold line per message"
    );
    assert!(send.lines("event=bounce ").is_empty());
}

#[test]
fn holdbulk_until_runs_out_and_the_hold_does_not_count_towards_queuelifetime() {
    let inst = Instance::new(&[("alice", 0)], "");
    // Remote deliveries fail temporarily; the queue lifetime is shorter than the hold.
    inst.control("smtproutes", &format!(":127.0.0.1:{}", dead_port()));
    inst.control("queuelifetime", "3");
    inst.control("holdbulk", &format!("{}", now() + 3600));
    let send = inst.start_send();
    inst.inject("s@far.test", &["x@far.test"], b"Subject: bulk\n\nx\n");
    let id = id_from(&send, "s@far.test");
    expect_within(T, "the hold", || holds(&send, "holdbulk").len() == 1);
    let since: u64 = {
        let st = state(&inst, &id);
        st.split("holdsince=")
            .nth(1)
            .unwrap()
            .split([' ', '\n'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Held for longer than queuelifetime (waiting on the clock, not on postern-send).
    expect_within(T, "time on hold", || now() >= since + 5);
    assert!(send.lines("event=delivery ").is_empty());
    // postern-ratelimit shortens the hold; it runs out without any further signal.
    inst.control("holdbulk", &format!("{}", now() + 1));
    send.daemon.signal(libc::SIGHUP);
    let d = send.wait_log("event=delivery ", T);
    // Not expired by the time it spent on hold: deferred, not bounced.
    assert_eq!(field(&d, "result").as_deref(), Some("defer"), "{d}");
    // The retry line comes after the state is written.
    send.wait_log("event=retry ", T);
    assert!(send.lines("event=bounce ").is_empty());
    let st = state(&inst, &id);
    assert!(!st.contains("holdsince="), "{st}");
    let held: u64 = st
        .split("held=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(held >= 5, "{st}");
}

#[test]
fn holdauth_holds_a_users_mail_until_the_entry_is_removed_or_runs_out() {
    let inst = Instance::new(&[("alice", 0), ("bob", 0)], "");
    let far = now() + 3600;
    inst.control(
        "ratelimit.holdauth",
        &format!("# Written by postern-ratelimit. USER UNTIL:\nalice@example.test {far}"),
    );
    let send = inst.start_send();
    // Authenticated mail is priority mail: holdauth holds it all the same.
    inject_priority(
        &inst,
        "Alice@Example.test",
        &["bob@example.test"],
        b"Subject: one\n\none\n",
    );
    let one = id_from(&send, "Alice@Example.test");
    expect_within(T, "the hold", || holds(&send, "holdauth").len() == 1);
    assert_eq!(
        field(&holds(&send, "holdauth")[0], "id").as_deref(),
        Some(one.as_str())
    );
    // Others' mail flows.
    inject_priority(
        &inst,
        "bob@example.test",
        &["alice@example.test"],
        b"Subject: b\n\nb\n",
    );
    expect_within(T, "bob's message", || inst.count("alice") == 1);
    assert_eq!(inst.count("bob"), 0);
    // The line is removed: released.
    inst.control("ratelimit.holdauth", "# nothing held");
    send.daemon.signal(libc::SIGHUP);
    expect_within(T, "the first message", || inst.count("bob") == 1);
    // Held again; this time the entry runs out (no signal needed after the reread).
    inst.control("ratelimit.holdauth", &format!("alice@example.test {far}"));
    send.daemon.signal(libc::SIGHUP);
    expect_within(T, "the second reload", || {
        send.lines("event=reload").len() == 2
    });
    inject_priority(
        &inst,
        "alice@example.test",
        &["bob@example.test"],
        b"Subject: two\n\ntwo\n",
    );
    expect_within(T, "the second hold", || holds(&send, "holdauth").len() == 2);
    assert_eq!(inst.count("bob"), 1);
    inst.control(
        "ratelimit.holdauth",
        &format!("alice@example.test {}", now() + 1),
    );
    send.daemon.signal(libc::SIGHUP);
    expect_within(T, "the second message", || inst.count("bob") == 2);
    expect_within(T, "an empty queue", || inst.queued("mess") == 0);
    assert!(send.lines("event=bounce ").is_empty());
}

/// Regression (holdbulk escape hatches): a forged `prioritysenders` address or
/// `prioritysubject`, a null sender, or one postmaster@ recipient among others
/// released a whole message during holdbulk. Now only `Ipriority=1` releases a message;
/// a null-sender message only with a single recipient (a real bounce); and priority
/// recipients get their copy while the others of the message stay held.
#[test]
fn holdbulk_escape_hatches_release_only_priority_recipients() {
    let inst = Instance::new(&[("alice", 0), ("postmaster", 0)], "");
    inst.control("prioritysenders", "boss@example.test");
    inst.control("prioritysubject", "urgent");
    inst.control("holdbulk", "held by hand during the storm");
    let send = inst.start_send();
    inst.inject(
        "boss@example.test",
        &["alice@example.test"],
        b"Subject: forged sender\n\n1\n",
    );
    inst.inject(
        "x@far.test",
        &["alice@example.test"],
        b"Subject: URGENT\n\n2\n",
    );
    inst.inject(
        "",
        &["alice@example.test", "postmaster@example.test"],
        b"Subject: not a bounce\n\n3\n",
    );
    inst.inject(
        "spam@far.test",
        &["postmaster@example.test", "alice@example.test"],
        b"Subject: cc postmaster\n\n4\n",
    );
    expect_within(T, "postmaster's copies", || inst.count("postmaster") == 2);
    expect_within(T, "four holds", || holds(&send, "holdbulk").len() == 4);
    assert_eq!(inst.count("alice"), 0, "held mail was delivered");
    // The hold ends: the held recipients get theirs, postmaster@ no second copy.
    fs::remove_file(inst.home().join("control/holdbulk")).unwrap();
    send.daemon.signal(libc::SIGHUP);
    expect_within(T, "the held copies delivered", || inst.count("alice") == 4);
    expect_within(T, "an empty queue", || inst.queued("mess") == 0);
    assert_eq!(inst.count("postmaster"), 2);
    assert!(send.lines("event=bounce ").is_empty());
}
