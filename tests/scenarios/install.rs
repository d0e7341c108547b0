//! The system install (docs/install.md): `scripts/install` as root into a temporary
//! `--home` with a throwaway set of accounts (`--prefix-accounts`), the instance's own
//! `postern-svscan` as root (as `/service` would be), then:
//!
//! - every daemon runs under its own account, found by walking `/proc` while an SMTP
//!   and a POP3 session are open: nothing runs as root but svscan, supervise and the
//!   tcpserver listeners;
//! - the chain works: smtplib from 127.0.0.200 with STARTTLS to a hosted mailbox,
//!   delivered into a file owned by the mail account; an AUTH-ed submission; poplib
//!   with STLS fetches both;
//! - `scripts/uninstall` removes the accounts, the programs and the service
//!   directories, and keeps users/ and queue/.

use crate::support::{free_port, run_with_input};
use postern_testkit::{expect_within, require, run, target_dir, tempdir, Daemon};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "Xq7!mailbox-pw-2";
const ROLES: &[&str] = &["net", "queue", "send", "remote", "mail", "log", "ratelimit"];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Runs scripts/uninstall (and removes any account it left) when the test ends, even
/// when it fails half-way.
struct Installed {
    home: PathBuf,
    prefix: String,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.home.join("control").is_dir() {
            let _ = Command::new(script("uninstall"))
                .arg("--home")
                .arg(&self.home)
                .output();
        }
        for role in ROLES {
            let name = format!("{}-{role}", self.prefix);
            let _ = Command::new("userdel").arg(&name).output();
            let _ = Command::new("groupdel").arg(&name).output();
        }
    }
}

fn uid_of(name: &str) -> u32 {
    postern_common::privilege::lookup_account(name)
        .unwrap_or_else(|e| panic!("{name}: {}", e.msg))
        .uid
}

fn gid_of(name: &str) -> u32 {
    postern_common::privilege::lookup_account(name)
        .unwrap_or_else(|e| panic!("{name}: {}", e.msg))
        .gid
}

/// A process's four ids (real, effective, saved, filesystem) of `Uid` or `Gid`, and its
/// supplementary groups, from /proc.
fn ids(pid: u32, field: &str) -> Vec<u32> {
    postern_testkit::proc_status_field(pid, field)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|u| u.parse().ok())
        .collect()
}

/// Every process running a program of `bin` (or of `bin/../libexec/*`, where the setuid
/// delivery and password programs live): pid → (program name, real uid, effective
/// uid, parent pid).
fn processes(bin: &Path) -> BTreeMap<u32, (String, u32, u32, u32)> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
            continue;
        };
        let libexec = bin.parent().unwrap().join("libexec");
        if exe.parent() != Some(bin) && exe.parent().and_then(Path::parent) != Some(&libexec) {
            continue;
        }
        let name = exe.file_name().unwrap().to_string_lossy().to_string();
        let Some(uids) = postern_testkit::proc_status_field(pid, "Uid") else {
            continue;
        };
        let ppid = postern_testkit::proc_status_field(pid, "PPid")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let ids: Vec<u32> = uids
            .split_whitespace()
            .filter_map(|u| u.parse().ok())
            .collect();
        out.insert(pid, (name, ids[0], ids[1], ppid));
    }
    out
}

fn python(code: &str) -> String {
    let (status, out, err) = run(Command::new("python3").args(["-c", code]), T);
    assert_eq!(status, Some(0), "python: {err}\n{out}");
    out
}

#[ignore = "needs root: scripts/install makes system accounts"]
#[test]
fn install_runs_every_daemon_under_its_own_account_and_the_chain_works() {
    postern_testkit::require_root("scripts/install makes system accounts");
    let Some(_) = require("openssl", "openssl") else {
        return;
    };
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("inst");
    let prefix = format!("pti{}", std::process::id() % 100_000);
    let guard = Installed {
        home: home.clone(),
        prefix: prefix.clone(),
    };
    let (smtp, submission, pop3) = (free_port(), free_port(), free_port());

    // Install, from the debug binaries the workspace built (no release build here).
    let mut install = Command::new(script("install"));
    install
        .arg("--home")
        .arg(&home)
        .args(["--prefix-accounts", &prefix, "--bin"])
        .arg(target_dir())
        .args(["--domain", "example.test", "--listen", "127.0.0.1"])
        .args(["--smtp-port", &smtp.to_string()])
        .args(["--submission-port", &submission.to_string()])
        .args(["--pop3-port", &pop3.to_string()]);
    let (code, out, err) = run(&mut install, T);
    assert_eq!(code, Some(0), "install: {err}\n{out}");
    assert!(
        out.contains(&format!(
            "ln -s {}/service/smtpd /service/smtpd",
            home.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("ExecStart="),
        "a systemd unit is printed: {out}"
    );
    let acct = |role: &str| format!("{prefix}-{role}");
    let uid = |role: &str| uid_of(&acct(role));
    let bin = home.join("bin");

    // The modes that carry the design.
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    let owner = |p: &Path| fs::symlink_metadata(p).unwrap().uid();
    assert_eq!(mode(&bin.join("postern-queue")), 0o4711);
    assert_eq!(owner(&bin.join("postern-queue")), uid("queue"));
    // Setuid and setgid to their own account, in a directory only their caller's group
    // may enter; bin/ has links to them.
    let group = |p: &Path| fs::symlink_metadata(p).unwrap().gid();
    let gid = |role: &str| gid_of(&acct(role));
    let libexec = home.join("libexec");
    for (dir, caller) in [("send", "send"), ("net", "net")] {
        let d = libexec.join(dir);
        assert_eq!(
            (owner(&d), group(&d), mode(&d)),
            (0, gid(caller), 0o750),
            "{dir}"
        );
    }
    for (path, role) in [
        ("net/postern-checkpassword", "mail"),
        ("send/postern-local", "mail"),
        ("send/postern-remote", "remote"),
    ] {
        let p = libexec.join(path);
        assert_eq!(
            (owner(&p), group(&p), mode(&p)),
            (uid(role), gid(role), 0o6755),
            "{path}"
        );
        let name = p.file_name().unwrap();
        assert_eq!(
            fs::read_link(bin.join(name)).unwrap(),
            Path::new("..").join("libexec").join(path)
        );
    }
    assert!(
        !fs::symlink_metadata(bin.join("postern-smtpd"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "programs are copies"
    );
    assert_eq!(owner(&home.join("queue")), uid("queue"));
    assert_eq!(owner(&home.join("users")), uid("mail"));
    assert_eq!(mode(&home.join("users")), 0o700);
    // Recipient verification's answers and probe locks: the network account's alone
    // (postern-verify runs as it, started by smtpd).
    let verify = home.join("run/verify");
    assert_eq!(
        (owner(&verify), group(&verify), mode(&verify)),
        (uid("net"), gid("net"), 0o700)
    );
    // So are the clients postern-pregreet remembers and smtpd's greylist.
    for dir in ["run/pregreet", "run/greylist"] {
        let dir = home.join(dir);
        assert_eq!(
            (owner(&dir), group(&dir), mode(&dir)),
            (uid("net"), gid("net"), 0o700),
            "{}",
            dir.display()
        );
    }

    // A domain with its postmaster (postern-user as root gives it to the mail account),
    // and a certificate whose key only root can read.
    run_with_input(
        "postern-user domain add",
        Command::new(bin.join("postern-user"))
            .env("POSTERN_HOME", &home)
            .args(["domain", "add", "example.test"]),
        format!("{PASSWORD}\n").as_bytes(),
    );
    let cdb = home.join("control/users.cdb");
    assert_eq!((owner(&cdb), mode(&cdb)), (uid("mail"), 0o600));
    let _dns = crate::support::quiet_dns(&home);
    let tls = home.join("control/tls");
    let (code, _, err) = run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
            .args(["-subj", "/CN=example.test", "-keyout"])
            .arg(tls.join("key.pem"))
            .arg("-out")
            .arg(tls.join("cert.pem")),
        T,
    );
    assert_eq!(code, Some(0), "openssl: {err}");
    fs::set_permissions(tls.join("key.pem"), fs::Permissions::from_mode(0o600)).unwrap();

    // A rate limit that the first message of a sender trips, to see postern-ratelimit
    // write its list (in its own instance) and smtpd read it through control/.
    fs::write(
        home.join("control/ratelimit"),
        // One alert mail a second at most (the default digest interval is 300 s).
        "sender warn 1 block 1 paranoid 1000\nalertinterval 1\n",
    )
    .unwrap();

    // The instance's own svscan, as root, as /service would be.
    let mut svscan = Command::new(bin.join("postern-svscan"));
    svscan.arg(home.join("service"));
    let mut svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    for port in [smtp, submission, pop3] {
        expect_within(T, "the services to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    // Hold one SMTP and one POP3 session open, so their chains can be seen in /proc.
    let mut greeting = [0u8; 64];
    let mut smtp_session = TcpStream::connect(("127.0.0.1", smtp)).unwrap();
    smtp_session.set_read_timeout(Some(T)).unwrap();
    assert!(smtp_session.read(&mut greeting).unwrap() > 0);
    let mut pop3_session = TcpStream::connect(("127.0.0.1", pop3)).unwrap();
    pop3_session.set_read_timeout(Some(T)).unwrap();
    assert!(pop3_session.read(&mut greeting).unwrap() > 0);
    // Logged in (on loopback, cleartext is allowed by default): postern-pop3d runs.
    pop3_session
        .write_all(format!("USER postmaster@example.test\r\nPASS {PASSWORD}\r\n").as_bytes())
        .unwrap();
    let mut answers = Vec::new();
    expect_within(T, "the POP3 login", || {
        let mut buf = [0u8; 256];
        if let Ok(n) = pop3_session.read(&mut buf) {
            answers.extend_from_slice(&buf[..n]);
        }
        answers.windows(3).filter(|w| w == b"+OK").count() >= 2
    });
    let names = |p: &BTreeMap<u32, (String, u32, u32, u32)>| -> Vec<String> {
        p.values().map(|v| v.0.clone()).collect()
    };
    expect_within(T, "every daemon to be up", || {
        let n = names(&processes(&bin));
        [
            "postern-smtpd",
            "postern-popup",
            "postern-pop3d",
            "postern-tlsd",
            "postern-send",
            "postern-ratelimit",
            "postern-multilog",
        ]
        .iter()
        .all(|want| n.iter().any(|have| have == want))
    });
    let procs = processes(&bin);
    let expected: &[(&str, &str)] = &[
        ("postern-smtpd", "net"),
        ("postern-popup", "net"),
        ("postern-tlsd", "net"),
        ("postern-rblsmtpd", "net"),
        ("postern-scan", "net"),
        ("postern-send", "send"),
        ("postern-multilog", "log"),
        ("postern-ratelimit", "ratelimit"),
        ("postern-pop3d", "mail"),
        ("postern-local", "mail"),
        ("postern-checkpassword", "mail"),
        ("postern-remote", "remote"),
    ];
    let supervisors: Vec<u32> = procs
        .iter()
        .filter(|(_, v)| v.0 == "postern-supervise")
        .map(|(pid, _)| *pid)
        .collect();
    let mut seen = BTreeMap::new();
    for (pid, (name, ruid, euid, ppid)) in &procs {
        match name.as_str() {
            "postern-svscan" | "postern-supervise" => continue,
            // The listener keeps root so that each connection's tlsd can read the key;
            // a forked per-connection copy is about to exec softlimit → tlsd.
            "postern-tcpserver" if supervisors.contains(ppid) => continue,
            "postern-tcpserver" | "postern-softlimit" => continue,
            _ => {}
        }
        let Some((_, role)) = expected.iter().find(|(n, _)| n == name) else {
            panic!("unexpected program {name} (pid {pid}, uid {ruid}/{euid})");
        };
        let want = uid(role);
        assert_eq!(
            (*ruid, *euid),
            (want, want),
            "{name} (pid {pid}) must run as {} only",
            acct(role)
        );
        // Every uid and gid the account's, and no supplementary group: nothing of the
        // caller's (postern-local must not keep postern-send's group, which reads the
        // queue). The pid may have ended meanwhile: then /proc says nothing.
        let (u, g, groups) = (ids(*pid, "Uid"), ids(*pid, "Gid"), ids(*pid, "Groups"));
        if !u.is_empty() {
            assert_eq!(u, vec![want; 4], "{name} (pid {pid}) uids");
            assert_eq!(g, vec![gid_of(&acct(role)); 4], "{name} (pid {pid}) gids");
            assert_eq!(groups, Vec::<u32>::new(), "{name} (pid {pid}) groups");
        }
        assert_ne!(*euid, 0, "{name} runs as root");
        *seen.entry(name.clone()).or_insert(0) += 1;
    }
    for must in [
        "postern-smtpd",
        "postern-pop3d",
        "postern-send",
        "postern-ratelimit",
    ] {
        assert!(seen.contains_key(must), "{must} not seen: {procs:?}");
    }
    assert_eq!(seen["postern-multilog"], 5, "one logger per service");

    // postern-remote, started by the scheduler's account (whose group reads the queue),
    // keeps nothing of it: all its ids are remote's, no supplementary group. (It waits
    // for the message on its stdin, which we hold open.)
    let mut remote = Command::new("setpriv");
    remote
        .args([
            "--reuid",
            &acct("send"),
            "--regid",
            &acct("send"),
            "--clear-groups",
        ])
        .arg(bin.join("postern-remote"))
        .args(["example.org", "a@example.test", "b@example.org"])
        .stdin(std::process::Stdio::piped());
    let remote = Daemon::spawn_quiet("postern-remote", remote);
    let pid = remote.pid();
    expect_within(T, "postern-remote to settle its ids", || {
        ids(pid, "Uid") == vec![uid("remote"); 4]
    });
    assert_eq!(
        ids(pid, "Gid"),
        vec![gid_of(&acct("remote")); 4],
        "postern-remote gids"
    );
    assert_eq!(
        ids(pid, "Groups"),
        Vec::<u32>::new(),
        "postern-remote groups"
    );
    drop(remote);
    // Nor may the network account run the deliveries. (Through a shell: setpriv execs
    // with root's capabilities still in effect, which would pass the directory check.)
    for program in ["postern-remote", "postern-local"] {
        let (code, _, err) = run(
            Command::new("setpriv")
                .args([
                    "--reuid",
                    &acct("net"),
                    "--regid",
                    &acct("net"),
                    "--clear-groups",
                ])
                .args(["sh", "-c", "exec \"$0\" --help"])
                .arg(bin.join(program)),
            T,
        );
        assert_eq!(code, Some(126), "the network account ran {program}: {err}");
    }
    drop(smtp_session);
    drop(pop3_session);

    // The chain: in from outside with STARTTLS, and an AUTH-ed submission.
    let out = python(&format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
s.starttls(context=ctx)
for n in (1, 2):
    s.sendmail("friend@outside.test", ["postmaster@example.test"],
               "From: friend@outside.test\r\nSubject: inbound %d\r\n\r\nfrom outside\r\n" % n)
s.quit()
s = smtplib.SMTP("127.0.0.1", {submission}, timeout=30)
s.starttls(context=ctx)
s.login("postmaster@example.test", "{PASSWORD}")
s.sendmail("postmaster@example.test", ["postmaster@example.test"],
           "From: postmaster@example.test\r\nSubject: submitted\r\n\r\nvia submission\r\n")
s.quit()
print("sent")
"#
    ));
    assert_eq!(out.trim(), "sent");
    // The submission (a login) is in the priority lane, which postern-queue, setuid,
    // honours only from the uids in control/priorityuids (the install lists the network
    // account's); the stranger's inbound mail is not.
    let send_log = home.join("log/send/current");
    expect_within(T, "postern-send to take the submission in", || {
        fs::read_to_string(&send_log).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("event=new ") && l.contains("from=<postmaster@example.test>"))
        })
    });
    let log = fs::read_to_string(&send_log).unwrap();
    for line in log.lines().filter(|l| l.contains("event=new ")) {
        let want = if line.contains("from=<postmaster@example.test>") {
            "priority=1"
        } else {
            "priority=0"
        };
        assert!(line.contains(want), "{want} in {line}");
    }
    let new = home.join("users/example.test/postmaster/Maildir/new");
    // The second message tripped the limit: postern-ratelimit blocked the sender in its
    // own list, smtpd sees it through control/.
    let blocked = home.join("control/ratelimit.blocked");
    expect_within(T, "the block list", || {
        fs::read_to_string(&blocked)
            .is_ok_and(|t| t.contains("sender friend@outside.test/127.0.0.0/24 "))
    });
    assert_eq!(
        owner(&home.join("ratelimit/control/ratelimit.blocked")),
        uid("ratelimit")
    );
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
try:
    s.sendmail("friend@outside.test", ["postmaster@example.test"], "Subject: again\r\n\r\nx\r\n")
    print("accepted")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code)
"#
    ));
    assert_eq!(out.trim(), "refused 451", "blocked by the rate limiter");

    // Three messages, and ratelimit's two alerts (warn, block) to postmaster, queued
    // through the setuid postern-queue.
    expect_within(T, "the messages and alerts delivered", || {
        fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 5
    });
    for f in fs::read_dir(&new).unwrap().flatten() {
        let m = f.metadata().unwrap();
        assert_eq!(m.uid(), uid("mail"), "delivered by the mail account");
        assert_eq!(m.mode() & 0o077, 0, "owner-only");
    }

    // Out with POP3 + STLS.
    let out = python(&format!(
        r#"
import poplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3("127.0.0.1", {pop3}, timeout=30)
p.stls(context=ctx)
p.user("postmaster@example.test"); p.pass_("{PASSWORD}")
n = p.stat()[0]
text = "\n".join(b"\n".join(p.retr(i)[1]).decode() for i in range(1, n + 1))
p.quit()
print(n); print(text)
"#
    ));
    assert!(
        out.contains("Subject: [postern]"),
        "a rate-limit alert: {out}"
    );
    assert!(out.contains("Subject: inbound"), "{out}");
    assert!(out.contains("Subject: submitted"), "{out}");
    assert!(out.contains("ESMTPS"), "came in over TLS: {out}");

    // The network account cannot read the hashes, the queue or the mailboxes.
    let net = acct("net");
    for secret in [
        home.join("control/users.cdb"),
        home.join("control/tls/key.pem"),
    ] {
        let (code, _, _) = run(
            Command::new("setpriv")
                .args(["--reuid", &net, "--regid", &net, "--clear-groups", "cat"])
                .arg(&secret),
            T,
        );
        assert_ne!(code, Some(0), "{net} read {}", secret.display());
    }
    for private in [home.join("queue/new"), home.join("users")] {
        let (code, _, _) = run(
            Command::new("setpriv")
                .args(["--reuid", &net, "--regid", &net, "--clear-groups", "ls"])
                .arg(&private),
            T,
        );
        assert_ne!(code, Some(0), "{net} listed {}", private.display());
    }

    // The setuid password checker: only the network account may run it, and it runs
    // nothing but `true` or the instance's own programs, whatever the password.
    let checkpassword = |account: &str, prog: &str| {
        let shell = format!(
            "printf 'postmaster@example.test\\0{PASSWORD}\\0' | {} {prog} 3<&0",
            bin.join("postern-checkpassword").display()
        );
        run(
            Command::new("setpriv")
                .args(["--reuid", account, "--regid", account, "--clear-groups"])
                .args(["sh", "-c", &shell]),
            T,
        )
    };
    assert_eq!(checkpassword(&net, "true").0, Some(0));
    let (code, out, err) = checkpassword(&net, "/usr/bin/id");
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("runs only programs in"), "{err}");
    assert_eq!(
        checkpassword(&acct("send"), "true").0,
        Some(126),
        "not executable"
    );

    // Without a certificate the run script leaves postern-tlsd out, and the SMTP
    // listener itself becomes the network account after binding: then nothing of that
    // service runs as root, and mail still flows (without STARTTLS).
    fs::rename(tls.join("cert.pem"), dir.path().join("cert.pem.off")).unwrap();
    let (code, _, err) = run(
        Command::new(bin.join("postern-svc"))
            .arg("-t")
            .arg(home.join("service/smtpd")),
        T,
    );
    assert_eq!(code, Some(0), "svc -t: {err}");
    let net_uid = uid("net");
    expect_within(
        T,
        "the smtpd listener to run as the network account",
        || {
            processes(&bin).values().any(|(name, ruid, euid, _)| {
                name == "postern-tcpserver" && (*ruid, *euid) == (net_uid, net_uid)
            })
        },
    );
    let out = python(&format!(
        r#"
import smtplib, time
for attempt in range(50):
    try:
        s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=30, source_address=("127.0.0.200", 0))
        break
    except OSError:
        time.sleep(0.1)
s.ehlo()
print("starttls" if s.has_extn("starttls") else "no starttls")
s.sendmail("plain@outside.test", ["postmaster@example.test"], "Subject: no tls\r\n\r\nx\r\n")
s.quit()
"#
    ));
    assert_eq!(out.trim(), "no starttls");
    // (The new sender also trips the rate limit again: alerts arrive too.)
    expect_within(T, "the message without TLS delivered", || {
        fs::read_dir(&new)
            .unwrap()
            .flatten()
            .any(|f| fs::read_to_string(f.path()).is_ok_and(|t| t.contains("Subject: no tls")))
    });

    // Uninstall: accounts and programs go, mail stays.
    svscan.stop();
    let in_mailbox = |new: &Path| -> usize {
        ["new", "cur"]
            .iter()
            .map(|d| fs::read_dir(new.with_file_name(d)).map_or(0, |d| d.count()))
            .sum()
    };
    let before = in_mailbox(&new);
    assert!(before >= 6, "{before} messages");
    let (code, out, err) = run(
        Command::new(script("uninstall")).arg("--home").arg(&home),
        T,
    );
    assert_eq!(code, Some(0), "uninstall: {err}\n{out}");
    assert!(out.contains("kept"), "{out}");
    for role in ROLES {
        assert!(
            postern_common::privilege::lookup_account(&acct(role)).is_err(),
            "{} still exists",
            acct(role)
        );
    }
    assert!(!bin.exists() && !home.join("service").exists());
    assert!(home.join("queue").is_dir());
    assert_eq!(in_mailbox(&new), before, "the mailbox is kept");
    drop(guard);
}
