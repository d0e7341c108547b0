//! smtproutes' TLS policy and credentials (docs/postern-remote.md "Routes: TLS policy and
//! credentials"): `tls=encrypt`, `tls=verify` with a CA made here by openssl, `auth=`
//! against the raw server's AUTH and Postfix's smtp-sink. A route that requires TLS never
//! sends in the clear nor to an unverified server: the message stays queued.

use crate::helpers::*;
use crate::remote::{raw_server, recorded, records, remote, sink_dumps, smtp_sink};
use postern_testkit::tempdir;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MSG: &[u8] = b"Subject: corp\n\nconfidential\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test certificate authority in `dir` (NAME.pem, NAME.key).
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=postern test {name}"),
            "-keyout",
            &key,
            "-out",
            &pem,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(pem)
}

/// A server certificate for the subject alternative names `san` (`DNS:x,IP:y`) signed
/// by the authority `ca` (made by [`make_ca`] in `dir`): (NAME.pem, NAME.key).
fn make_cert(dir: &Path, ca: &str, name: &str, san: &str) -> (PathBuf, PathBuf) {
    let (pem, key, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            "7",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
    (dir.join(pem), dir.join(key))
}

/// A raw server with STARTTLS and the certificate `(cert, key)`, plus `extra` options.
fn tls_server(
    dir: &Path,
    cert: &(PathBuf, PathBuf),
    extra: &[&str],
) -> (postern_testkit::Daemon, u16) {
    let mut args = vec!["--tls", cert.0.to_str().unwrap(), cert.1.to_str().unwrap()];
    args.extend_from_slice(extra);
    raw_server(dir, &args)
}

/// The credentials file, `mode`.
fn smtpauth(inst: &Instance, text: &str, mode: u32) {
    inst.control("smtpauth", text);
    std::fs::set_permissions(
        inst.home().join("control/smtpauth"),
        std::fs::Permissions::from_mode(mode),
    )
    .unwrap();
}

fn send_corp(inst: &Instance) -> Vec<String> {
    let (code, report) = remote(inst, "corp.test", "a@b.test", &["x@corp.test"], MSG);
    assert_eq!(code, 0);
    records(&report)
}

/// The report is one `Z` record (no recipient tried) containing every one of `needles`.
fn assert_deferred(recs: &[String], needles: &[&str]) {
    eprintln!("report: {recs:?}");
    assert_eq!(recs.len(), 1, "no recipient record: {recs:?}");
    assert!(recs[0].starts_with('Z'), "{recs:?}");
    for n in needles {
        assert!(recs[0].contains(n), "{n:?} not in {recs:?}");
    }
}

/// Nothing of the transaction reached the server: no MAIL, no message bytes.
fn assert_nothing_sent(dir: &Path) -> String {
    let (cmds, sent) = recorded(dir);
    assert!(!sent, "a message was sent: {cmds}");
    assert!(!cmds.contains("MAIL"), "{cmds}");
    assert!(!cmds.contains("RCPT"), "{cmds}");
    cmds
}

#[test]
fn tls_verify_with_the_routes_ca_delivers() {
    let inst = Instance::new(&[("alice", 0)], "");
    let pki = tempdir();
    make_ca(pki.path(), "corp-ca");
    let cert = make_cert(
        pki.path(),
        "corp-ca",
        "mail",
        "DNS:mail.corp.test,IP:127.0.0.1",
    );
    let rec = tempdir();
    let (_srv, port) = tls_server(rec.path(), &cert, &[]);
    let ca = pki.path().join("corp-ca.pem");
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=verify ca={}", ca.display()),
    );
    let recs = send_corp(&inst);
    assert_eq!(recs[0], "r");
    assert!(recs[1].starts_with('K'), "{recs:?}");
    let (cmds, sent) = recorded(rec.path());
    assert!(sent);
    let (before, after) = cmds.split_once("\ntls ").expect("TLS was used");
    assert!(!before.contains("MAIL"), "{cmds}");
    assert!(after.contains("MAIL FROM:<a@b.test>"), "{cmds}");

    // A relative ca= is under control/.
    std::fs::copy(&ca, inst.home().join("control/corp-ca.pem")).unwrap();
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=verify ca=corp-ca.pem"),
    );
    let recs = send_corp(&inst);
    assert!(recs[1].starts_with('K'), "{recs:?}");
}

#[test]
fn tls_verify_refuses_a_certificate_of_another_ca_and_sends_nothing() {
    let inst = Instance::new(&[("alice", 0)], "");
    let pki = tempdir();
    make_ca(pki.path(), "corp-ca");
    make_ca(pki.path(), "other-ca");
    let cert = make_cert(
        pki.path(),
        "other-ca",
        "mail",
        "DNS:mail.corp.test,IP:127.0.0.1",
    );
    let rec = tempdir();
    let (_srv, port) = tls_server(rec.path(), &cert, &[]);
    inst.control(
        "smtproutes",
        &format!(
            "corp.test:127.0.0.1:{port} tls=verify ca={}",
            pki.path().join("corp-ca.pem").display()
        ),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &[
            "certificate of 127.0.0.1 (127.0.0.1) not verified: ",
            "UnknownIssuer",
        ],
    );
    let cmds = assert_nothing_sent(rec.path());
    assert_eq!(
        cmds.matches("EHLO").count(),
        1,
        "no plain-text retry: {cmds}"
    );

    // Without ca=: the system's authorities, which do not know the test CA either.
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=verify"),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &["certificate of 127.0.0.1 (127.0.0.1) not verified: "],
    );
    let cmds = assert_nothing_sent(rec.path());
    assert_eq!(cmds.matches("EHLO").count(), 2, "{cmds}");

    // A CA file that is not there: deferred before any connection.
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=verify ca=/nonexistent/ca.pem"),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &["tls=verify in smtproutes for corp.test, but unable to read the certificates of ca=/nonexistent/ca.pem"],
    );
    let cmds = assert_nothing_sent(rec.path());
    assert_eq!(cmds.matches("EHLO").count(), 2, "not connected: {cmds}");
}

#[test]
fn tls_verify_checks_the_host_name_of_the_route() {
    let inst = Instance::new(&[("alice", 0)], "");
    let pki = tempdir();
    make_ca(pki.path(), "corp-ca");
    // Valid for mail.corp.test only: not for the address the route names.
    let cert = make_cert(pki.path(), "corp-ca", "mail", "DNS:mail.corp.test");
    let rec = tempdir();
    let (_srv, port) = tls_server(rec.path(), &cert, &[]);
    let ca = pki.path().join("corp-ca.pem");
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=verify ca={}", ca.display()),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &[
            "certificate of 127.0.0.1 (127.0.0.1) not verified: ",
            "not valid for name",
        ],
    );
    assert_nothing_sent(rec.path());

    // By name, through a DNS server: the right name delivers, another name (same
    // address, same CA) is refused.
    let Some((_dns, dns_port)) = postern_testkit::dnsmasq(&[
        "--local=/test/".to_string(),
        "--host-record=mail.corp.test,127.0.0.1".to_string(),
        "--host-record=relay.corp.test,127.0.0.1".to_string(),
    ]) else {
        return;
    };
    inst.control("resolvers", &format!("127.0.0.1:{dns_port}"));
    inst.control(
        "smtproutes",
        &format!(
            "corp.test:relay.corp.test:{port} tls=verify ca={}",
            ca.display()
        ),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &[
            "certificate of relay.corp.test (127.0.0.1) not verified: ",
            "not valid for name",
        ],
    );
    assert_nothing_sent(rec.path());
    inst.control(
        "smtproutes",
        &format!(
            "corp.test:mail.corp.test:{port} tls=verify ca={}",
            ca.display()
        ),
    );
    let recs = send_corp(&inst);
    assert!(
        recs[1].starts_with("Kmail.corp.test (127.0.0.1) accepted"),
        "{recs:?}"
    );
}

#[test]
fn tls_encrypt_takes_any_certificate_and_never_falls_back_to_plain_text() {
    let inst = Instance::new(&[("alice", 0)], "");
    let pki = tempdir();
    // Self-signed by an authority nobody trusts: fine for tls=encrypt.
    make_ca(pki.path(), "nobody-ca");
    let cert = make_cert(pki.path(), "nobody-ca", "srv", "DNS:elsewhere.test");
    let rec = tempdir();
    let (_srv, port) = tls_server(rec.path(), &cert, &[]);
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=encrypt"),
    );
    let recs = send_corp(&inst);
    assert!(recs[1].starts_with('K'), "{recs:?}");
    assert!(recorded(rec.path()).0.contains("\ntls TLSv1."));

    // A handshake that fails: deferred, no second, plain connection (tls=may would make one).
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &["--broken-tls"]);
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=encrypt"),
    );
    let recs = send_corp(&inst);
    assert_deferred(&recs, &["TLS handshake with 127.0.0.1 (127.0.0.1) failed"]);
    let cmds = assert_nothing_sent(rec.path());
    assert_eq!(cmds.matches("EHLO").count(), 1, "{cmds}");

    // No STARTTLS at all.
    let rec = tempdir();
    let (_srv, port) = raw_server(rec.path(), &[]);
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=encrypt"),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &["TLS required by smtproutes for corp.test, but 127.0.0.1 (127.0.0.1) did not offer STARTTLS"],
    );
    let cmds = assert_nothing_sent(rec.path());
    assert!(cmds.contains("QUIT"), "{cmds}");

    // STARTTLS offered but refused.
    let rec = tempdir();
    let (_srv, port) = tls_server(
        rec.path(),
        &cert,
        &["--raw", "starttls", r"454 4.7.0 TLS not available\r\n"],
    );
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=encrypt"),
    );
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &[
            "TLS required by smtproutes for corp.test, but 127.0.0.1 (127.0.0.1) refused STARTTLS",
            "454 4.7.0",
        ],
    );
    assert_nothing_sent(rec.path());
}

#[test]
fn tls_encrypt_against_smtp_sink_without_starttls_defers_and_sends_nothing() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    // smtp-sink offers no STARTTLS, and offers AUTH PLAIN LOGIN in the clear.
    let Some((_sink, port)) = smtp_sink(dir.path(), &[]) else {
        return;
    };
    inst.control("smtproutes", &format!(":127.0.0.1:{port} tls=encrypt"));
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &["TLS required by smtproutes for corp.test, but 127.0.0.1 (127.0.0.1) did not offer STARTTLS"],
    );
    // auth= alone requires TLS as well: the credentials are not given in the clear.
    smtpauth(&inst, "corp alice secret", 0o640);
    inst.control("smtproutes", &format!(":127.0.0.1:{port} auth=corp"));
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &["TLS required by smtproutes for corp.test (auth=corp: credentials go only inside TLS), but 127.0.0.1 (127.0.0.1) did not offer STARTTLS"],
    );
    // The same sink takes the message from a route without options: it was up all along.
    inst.control("smtproutes", &format!(":127.0.0.1:{port}"));
    let recs = send_corp(&inst);
    assert!(recs[1].starts_with('K'), "{recs:?}");
    postern_testkit::expect_within(Duration::from_secs(30), "the sink's dump", || {
        !sink_dumps(dir.path()).is_empty()
    });
    let dumps = sink_dumps(dir.path());
    assert_eq!(
        dumps.len(),
        1,
        "only the plain route's message reached DATA: {dumps:?}"
    );
}

#[test]
fn auth_plain_only_after_starttls() {
    let inst = Instance::new(&[("alice", 0)], "");
    let pki = tempdir();
    make_ca(pki.path(), "corp-ca");
    let cert = make_cert(pki.path(), "corp-ca", "mail", "IP:127.0.0.1");
    smtpauth(&inst, "# name user password\ncorp alice secret", 0o640);
    for (mechs, expect) in [
        ("PLAIN LOGIN", "'AUTH PLAIN AGFsaWNlAHNlY3JldA==\\r\\n'"),
        (
            "LOGIN",
            "'AUTH LOGIN\\r\\n'\nb'YWxpY2U=\\r\\n'\nb'c2VjcmV0\\r\\n'\nauth ok alice",
        ),
    ] {
        let rec = tempdir();
        // AUTH is offered before TLS too: it must not tempt the client.
        let (_srv, port) = tls_server(
            rec.path(),
            &cert,
            &[
                "--auth",
                "alice",
                "secret",
                "--auth-mechs",
                mechs,
                "--auth-clear",
            ],
        );
        inst.control(
            "smtproutes",
            &format!(
                "corp.test:127.0.0.1:{port} tls=verify ca={} auth=corp",
                pki.path().join("corp-ca.pem").display()
            ),
        );
        let recs = send_corp(&inst);
        assert!(recs[1].starts_with('K'), "{mechs}: {recs:?}");
        let (cmds, sent) = recorded(rec.path());
        assert!(sent);
        let (before, after) = cmds.split_once("\ntls ").expect("TLS was used");
        assert!(
            !before.contains("AUTH"),
            "no credentials in the clear: {cmds}"
        );
        assert!(after.contains(expect), "{mechs}: {cmds}");
        let auth_at = after.find("auth ok alice").expect("authenticated");
        assert!(auth_at < after.find("MAIL").unwrap(), "{cmds}");
    }

    // auth= with tls=may (the default): TLS is used, being offered.
    let rec = tempdir();
    let (_srv, port) = tls_server(rec.path(), &cert, &["--auth", "alice", "secret"]);
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} auth=corp"),
    );
    let recs = send_corp(&inst);
    assert!(recs[1].starts_with('K'), "{recs:?}");
    let cmds = recorded(rec.path()).0;
    assert!(
        cmds.split_once("\ntls ").unwrap().1.contains("AUTH PLAIN"),
        "{cmds}"
    );
}

#[test]
fn auth_is_never_sent_in_the_clear() {
    let inst = Instance::new(&[("alice", 0)], "");
    smtpauth(&inst, "corp alice secret", 0o640);
    let rec = tempdir();
    // A server that offers AUTH but no STARTTLS.
    let (_srv, port) = raw_server(rec.path(), &["--auth", "alice", "secret", "--auth-clear"]);
    for opts in ["auth=corp", "tls=may auth=corp", "tls=encrypt auth=corp"] {
        inst.control("smtproutes", &format!("corp.test:127.0.0.1:{port} {opts}"));
        let recs = send_corp(&inst);
        assert_deferred(
            &recs,
            &[
                "TLS required by smtproutes for corp.test",
                "did not offer STARTTLS",
            ],
        );
    }
    let cmds = assert_nothing_sent(rec.path());
    assert!(!cmds.contains("AUTH"), "{cmds}");
}

#[test]
fn failed_auth_and_bad_credentials_files_are_temporary() {
    let inst = Instance::new(&[("alice", 0)], "");
    let pki = tempdir();
    make_ca(pki.path(), "corp-ca");
    let cert = make_cert(pki.path(), "corp-ca", "mail", "IP:127.0.0.1");
    let rec = tempdir();
    let (_srv, port) = tls_server(rec.path(), &cert, &["--auth", "alice", "secret"]);
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=encrypt auth=corp"),
    );

    // 535: a temporary failure (a credentials mistake must not bounce mail).
    smtpauth(&inst, "corp alice wrong", 0o640);
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &[
            "Connected to 127.0.0.1 (127.0.0.1) but authentication with auth=corp (AUTH PLAIN) failed",
            "535 5.7.8",
        ],
    );
    assert!(
        !recs[0].contains("wrong"),
        "no password in the report: {recs:?}"
    );
    let cmds = assert_nothing_sent(rec.path());
    assert!(cmds.contains("auth failed"), "{cmds}");
    let connections = cmds.matches("EHLO").count();

    // A file every account may read: refused before connecting, with the reason.
    smtpauth(&inst, "corp alice secret", 0o644);
    let recs = send_corp(&inst);
    assert_deferred(
        &recs,
        &["control/smtpauth is open to every account (mode 0644): its credentials are not used"],
    );
    // No credentials by that name; no file at all.
    smtpauth(&inst, "smart bob pw", 0o600);
    let recs = send_corp(&inst);
    assert_deferred(&recs, &["control/smtpauth has no credentials named corp"]);
    std::fs::remove_file(inst.home().join("control/smtpauth")).unwrap();
    let recs = send_corp(&inst);
    assert_deferred(&recs, &["unable to read control/smtpauth"]);
    let cmds = assert_nothing_sent(rec.path());
    assert_eq!(
        cmds.matches("EHLO").count(),
        connections,
        "not connected: {cmds}"
    );

    // Put right, it goes.
    smtpauth(&inst, "corp alice secret", 0o640);
    let recs = send_corp(&inst);
    assert!(recs[1].starts_with('K'), "{recs:?}");
}

#[test]
fn postern_send_keeps_the_message_and_logs_the_tls_refusal() {
    let inst = Instance::new(&[("alice", 0)], "");
    let dir = tempdir();
    let Some((_sink, port)) = smtp_sink(dir.path(), &[]) else {
        return;
    };
    inst.control(
        "smtproutes",
        &format!("corp.test:127.0.0.1:{port} tls=encrypt"),
    );
    let send = inst.start_send();
    inst.inject("alice@example.test", &["x@corp.test"], MSG);
    let l = send.wait_log("event=delivery ", Duration::from_secs(60));
    eprintln!("postern-send logged: {l}");
    assert_eq!(field(&l, "result").as_deref(), Some("defer"), "{l}");
    assert_eq!(
        field(&l, "text").as_deref(),
        Some("TLS required by smtproutes for corp.test, but 127.0.0.1 (127.0.0.1) did not offer STARTTLS"),
        "{l}"
    );
    assert_eq!(inst.queued("mess"), 1, "the message stays queued");
    assert!(sink_dumps(dir.path()).is_empty(), "nothing reached DATA");
    assert_eq!(inst.count("alice"), 0, "no bounce for a refused TLS");
}
