//! postern-tlsd: STLS through the wrapper, the injection defence, failures, privileges.

use crate::*;
use postern_testkit as testkit;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TLSD: &str = env!("CARGO_BIN_EXE_postern-tlsd");

const CLIENT_CONTEXT: &str = r#"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
"#;

/// A self-signed certificate and key in `dir` (mode 0644 unless `private`).
fn make_cert(dir: &Path, private: bool) -> Option<(PathBuf, PathBuf)> {
    let openssl = testkit::require("openssl", "openssl")?;
    fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (code, _out, err) = testkit::run(
        Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "2", "-subj", "/CN=pop.example.test"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "openssl: {err}");
    let mode = if private { 0o600 } else { 0o644 };
    fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
    Some((cert, key))
}

/// The chain with postern-tlsd in front.
fn tls_chain(inst: &Instance) -> impl Fn() -> Command + Send + 'static {
    inst.factory(&[
        TLSD,
        &POPUP,
        "pop.example.test",
        inst.checkpw.to_str().unwrap(),
        &POP3D,
    ])
}

#[test]
fn bad_usage_exits_100() {
    let (code, _out, err) = testkit::run(&mut Command::new(TLSD), Duration::from_secs(10));
    assert_eq!(code, Some(100));
    assert!(
        err.starts_with("postern-tlsd: usage: postern-tlsd"),
        "{err}"
    );
}

#[test]
fn a_named_certificate_that_is_missing_is_fatal() {
    let (code, _out, err) = testkit::run(
        Command::new(TLSD).args(["-c", "/nonexistent/cert.pem", "-u", "1", "-g", "1", "true"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(111));
    assert!(
        err.contains("unable to read /nonexistent/cert.pem"),
        "{err}"
    );
}

#[test]
fn without_a_certificate_stls_is_not_offered() {
    let inst = Instance::new();
    let server = Server::start(tls_chain(&inst));
    python(
        &server,
        r#"
p = connect()
caps = p.capa()
expect('STLS' not in caps, caps)
p.user(USER); p.pass_(PASSWORD)
expect(p.stat() == (0, 0), 'login')
p.quit()
"#,
    );
    inst.wait_log("event=login", 1);
}

#[test]
fn stls_with_poplib_then_login_and_fetch() {
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    inst.deliver(
        "new",
        "1700000000.M1P1.host",
        b"Subject: secret\n\n.dot\nbody\n",
        1_700_000_000,
    );
    let server = Server::start(tls_chain(&inst));
    let out = python(
        &server,
        &format!(
            "{CLIENT_CONTEXT}{}",
            r#"
p = connect()
caps = p.capa()
expect('STLS' in caps, caps)
p.stls(context=ctx)
print(p.sock.version())
caps = p.capa()
expect('STLS' not in caps and 'USER' in caps, caps)
p.user(USER); p.pass_(PASSWORD)
resp, lines, octets = p.retr(1)
expect(lines == [b'Subject: secret', b'', b'.dot', b'body'], lines)
expect(octets == p.stat()[1], (octets, p.stat()))
p.quit()
"#
        ),
    );
    assert!(out.starts_with("TLSv1."), "{out}");
    inst.wait_log("event=logout", 1);
    let log = inst.log_text();
    assert!(
        log.contains("event=tls ip=127.0.0.1 version=TLSv1.3 cipher=TLS13_"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "event=login user={USER} ip=127.0.0.1 tls=yes version=TLSv1.3"
        )),
        "{log}"
    );
    assert_eq!(inst.names("cur"), vec!["1700000000.M1P1.host:2,S"]);
}

#[test]
fn requiretls_refuses_passwords_until_stls() {
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    inst.control("pop3requiretls", "yes\n");
    let server = Server::start(tls_chain(&inst));
    python(
        &server,
        &format!(
            "{CLIENT_CONTEXT}{}",
            r#"
p = connect()
caps = p.capa()
expect('STLS' in caps and 'USER' not in caps and 'SASL' not in caps, caps)
try:
    p.user(USER); expect(False, 'USER before TLS')
except poplib.error_proto as e:
    expect(e.args[0].startswith(b'-ERR [AUTH] plaintext authentication disallowed'), e)
p.stls(context=ctx)
caps = p.capa()
expect('USER' in caps and caps.get('SASL') == ['PLAIN'], caps)
p.user(USER); p.pass_(PASSWORD)
p.quit()
"#
        ),
    );
    inst.wait_log("tls=yes", 1);
}

#[test]
fn plaintext_pipelined_after_stls_is_never_executed() {
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    let server = Server::start(tls_chain(&inst));
    python(
        &server,
        &format!(
            "{CLIENT_CONTEXT}{}",
            r#"
r = Raw(); r.line()
# The classic STARTTLS injection: commands after STLS in the same packet.
r.send(b'STLS\r\nUSER ' + USER.encode() + b'\r\n')
l = r.line()
expect(l == b'+OK begin TLS negotiation', l)
expect(r.buf == b'', ('answered in cleartext', r.buf))
t = ctx.wrap_socket(r.s)
t.sendall(b'PASS ' + PASSWORD.encode() + b'\r\n')
l = t.recv(1000)
expect(l == b'-ERR USER first\r\n', ('the injected USER was executed', l))
t.sendall(b'QUIT\r\n')
expect(t.recv(1000) == b'+OK bye\r\n', 'bye')
"#
        ),
    );
    // Either tlsd still held the bytes (dropped on `Y`) or they were in the program's
    // pipe (drained and logged by popup); either way they were not executed.
    inst.wait_log("event=tls ip=127.0.0.1", 1);
    eprintln!("{}", inst.log_text());
}

#[test]
fn a_failed_handshake_ends_the_session() {
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    let server = Server::start(tls_chain(&inst));
    python(
        &server,
        r#"
r = Raw(); r.line()
r.send(b'STLS\r\n')
expect(r.line() == b'+OK begin TLS negotiation', 'stls')
r.send(b'this is not a TLS client hello\r\n')
data = b''
try:
    while True:
        d = r.s.recv(4096)
        if not d: break
        data += d
except ConnectionResetError:
    pass
expect(b'+OK' not in data, data)
"#,
    );
    inst.wait_log("event=tlsfail", 2); // tlsd's and popup's
}

#[test]
#[ignore = "needs root: read a root-only key, then drop privileges"]
fn as_root_it_reads_the_key_then_drops_privileges() {
    testkit::require_root("read a root-only key, then drop privileges");
    let inst = Instance::new();
    let (u, g) = inst.ids.expect("a free uid and gid for the program");
    // A key only root can read, outside the instance.
    let Some((cert, key)) = make_cert(&inst.dir.path().join("rootonly"), true) else {
        return;
    };
    fs::set_permissions(
        inst.dir.path().join("rootonly"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let (cert, key) = (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    );
    let (cert2, key2) = (cert.clone(), key.clone());
    let (u, g) = (u.to_string(), g.to_string());
    let checkpw = inst.checkpw.to_str().unwrap().to_string();
    let (home, log) = (inst.home.clone(), inst.log.clone());
    let server = Server::start(move || {
        let mut c = Command::new(TLSD);
        c.args(["-c", &cert, "-k", &key, "-u", &u, "-g", &g]);
        c.args([POPUP.as_str(), "pop.example.test", &checkpw, POP3D.as_str()]);
        c.env("POSTERN_HOME", &home);
        c.stderr(std::process::Stdio::from(
            fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ));
        c
    });
    python(
        &server,
        &format!(
            "{CLIENT_CONTEXT}{}",
            r#"
p = connect()
p.stls(context=ctx)
p.user(USER); p.pass_(PASSWORD)   # pop3d refuses root: this proves the drop
p.quit()
"#
        ),
    );
    inst.wait_log("event=login", 1);
    // Without -u/-g (and no $UID/$GID) root is refused.
    let (code, _out, err) = testkit::run(
        Command::new(TLSD)
            .env_remove("UID")
            .env_remove("GID")
            .args(["-c", &cert2, "-k", &key2, "true"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("refusing to run the program as root"), "{err}");
}

#[test]
fn fetchmail_fetches_and_deletes_over_stls() {
    let Some(fetchmail) = testkit::require("fetchmail", "fetchmail") else {
        return;
    };
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    inst.deliver(
        "new",
        "1700000001.M1P1.host",
        b"Subject: one\n\n.first\n",
        1_700_000_001,
    );
    inst.deliver(
        "new",
        "1700000002.M2P2.host",
        b"Subject: two\n\nsecond\n",
        1_700_000_002,
    );
    let server = Server::start(tls_chain(&inst));
    let work = inst.dir.path().join("fetchmail");
    fs::create_dir(&work).unwrap();
    let mbox = work.join("mbox");
    let rc = work.join("fetchmailrc");
    fs::write(
        &rc,
        format!(
            "set no bouncemail\n\
             poll 127.0.0.1 port {} proto pop3 auth password\n  \
             user \"{USER}\" there with password \"{PASSWORD}\" is root here\n  \
             sslproto \"tls1.2+\" no sslcertck\n  \
             mda \"/bin/sh -c 'cat >> {}'\"\n  \
             fetchall no keep\n",
            server.port,
            mbox.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = testkit::run(
        Command::new(fetchmail)
            .env("HOME", &work)
            .env("FETCHMAILHOME", &work)
            .args(["--nodetach", "--nosyslog", "-v", "-f"])
            .arg(&rc),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "fetchmail:\n{out}\n{err}");
    eprintln!("fetchmail said:\n{out}{err}");
    let text = fs::read_to_string(&mbox).unwrap();
    assert!(
        text.contains("Subject: one") && text.contains("\n.first") && text.contains("second"),
        "{text}"
    );
    assert!(
        out.contains("STLS") || err.contains("STLS"),
        "fetchmail used STLS:\n{out}\n{err}"
    );
    assert!(
        !out.contains("wrong size") && !err.contains("wrong size"),
        "{out}{err}"
    );
    inst.wait_log("reason=quit", 1);
    assert!(
        inst.names("new").is_empty() && inst.names("cur").is_empty(),
        "fetched messages deleted"
    );
    assert!(inst.log_text().contains("tls=yes"), "{}", inst.log_text());
}

#[test]
fn a_large_message_through_tls_arrives_intact() {
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    // 4 MB: long lines, short lines, dot lines, a final line without LF.
    let mut body = b"Subject: big\n\n".to_vec();
    for i in 0..40_000u32 {
        match i % 4 {
            0 => body.extend_from_slice(format!(".dot line {i}\n").as_bytes()),
            1 => body.extend_from_slice(&[b'x'; 200]),
            2 => body.extend_from_slice(b"\n\n"),
            _ => body.extend_from_slice(format!("line {i}\n").as_bytes()),
        }
    }
    body.extend_from_slice(b"end without newline");
    let path = inst.deliver("new", "1700000000.big.host", &body, 1_700_000_000);
    let size = crlf_size(&body);
    let server = Server::start(tls_chain(&inst));
    python_with(
        &server,
        &format!(
            "{CLIENT_CONTEXT}{}",
            r#"
import hashlib
p = connect()
p.stls(context=ctx)
p.user(USER); p.pass_(PASSWORD)
resp, lines, octets = p.retr(1)
expect(octets == int(sys.argv[4]), (octets, sys.argv[4]))
want = open(sys.argv[5], 'rb').read().replace(b'\n', b'\r\n').split(b'\r\n')
expect(lines == want, 'content differs')
p.quit()
"#
        ),
        &[&size.to_string(), path.to_str().unwrap()],
    );
    inst.wait_log("reason=quit", 1);
}

/// The chain with postern-tlsd -i (implicit TLS, POP3S) in front.
fn implicit_chain(inst: &Instance) -> impl Fn() -> Command + Send + 'static {
    inst.factory(&[
        TLSD,
        "-i",
        &POPUP,
        "pop.example.test",
        inst.checkpw.to_str().unwrap(),
        &POP3D,
    ])
}

#[test]
fn implicit_tls_pop3s_with_poplib() {
    let inst = Instance::new();
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    // TLS from the first byte satisfies pop3requiretls; STLS is not offered.
    inst.control("pop3requiretls", "yes\n");
    inst.deliver(
        "new",
        "1700000000.M1P1.host",
        b"Subject: over 995\n\nbody\n",
        1_700_000_000,
    );
    let server = Server::start(implicit_chain(&inst));
    let out = python(
        &server,
        &format!(
            "{CLIENT_CONTEXT}{}",
            r#"
p = poplib.POP3_SSL('127.0.0.1', port, context=ctx, timeout=30)
print(p.sock.version())
caps = p.capa()
expect('STLS' not in caps and 'USER' in caps, caps)
try:
    p._shortcmd('STLS'); expect(False, 'STLS inside TLS')
except poplib.error_proto as e:
    expect(e.args[0] == b'-ERR TLS is already active', e)
p.user(USER); p.pass_(PASSWORD)
expect(p.stat()[0] == 1, 'one message')
resp, lines, octets = p.retr(1)
expect(lines == [b'Subject: over 995', b'', b'body'], lines)
p.quit()
"#
        ),
    );
    assert!(out.starts_with("TLSv1."), "{out}");
    inst.wait_log("event=logout", 1);
    let log = inst.log_text();
    assert!(
        log.contains("event=tls ip=127.0.0.1 version=TLSv1.3 cipher=TLS13_"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "event=login user={USER} ip=127.0.0.1 tls=yes version=TLSv1.3"
        )),
        "{log}"
    );
}

#[test]
fn implicit_tls_needs_a_certificate_and_a_tls_client() {
    let inst = Instance::new();
    // No certificate: fatal, never cleartext on a TLS port.
    let (code, _out, err) = testkit::run(
        &mut inst.command(&[TLSD, "-i", "true"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(111), "{err}");
    assert!(err.contains("control/tls/cert.pem"), "{err}");
    if make_cert(&inst.home.join("control/tls"), false).is_none() {
        return;
    }
    // A client that never starts TLS: the handshake fails, the program never runs.
    let marker = inst.dir.path().join("ran");
    let script = format!("echo ran > {}", marker.display());
    let (code, out, err) = testkit::run(
        &mut inst.command(&[TLSD, "-i", "sh", "-c", &script]),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(!marker.exists(), "the program ran without TLS");
    let server = Server::start(implicit_chain(&inst));
    python(
        &server,
        r#"
r = Raw()
r.send(b'USER someone\r\n')
data = b''
try:
    while True:
        d = r.s.recv(4096)
        if not d: break
        data += d
except ConnectionResetError:
    pass
expect(b'+OK' not in data, data)
"#,
    );
    inst.wait_log("event=tlsfail", 1);
}
