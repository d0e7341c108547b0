//! The priority lane under a 5 000-message flood, and the fault-injection run: 1 000
//! messages injected while postern-send and its deliveries are killed with SIGKILL at
//! random, at least 30 times; afterwards every message is in a Maildir, whole.

use crate::helpers::*;
use postern_testkit::{expect_within, Daemon};
use postern_wire::queue_file::{encode_file, Envelope};
use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*), so a failing run can be repeated.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn priority_message_overtakes_a_5000_message_flood() {
    const BULK: usize = 5000;
    let inst = Instance::new(&[("bulk", 0), ("vip", 0), ("boss", 0)], "");
    inst.control("prioritysubject", "[urgent]");
    inst.control("concurrencylocal", "4");
    // The flood is written straight into new/ with the queue library (postern-queue for
    // each of 5 000 would only make the test slower, not truer).
    let pid = std::process::id();
    for n in 0..BULK {
        let env = Envelope::new(
            b"spammer@far.test".to_vec(),
            vec![b"bulk@example.test".to_vec()],
        );
        let msg = format!("Subject: bulk {n}\n\nbulk body {n}\n");
        fs::write(
            inst.queue().join(format!("new/1700000000.{n}.{pid}")),
            encode_file(&env, msg.as_bytes()),
        )
        .unwrap();
    }
    let send = inst.start_send();
    expect_within(Duration::from_secs(60), "the flood to be flowing", || {
        inst.count("bulk") >= 20
    });
    let before = inst.count("bulk");
    // Priority by the trusted caller's flag, and by postern-send's own subject rule.
    inject_with(
        &bin("postern-queue"),
        inst.home(),
        "alice@example.test",
        &["vip@example.test"],
        b"Subject: internal\n\nvip\n",
        &[("POSTERN_PRIORITY", "1")],
    );
    inst.inject(
        "someone@far.test",
        &["boss@example.test"],
        b"Subject: [URGENT] the server\n\nboss\n",
    );
    expect_within(Duration::from_secs(30), "the priority messages", || {
        inst.count("vip") == 1 && inst.count("boss") == 1
    });
    let after = inst.count("bulk");
    eprintln!("priority: bulk delivered before {before}, when both priority messages arrived {after}, of {BULK}");
    assert!(
        after - before < 200,
        "priority mail waited for {} bulk deliveries",
        after - before
    );
    assert!(after < BULK / 2);
    let news = send.lines("event=new ");
    assert!(
        news.iter()
            .filter(|l| field(l, "priority").as_deref() == Some("1"))
            .count()
            == 2,
        "{news:?}"
    );
}

#[test]
fn fault_injection_kill_9_loses_nothing() {
    const MESSAGES: usize = 1000;
    const MIN_KILLS: usize = 30;
    let users = ["u0", "u1", "u2", "u3"];
    let inst = Instance::new(&[("u0", 0), ("u1", 0), ("u2", 0), ("u3", 0)], "");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Messages of varied sizes (some over a pipe buffer), each with a unique Message-ID.
    let mut expected: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    let mut bodies = Vec::new();
    for n in 0..MESSAGES {
        let size = [10, 300, 5000, 70_000][n % 4] + rng.below(100) as usize;
        let mut m = format!("Message-ID: <fault-{n}@test>\nSubject: fault {n}\n\n").into_bytes();
        while m.len() < size {
            m.extend_from_slice(format!("line {n} {} .\n", m.len()).as_bytes());
        }
        let user = users[n % users.len()].to_string();
        expected.insert(format!("<fault-{n}@test>"), (user.clone(), m.clone()));
        bodies.push((user, m));
    }
    let home = inst.home().to_path_buf();
    let queue_prog = bin("postern-queue");
    let injector = std::thread::spawn(move || {
        for (user, m) in bodies {
            inject_with(
                &queue_prog,
                &home,
                "sender@far.test",
                &[&format!("{user}@example.test")],
                &m,
                &[],
            );
            // Paced so that the injection spans the kills (about 8 s).
            std::thread::sleep(Duration::from_millis(6));
        }
    });
    let started = Instant::now();
    let (mut kills, mut during_injection) = (0, 0);
    while kills < MIN_KILLS || !injector.is_finished() {
        if !injector.is_finished() {
            during_injection += 1;
        }
        let mut cmd = inst.command("postern-send");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut d = Daemon::spawn("postern-send", cmd);
        std::thread::sleep(Duration::from_millis(30 + rng.below(200)));
        // The whole process group: the scheduler and every delivery it is running.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(d.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        d.wait_exit(Duration::from_secs(10))
            .expect("killed postern-send reaped");
        // Its killed deliveries may still be finishing an fsync (SIGKILL waits for
        // that): they are dead already, so do not wait for the group to empty.
        std::mem::forget(d);
        kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "injection took too long"
        );
    }
    injector.join().unwrap();
    let before_final: usize = users.iter().map(|u| inst.count(u)).sum();
    let _send = inst.start_send();
    expect_within(Duration::from_secs(60), "the queue to drain", || {
        inst.queued("new") == 0 && inst.queued("mess") == 0 && inst.queued("state") == 0
    });
    // Every message in its user's Maildir at least once, byte for byte.
    let mut found: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for user in users {
        for m in inst.messages(user) {
            total += 1;
            let text = String::from_utf8_lossy(&m);
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .expect("a Message-ID")
                .to_string();
            let (want_user, want) = expected
                .get(&id)
                .unwrap_or_else(|| panic!("unexpected message {id}"));
            assert_eq!(want_user, user, "{id} in the wrong mailbox");
            assert!(
                m.ends_with(want),
                "{id} truncated or altered ({} bytes)",
                m.len()
            );
            assert!(m.starts_with(
                format!("Return-Path: <sender@far.test>\nDelivered-To: {user}@example.test\n")
                    .as_bytes()
            ));
            *found.entry(id).or_default() += 1;
        }
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !found.contains_key(*id))
        .collect();
    let duplicates: usize = found.values().map(|&c| c - 1).sum();
    eprintln!(
        "fault injection: messages={MESSAGES} kills={kills} (during injection {during_injection}) delivered_under_fire={before_final} delivered_files={total} distinct={} duplicates={duplicates} missing={}",
        found.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert!(
        during_injection >= MIN_KILLS,
        "only {during_injection} kills while injecting"
    );
    assert_eq!(found.len(), MESSAGES);
}
