//! postern-send's running postern-local workers (docs/postern-local.md, *Worker mode*),
//! in a single-user instance run by a throwaway user: deliveries reuse a few workers
//! instead of starting one program each; a worker killed while idle costs nothing; when
//! postern-send stops, its workers go too. And the worker protocol spoken by Python's
//! socket module (SOCK_SEQPACKET, SCM_RIGHTS), not by our own client.

use crate::support::{add_domain, run_with_input, user_instance, ThrowawayUser};
use postern_testkit::{
    expect_within, proc_status_field, run, tempdir, workspace_bin, Daemon, TempDir,
};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The pids of this user's postern-local processes.
fn workers(uid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let ruid = proc_status_field(pid, "Uid")
            .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok());
        if comm.trim() == "postern-local" && ruid == Some(uid) {
            out.push(pid);
        }
    }
    out
}

/// The writer pids in Maildir file names (`TIME.MusecPpidQn.HOST`).
fn writer_pids(maildir: &Path) -> Vec<String> {
    fs::read_dir(maildir.join("new"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = name.split('.').nth(1)?.split('P').nth(1)?;
            Some(p.split('Q').next()?.to_string())
        })
        .collect()
}

fn inject(user: &ThrowawayUser, home: &Path, n: usize) {
    for k in 0..n {
        run_with_input(
            "postern-inject",
            user.command(workspace_bin("postern-inject"))
                .env("POSTERN_HOME", home)
                .args(["-f", "friend@example.test", "postmaster@example.test"]),
            format!("Subject: worker test {k}\n\nbody {k}\n").as_bytes(),
        );
    }
}

/// A throwaway user with a single-user instance and the domain `example.test`.
fn user_with_instance(name: &str) -> Option<(ThrowawayUser, TempDir, PathBuf)> {
    let user = ThrowawayUser::create(name)?;
    let dir = tempdir();
    let home = user_instance(&user, dir.path(), &[]);
    add_domain(&user, &home, "example.test", "k7#Vq9!zLm2p");
    Some((user, dir, home))
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn deliveries_reuse_workers_and_workers_end_with_postern_send() {
    let Some((user, _dir, home)) = user_with_instance("postern-t-work") else {
        return;
    };
    let maildir = home.join("users/example.test/postmaster/Maildir");
    let mut send = user.command(workspace_bin("postern-send"));
    send.env("POSTERN_HOME", &home);
    let mut send = Daemon::spawn_quiet("postern-send", send);

    inject(&user, &home, 30);
    expect_within(T, "30 deliveries", || {
        fs::read_dir(maildir.join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 30
    });
    let pids: BTreeSet<String> = writer_pids(&maildir).into_iter().collect();
    assert!(
        !pids.is_empty() && pids.len() <= 10,
        "30 deliveries by at most concurrencylocal (10) workers, not one program each: {pids:?}"
    );

    // Workers killed while idle: the next deliveries start fresh ones.
    let idle = workers(user.uid);
    assert!(!idle.is_empty(), "idle workers stay for the next delivery");
    for pid in &idle {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    inject(&user, &home, 5);
    expect_within(T, "35 deliveries", || {
        fs::read_dir(maildir.join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 35
    });
    // The file is in new/ a moment before postern-send hears back and removes mess/ID.
    expect_within(T, "an empty queue", || {
        fs::read_dir(home.join("queue/mess"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    });

    // postern-send stops: its workers see EOF and exit.
    send.signal(nix::libc::SIGTERM);
    send.wait_exit(T).expect("postern-send exits");
    expect_within(T, "no worker left", || workers(user.uid).is_empty());
}

const PYTHON_CLIENT: &str = r#"
import socket, struct, subprocess, sys
home, prog, msgfile = sys.argv[1:4]
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
p = subprocess.Popen([prog, "-w"], stdin=theirs, env={"POSTERN_HOME": home, "PATH": "/usr/bin:/bin"})
theirs.close()
def ask(sender, rcpt, f):
    req = struct.pack(">I", len(sender)) + sender + rcpt
    anc = [] if f is None else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", f.fileno()))]
    ours.sendmsg([req], anc)
    return ours.recv(4096).decode()
with open(msgfile, "rb") as f:
    print(ask(b"friend@outside.test", b"postmaster@example.test", f))
    f.seek(0)
    print(ask(b"friend@outside.test", b"nobody@example.test", f))
print(ask(b"x", b"y", None))
ours.close()
print("exit", p.wait(timeout=30))
"#;

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn the_worker_protocol_from_python_and_no_worker_as_root() {
    let Some((user, dir, home)) = user_with_instance("postern-t-wproto") else {
        return;
    };
    let msg = dir.path().join("message");
    fs::write(&msg, "Subject: over a socket\n\nhello\n").unwrap();
    let mut py = user.command("/usr/bin/python3");
    py.arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(&home)
        .arg(workspace_bin("postern-local"))
        .arg(&msg);
    let (code, out, err) = run(&mut py, T);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}{err}");
    assert!(
        lines[0].starts_with("Kdelivered to postmaster@example.test: "),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "Dno mailbox here by that name: nobody@example.test (#5.1.1)"
    );
    assert!(
        lines[2].starts_with("Zpostern-local: malformed request"),
        "{out}"
    );
    assert_eq!(lines[3], "exit 0", "EOF ends the worker");
    let new = home.join("users/example.test/postmaster/Maildir/new");
    let got: Vec<_> = fs::read_dir(&new).unwrap().flatten().collect();
    assert_eq!(got.len(), 1);
    let text = fs::read_to_string(got[0].path()).unwrap();
    assert!(
        text.starts_with("Return-Path: <friend@outside.test>\nDelivered-To: postmaster@example.test\nSubject: over a socket\n"),
        "{text}"
    );

    // As root a worker would stay root after its first switch to the mailbox owner.
    let (code, _, err) = run(
        Command::new(workspace_bin("postern-local"))
            .arg("-w")
            .env("POSTERN_HOME", &home)
            .stdin(Stdio::null()),
        T,
    );
    assert_eq!(code, Some(100), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("must not run as root"), "{err}");
}
