//! `scripts/quickstart` itself, run by a normal (throwaway) user as a new user would run
//! it (with the debug programs via `QUICKSTART_BIN` instead of a release build): a
//! message sent with smtplib to its SMTP port is fetched with poplib from its POP3 port,
//! and Ctrl-C (SIGINT to the foreground process group) leaves no process behind; a port
//! another program holds stops it before it makes or starts anything.

use crate::support::ThrowawayUser;
use postern_testkit::{expect_within, run, tempdir, wait_until, Daemon};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// Processes (not zombies) owned by `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let owner = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            owner == Some(uid) && !zombie
        })
        .collect()
}

/// Three loopback ports that were free a moment ago.
fn free_ports() -> [u16; 3] {
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| listeners[i].local_addr().unwrap().port();
    [port(0), port(1), port(2)]
}

#[test]
fn quickstart_stops_with_one_line_when_a_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let [smtp, _, pop3] = free_ports();
    let dir = tempdir();
    let demo = dir.path().join("demo");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart");
    let (code, out, err) = run(
        Command::new(&script)
            .args(["--smtp-port", &smtp.to_string()])
            .args(["--submission-port", &port.to_string()])
            .args(["--pop3-port", &pop3.to_string()])
            .arg(&demo)
            .env("QUICKSTART_BIN", postern_testkit::target_dir()),
        T,
    );
    assert_eq!(code, Some(111), "{out}{err}");
    assert_eq!(
        err,
        format!(
            "quickstart: 127.0.0.1:{port} (submission) is in use by another program: \
             stop it, or choose another port with --submission-port\n"
        )
    );
    assert!(!demo.exists(), "nothing made");
    drop(taken);
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn quickstart_as_a_normal_user_sends_fetches_and_stops_cleanly() {
    let Some(user) = ThrowawayUser::create("postern-t-qs") else {
        return;
    };
    // Ports free now, given with the options (the defaults may be taken on this machine).
    let [smtp, submission, pop3] = free_ports();
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let demo = dir.path().join("demo");
    fs::create_dir(&demo).unwrap();
    std::os::unix::fs::chown(&demo, Some(user.uid), Some(user.gid)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart");

    let mut cmd = user.command(&script);
    cmd.args(["--smtp-port", &smtp.to_string()])
        .args(["--submission-port", &submission.to_string()])
        .args(["--pop3-port", &pop3.to_string()])
        .arg(&demo)
        .env("QUICKSTART_BIN", postern_testkit::target_dir());
    let mut quickstart = Daemon::spawn_quiet("scripts/quickstart", cmd);
    expect_within(T, "SMTP and POP3 to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", pop3)).is_ok()
    });
    let password = fs::read_to_string(demo.join("control/quickstart-password")).unwrap();
    let _dns = crate::support::quiet_dns(&demo);
    let password = password.trim();

    let script = format!(
        r#"
import smtplib, poplib, time
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
s.sendmail("friend@outside.test", ["postmaster@example.test"], "Subject: hello\r\nMessage-ID: <qs@outside.test>\r\n\r\nIt works.\r\n")
s.quit()
for _ in range(300):
    p = poplib.POP3("127.0.0.1", {pop3}, timeout=30)
    p.user("postmaster@example.test"); p.pass_("{password}")
    if p.stat()[0] > 0:
        print(b"\n".join(p.retr(1)[1]).decode()); p.quit(); break
    p.quit(); time.sleep(0.1)
else:
    raise SystemExit("not delivered")
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &script]), T);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("Message-ID: <qs@outside.test>") && out.contains("It works."),
        "{out}"
    );
    assert!(!processes_of(user.uid).is_empty());

    // Ctrl-C: SIGINT to the foreground process group (the script exec'd postern-svscan).
    let pgid = nix::unistd::Pid::from_raw(quickstart.pid() as i32);
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(
        quickstart.wait_exit(Duration::from_secs(30)).is_some(),
        "svscan exited on SIGINT"
    );
    assert!(
        wait_until(Duration::from_secs(30), || processes_of(user.uid)
            .is_empty()),
        "left behind: {:?}",
        processes_of(user.uid)
    );
}
