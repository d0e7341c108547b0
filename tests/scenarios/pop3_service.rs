//! The POP3 service of a single-user instance, as `scripts/quickstart` makes it: run by a
//! normal (throwaway) user under postern-svscan, a mailbox made with postern-user, and a
//! message fetched with Python's poplib over STLS.

use crate::support::{add_domain, free_port, user_instance, ThrowawayUser};
use postern_testkit::{expect_within, run, tempdir, workspace_bin, Daemon};
use std::fs;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[ignore = "needs root: runs the instance as a throwaway user"]
#[test]
fn a_single_user_instance_serves_pop3_with_stls() {
    let Some(user) = ThrowawayUser::create("postern-t-pop3") else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let home = user_instance(&user, dir.path(), &["--pop3-port".into(), port.to_string()]);
    assert!(home.join("service/pop3d/run").is_file());
    assert!(
        home.join("control/tcp.pop3.cdb").is_file(),
        "init compiles the missing rules"
    );

    // A certificate, as quickstart makes one.
    let tls = home.join("control/tls");
    let mut openssl = user.command("openssl");
    openssl.args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=example.test",
        "-keyout",
    ]);
    openssl
        .arg(tls.join("key.pem"))
        .arg("-out")
        .arg(tls.join("cert.pem"));
    assert_eq!(run(&mut openssl, T).0, Some(0));

    // The mailbox, with the password on stdin.
    add_domain(&user, &home, "example.test", "k7#Vq9!zLm2p");
    let new = home.join("users/example.test/postmaster/Maildir/new");
    let message = "From: someone@example.test\nSubject: hello\n\nIt works.\n.leading dot\n";
    fs::write(new.join("1700000000.M1P1.test"), message).unwrap();
    std::os::unix::fs::chown(
        new.join("1700000000.M1P1.test"),
        Some(user.uid),
        Some(user.gid),
    )
    .unwrap();

    let mut svscan = user.command(workspace_bin("postern-svscan"));
    svscan.arg(home.join("service"));
    let _svscan = Daemon::spawn_quiet("postern-svscan", svscan);
    expect_within(T, "POP3 to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let script = format!(
        r#"
import poplib, ssl
p = poplib.POP3("127.0.0.1", {port}, timeout=30)
caps = p.capa()
assert "STLS" in caps, caps
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p.stls(ctx)
p.user("postmaster@example.test"); p.pass_("k7#Vq9!zLm2p")
count, size = p.stat()
lines = p.retr(1)[1]
p.dele(1)
p.quit()
print(count, size)
print("\n".join(l.decode() for l in lines))
"#
    );
    let (code, out, err) = run(Command::new("python3").args(["-c", &script]), T);
    assert_eq!(code, Some(0), "poplib: {err}");
    let expected_size = message.len() + message.matches('\n').count(); // CRLF octets
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(format!("1 {expected_size}").as_str()));
    let body: Vec<&str> = lines.collect();
    assert_eq!(
        body,
        vec![
            "From: someone@example.test",
            "Subject: hello",
            "",
            "It works.",
            ".leading dot"
        ]
    );
    assert_eq!(
        fs::read_dir(&new).unwrap().count()
            + fs::read_dir(home.join("users/example.test/postmaster/Maildir/cur"))
                .unwrap()
                .count(),
        0,
        "deleted at QUIT"
    );

    // Every daemon of the chain ran as the user, and the log recorded the login.
    expect_within(T, "the login in the log", || {
        fs::read_to_string(home.join("log/pop3d/current"))
            .map(|l| l.contains("event=login"))
            .unwrap_or(false)
    });
    let log = fs::read_to_string(home.join("log/pop3d/current")).unwrap();
    assert!(log.contains("user=postmaster@example.test"), "{log}");
    assert!(log.contains("tls=yes"), "{log}");
    let meta = fs::metadata(home.join("log/pop3d/current")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user.uid);
}
