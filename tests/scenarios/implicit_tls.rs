//! Implicit TLS and certificate renewals on a single-user instance made with
//! `posternctl init --submissions-port N --pop3s-port N`, run by a throwaway user under
//! postern-svscan:
//!
//! - without a certificate the implicit-TLS services do not listen (and say so);
//! - scripts/certbot-deploy-hook, run as root as certbot runs it (`RENEWED_LINEAGE`,
//!   `RENEWED_DOMAINS`), installs the first certificate with the instance owner's
//!   owner and modes 0644/0600 and restarts the TLS services;
//! - submission over TLS on connect with swaks `--tlsc` (AUTH required, no STARTTLS
//!   inside TLS), then POP3S with `openssl s_client`: a login and STAT;
//! - a renewal replaces both files without a restart (the services keep their pids), no
//!   handshake fails meanwhile, and new connections see the new certificate (the
//!   fingerprints openssl s_client shows).

use crate::support::{add_domain, free_port, user_instance, ThrowawayUser};
use postern_testkit::{expect_within, require, run, tempdir, workspace_bin, Daemon};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const PASSWORD: &str = "Tq8!implicit-tls-pw";

fn hook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/certbot-deploy-hook")
}

/// A fresh self-signed certificate in `lineage/{fullchain,privkey}.pem`, as certbot
/// leaves them (the key root's, 0600); returns its SHA-256 fingerprint.
fn make_lineage(lineage: &Path, cn: &str) -> String {
    fs::create_dir_all(lineage).unwrap();
    let (cert, key) = (lineage.join("fullchain.pem"), lineage.join("privkey.pem"));
    let _ = fs::remove_file(&key);
    let (code, _, err) = run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "90"])
            .args(["-subj", &format!("/CN={cn}"), "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        T,
    );
    assert_eq!(code, Some(0), "openssl req: {err}");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fingerprint_of_file(&cert)
}

fn fingerprint_of_file(cert: &Path) -> String {
    let (code, out, err) = run(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert),
        T,
    );
    assert_eq!(code, Some(0), "openssl x509: {err}");
    fingerprint_field(&out)
}

/// `sha256 Fingerprint=AB:…` (the spelling varies between versions) → `AB:…`.
fn fingerprint_field(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.split_once("Fingerprint=")
                .map(|(_, f)| f.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
}

/// The fingerprint of the certificate a new connection to `port` is shown (`starttls`:
/// openssl s_client's `-starttls` protocol, for the STARTTLS ports).
fn served_fingerprint(port: u16, starttls: Option<&str>) -> String {
    let extra = starttls.map_or(String::new(), |p| format!("-starttls {p}"));
    let shell = format!(
        "openssl s_client -connect 127.0.0.1:{port} {extra} </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    );
    let (code, out, err) = run(Command::new("sh").args(["-c", &shell]), T);
    assert_eq!(code, Some(0), "s_client on {port}: {err}{out}");
    fingerprint_field(&out)
}

/// The pid `postern-svstat` reports for a service.
fn pid_of(home: &Path, service: &str) -> u32 {
    let (_, out, _) = run(
        Command::new(workspace_bin("postern-svstat")).arg(home.join("service").join(service)),
        T,
    );
    out.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{service} is not up: {out}"))
}

fn run_hook(home: &Path, lineage: &Path) -> String {
    let (code, out, err) = run(
        Command::new(hook())
            .env("POSTERN_HOME", home)
            .env("RENEWED_LINEAGE", lineage)
            .env("RENEWED_DOMAINS", "mail.example.test"),
        T,
    );
    eprintln!(
        "$ RENEWED_LINEAGE={} scripts/certbot-deploy-hook\n{out}{err}",
        lineage.display()
    );
    assert_eq!(code, Some(0), "the hook: {out}{err}");
    out
}

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn implicit_tls_services_and_certificate_renewals() {
    let Some(user) = ThrowawayUser::create("postern-t-itls") else {
        return;
    };
    let (Some(swaks), Some(_)) = (require("swaks", "swaks"), require("openssl", "openssl")) else {
        return;
    };
    let dir = tempdir();
    let (smtp, submission, pop3, submissions, pop3s) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let home = user_instance(
        &user,
        dir.path(),
        &[
            "--smtp-port".into(),
            smtp.to_string(),
            "--submission-port".into(),
            submission.to_string(),
            "--pop3-port".into(),
            pop3.to_string(),
            "--submissions-port".into(),
            submissions.to_string(),
            "--pop3s-port".into(),
            pop3s.to_string(),
        ],
    );
    for s in ["submissions", "pop3s"] {
        assert!(home.join("service").join(s).join("run").is_file(), "{s}");
        assert!(home.join("log").join(s).is_dir(), "{s}");
    }
    add_domain(&user, &home, "example.test", PASSWORD);

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    expect_within(T, "SMTP to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok()
    });
    // No certificate: the implicit-TLS services wait instead of listening.
    for (service, port) in [("submissions", submissions), ("pop3s", pop3s)] {
        let log = home.join("log").join(service).join("current");
        expect_within(T, "the no-certificate line", || {
            fs::read_to_string(&log).is_ok_and(|t| t.contains("no control/tls/cert.pem"))
        });
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{service} listens without a certificate"
        );
    }

    // The first certificate, installed by the deploy hook as certbot (root) runs it.
    let lineage = dir.path().join("letsencrypt/live/mail.example.test");
    let first = make_lineage(&lineage, "mail.example.test");
    let out = run_hook(&home, &lineage);
    assert!(
        out.contains("first certificate: restarted smtpd submission pop3d submissions pop3s"),
        "{out}"
    );
    assert!(
        out.contains(&format!("sha256 fingerprint {first}")),
        "{out}"
    );
    let tls = home.join("control/tls");
    let check_files = || {
        for (name, mode) in [("cert.pem", 0o644), ("key.pem", 0o600)] {
            let m = fs::symlink_metadata(tls.join(name)).unwrap();
            assert!(m.file_type().is_file(), "{name}");
            assert_eq!(m.mode() & 0o7777, mode, "{name} mode");
            assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{name} owner");
        }
        let names: Vec<String> = fs::read_dir(&tls)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    };
    check_files();
    expect_within(T, "submissions and pop3s to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", submissions)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", pop3s)).is_ok()
    });

    // Submission over TLS on connect: AUTH is required, STARTTLS is not offered.
    let swaks_to = |auth: bool| {
        let mut cmd = Command::new(&swaks);
        cmd.args(["--tlsc", "--server", "127.0.0.1", "--port"])
            .arg(submissions.to_string())
            .args(["--ehlo", "client.example.test"])
            .args(["--from", "postmaster@example.test"])
            .args(["--to", "postmaster@example.test"])
            .args(["--header", "Subject: over 465"]);
        if auth {
            cmd.args(["--auth", "PLAIN", "--auth-user", "postmaster@example.test"])
                .args(["--auth-password", PASSWORD]);
        }
        // swaks writes its own notes (`=== …`) on stderr: one transcript.
        let (code, out, err) = run(&mut cmd, T);
        (code, format!("{err}{out}"))
    };
    let (code, out) = swaks_to(false);
    assert_ne!(code, Some(0), "accepted without AUTH: {out}");
    assert!(out.contains("530 5.7.0 authentication required"), "{out}");
    let (code, out) = swaks_to(true);
    eprintln!("$ swaks --tlsc … (port {submissions})\n{out}");
    assert_eq!(code, Some(0), "swaks: {out}");
    assert!(out.contains("=== TLS started with cipher TLSv1.3"), "{out}");
    assert!(out.contains("<~  250 AUTH PLAIN LOGIN"), "{out}");
    assert!(
        !out.contains("STARTTLS"),
        "STARTTLS offered inside TLS: {out}"
    );
    assert!(out.contains("<~  235 "), "{out}");
    assert!(out.contains("<~  250 2.0.0 ok"), "{out}");

    // POP3S: a login and STAT with openssl s_client, once the message is delivered.
    let new = home.join("users/example.test/postmaster/Maildir/new");
    expect_within(T, "the message delivered", || {
        fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 1
    });
    let session = format!("USER postmaster@example.test\nPASS {PASSWORD}\nSTAT\nQUIT\n");
    let input = dir.path().join("pop3s-session");
    fs::write(&input, session).unwrap();
    // (testkit's run gives the command /dev/null as its input: the shell redirects.)
    let shell = format!(
        "openssl s_client -connect 127.0.0.1:{pop3s} -quiet -crlf < {}",
        input.display()
    );
    let (code, out, err) = run(Command::new("sh").args(["-c", &shell]), T);
    eprintln!("$ openssl s_client -connect 127.0.0.1:{pop3s} -quiet -crlf\n{out}");
    assert_eq!(code, Some(0), "s_client: {err}{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 5, "{out}");
    assert!(lines[0].starts_with("+OK"), "greeting: {out}");
    assert!(lines.iter().any(|l| l.starts_with("+OK 1 ")), "STAT: {out}");
    let pop_log = home.join("log/pop3s/current");
    expect_within(T, "the POP3S login in the log", || {
        fs::read_to_string(&pop_log)
            .is_ok_and(|t| t.contains("event=login") && t.contains("tls=yes"))
    });
    assert_eq!(served_fingerprint(submissions, None), first);
    assert_eq!(served_fingerprint(pop3s, None), first);
    assert_eq!(served_fingerprint(smtp, Some("smtp")), first);

    // A renewal: new files, no restart, and handshakes keep working throughout.
    let pids: Vec<u32> = ["smtpd", "submissions", "pop3s"]
        .iter()
        .map(|s| pid_of(&home, s))
        .collect();
    let inode = |name: &str| fs::metadata(tls.join(name)).unwrap().ino();
    let (cert_ino, key_ino) = (inode("cert.pem"), inode("key.pem"));
    let second = make_lineage(&lineage, "mail.example.test");
    assert_ne!(first, second);
    let prober = format!(
        r#"
import socket, ssl, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ok = bad = 0
end = time.time() + 4
while time.time() < end:
    try:
        with socket.create_connection(("127.0.0.1", {pop3s}), timeout=30) as s:
            with ctx.wrap_socket(s) as t:
                t.recv(100); ok += 1
    except Exception as e:
        bad += 1; print("failed:", e)
print(ok, bad)
"#
    );
    let prober = std::thread::spawn(move || run(Command::new("python3").args(["-c", &prober]), T));
    std::thread::sleep(Duration::from_millis(500));
    let out = run_hook(&home, &lineage);
    assert!(out.contains("renewal: no restart needed"), "{out}");
    assert!(
        out.contains(&format!("sha256 fingerprint {second}")),
        "{out}"
    );
    let (code, probed, err) = prober.join().unwrap();
    assert_eq!(code, Some(0), "{probed}{err}");
    eprintln!("handshakes on pop3s during the renewal (ok failed): {probed}");
    let counts: Vec<u32> = probed
        .lines()
        .last()
        .unwrap_or("")
        .split(' ')
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] > 0 && counts[1] == 0,
        "handshakes during the renewal (ok, failed): {probed}"
    );
    check_files();
    assert_ne!(inode("cert.pem"), cert_ino, "replaced by a new file");
    assert_ne!(inode("key.pem"), key_ino, "replaced by a new file");
    let after: Vec<u32> = ["smtpd", "submissions", "pop3s"]
        .iter()
        .map(|s| pid_of(&home, s))
        .collect();
    assert_eq!(pids, after, "nothing restarted");
    assert_eq!(served_fingerprint(submissions, None), second);
    assert_eq!(served_fingerprint(pop3s, None), second);
    assert_eq!(served_fingerprint(smtp, Some("smtp")), second);

    // A pair that does not match is refused, and the installed one stays.
    fs::copy(
        lineage.join("privkey.pem"),
        dir.path().join("second-key.pem"),
    )
    .unwrap();
    make_lineage(&lineage, "mail.example.test");
    fs::copy(
        dir.path().join("second-key.pem"),
        lineage.join("privkey.pem"),
    )
    .unwrap();
    let (code, out, err) = run(
        Command::new(hook())
            .env("POSTERN_HOME", &home)
            .env("RENEWED_LINEAGE", &lineage),
        T,
    );
    assert_eq!(code, Some(100), "{out}{err}");
    assert!(err.contains("do not make a usable pair"), "{err}");
    assert_eq!(fingerprint_of_file(&tls.join("cert.pem")), second);
    check_files();
}
