//! postern-qstat and postern-qread: counts, listing, admin requests.

use crate::*;
use postern_queue::layout::{Action, Id};
use postern_wire::queue_file::{encode_file, Envelope};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

fn put(dir: &Path, id: &Id, env: &Envelope, msg: &[u8]) {
    fs::write(dir.join(id.to_string()), encode_file(env, msg)).unwrap();
}

fn tool(program: &str, inst: &Instance, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(program);
    cmd.args(args).env("POSTERN_HOME", inst.home());
    postern_testkit::run(&mut cmd, Duration::from_secs(120))
}

#[test]
fn qstat_counts_like_qmail_qstat() {
    let inst = Instance::create();
    let q = inst.queue();
    let e = Envelope::new("a@b", vec![b"c@d".to_vec()]);
    for i in 0..3 {
        put(
            &q.mess(),
            &Id {
                secs: 100,
                nanos: i,
                pid: 1,
            },
            &e,
            b"x\n",
        );
    }
    put(
        &q.new_dir(),
        &Id {
            secs: 200,
            nanos: 0,
            pid: 1,
        },
        &e,
        b"x\n",
    );
    let (code, out, _) = tool(QSTAT, &inst, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "messages in queue: 4\nmessages in queue but not yet preprocessed: 1\n"
    );
    assert_eq!(tool(QSTAT, &inst, &["-x"]).0, Some(100));
    let scratch = postern_testkit::tempdir();
    let mut cmd = Command::new(QSTAT);
    cmd.env("POSTERN_HOME", scratch.path());
    assert_eq!(
        postern_testkit::run(&mut cmd, Duration::from_secs(30)).0,
        Some(111)
    );
}

#[test]
fn qread_lists_messages_with_state_hold_and_requests() {
    let inst = Instance::create();
    let q = inst.queue();
    let old = Id {
        secs: 1_000,
        nanos: 1,
        pid: 7,
    };
    let fresh = Id::generate();
    let mut e1 = Envelope::new(
        "alice@example.test",
        vec![b"x@local.test".to_vec(), b"y@remote.test".to_vec()],
    );
    e1.time = Some(1_000);
    put(&q.mess(), &old, &e1, b"Subject: one\n\nbody\n");
    fs::write(
        q.state_file(&old.to_string()),
        "v=1 birth=1000 tries=2 next=5000 priority=0\n\
         rcpt=<x@local.test> kind=local status=done tries=1 last=\"delivered\"\n\
         rcpt=<y@remote.test> kind=remote status=deferred tries=2 last=\"451 try later\"\n",
    )
    .unwrap();
    fs::write(q.hold_file(&old.to_string()), "").unwrap();
    fs::write(q.ctl_file(Action::Requeue, &old.to_string()), "").unwrap();
    put(
        &q.new_dir(),
        &fresh,
        &Envelope::new("", vec![b"z@z.test".to_vec()]),
        b"12345",
    );
    // Taken over, nothing recorded yet (no state/ID): queued, every recipient todo.
    let taken = Id {
        secs: 4_000_000_000,
        nanos: 3,
        pid: 7,
    };
    put(
        &q.mess(),
        &taken,
        &Envelope::new("t@t.test", vec![b"u@u.test".to_vec(), b"v@v.test".to_vec()]),
        b"123",
    );
    let (code, out, err) = tool(QREAD, &inst, &[]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines[5].starts_with(&format!("id={taken} age=")), "{out}");
    assert!(
        lines[5].ends_with("size=3 from=<t@t.test> state=queued"),
        "{out}"
    );
    assert_eq!(lines[6], "  rcpt=<u@u.test> status=todo");
    assert_eq!(lines[7], "  rcpt=<v@v.test> status=todo");
    assert!(lines[0].starts_with(&format!("id={old} age=")), "{out}");
    assert!(
        lines[0]
            .ends_with("size=19 from=<alice@example.test> state=queued held=yes request=requeue"),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "  rcpt=<x@local.test> status=done kind=local tries=1 last=delivered"
    );
    assert_eq!(
        lines[2],
        "  rcpt=<y@remote.test> status=deferred kind=remote tries=2 last=\"451 try later\""
    );
    assert!(lines[3].starts_with(&format!("id={fresh} age=")), "{out}");
    assert!(lines[3].ends_with("size=5 from=<> state=new"), "{out}");
    assert_eq!(lines[4], "  rcpt=<z@z.test> status=new");
}

#[test]
fn qread_requests_write_ctl_files_and_pull_the_trigger() {
    let inst = Instance::create();
    let q = inst.queue();
    let id = Id::generate();
    put(
        &q.mess(),
        &id,
        &Envelope::new("a@b", vec![b"c@d".to_vec()]),
        b"x\n",
    );
    // Nobody listening: the request is written and qread says it waits.
    let (code, out, err) = tool(QREAD, &inst, &["--hold", &id.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("{id}: hold requested\n"));
    assert!(err.contains("postern-send is not running"), "{err}");
    assert_eq!(inst.names("ctl"), [format!("hold.{id}")]);
    // With a listener on the trigger: one byte arrives, no warning.
    let mut fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(q.trigger())
        .unwrap();
    for action in ["--delete", "--release", "--requeue"] {
        let (code, _, err) = tool(QREAD, &inst, &[action, &id.to_string()]);
        assert_eq!(code, Some(0));
        assert!(err.is_empty(), "{err}");
    }
    let mut buf = [0u8; 16];
    assert!(fifo.read(&mut buf).unwrap() >= 1);
    assert_eq!(inst.names("ctl").len(), 4);
    // Unknown or malformed IDs: 100, nothing written.
    let unknown = Id {
        secs: 5,
        nanos: 5,
        pid: 5,
    };
    let (code, _, err) = tool(
        QREAD,
        &inst,
        &["--delete", &id.to_string(), &unknown.to_string()],
    );
    assert_eq!(code, Some(100));
    assert_eq!(
        err,
        format!("postern-qread: fatal: no such message in the queue: {unknown}\n")
    );
    assert_eq!(
        tool(QREAD, &inst, &["--delete", "../../etc/passwd"]).0,
        Some(100)
    );
    assert_eq!(
        tool(QREAD, &inst, &["--frobnicate", &id.to_string()]).0,
        Some(100)
    );
    assert_eq!(inst.names("ctl").len(), 4);
}

#[test]
fn qstat_and_qread_handle_a_hundred_thousand_messages() {
    const N: u32 = 100_000;
    let inst = Instance::create();
    let q = inst.queue();
    let bytes = encode_file(&Envelope::new("a@b", vec![b"c@d".to_vec()]), b"x\n");
    for i in 0..N {
        let dir = if i % 10 == 0 { q.new_dir() } else { q.mess() };
        fs::write(
            dir.join(
                Id {
                    secs: 1_700_000_000,
                    nanos: i,
                    pid: 1,
                }
                .to_string(),
            ),
            &bytes,
        )
        .unwrap();
    }
    let (code, out, _) = tool(QSTAT, &inst, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!(
            "messages in queue: {N}\nmessages in queue but not yet preprocessed: {}\n",
            N / 10
        )
    );
    let (code, out, err) = tool(QREAD, &inst, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("id=")).count(),
        N as usize
    );
}
