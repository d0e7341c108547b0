//! postern-popup: greeting, CAPA, USER/PASS, AUTH PLAIN, failures, limits.

use crate::*;
use postern_testkit as testkit;
use std::fs;
use std::process::Command;
use std::time::Duration;

#[test]
fn bad_usage_exits_100_with_one_line() {
    let (code, _out, err) = testkit::run(
        Command::new(&*POPUP).arg("host.test"),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(100));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("postern-popup: usage: postern-popup"),
        "{err}"
    );
}

#[test]
fn greeting_capa_and_login_with_poplib() {
    let inst = Instance::new();
    inst.deliver(
        "new",
        "1700000000.M1P1.host",
        b"Subject: hi\n\nhello\n",
        1_700_000_000,
    );
    let chain = inst.chain_factory();
    let server = Server::start(chain);
    let out = python(
        &server,
        r#"
p = connect()
g = p.getwelcome()
expect(g.startswith(b'+OK <') and g.endswith(b'@pop.example.test>'), g)
caps = p.capa()
print(sorted(caps))
for c in ['USER', 'SASL', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']:
    expect(c in caps, c)
expect(caps['SASL'] == ['PLAIN'], caps['SASL'])
expect('STLS' not in caps, 'STLS without postern-tlsd')
expect('IMPLEMENTATION' not in caps, caps)
expect(p.noop().startswith(b'+OK'), 'noop')
try:
    p.stat()
    expect(False, 'STAT before login')
except poplib.error_proto as e:
    expect(b'authorization first' in e.args[0], e)
p.user(USER)
p.pass_(PASSWORD)
expect(p.stat() == (1, 22), p.stat())
caps = p.capa()
expect('TOP' in caps and 'UIDL' in caps, caps)
expect('IMPLEMENTATION' not in caps, caps)
p.quit()
"#,
    );
    assert!(out.contains("USER"), "{out}");
    inst.wait_log("event=login", 1);
    let log = inst.log_text();
    assert!(
        log.contains(&format!(
            "event=login user={USER} ip=127.0.0.1 tls=no messages=1 bytes=22"
        )),
        "{log}"
    );
}

#[test]
fn auth_plain_with_initial_response_and_continuation() {
    let inst = Instance::new();
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
cred = base64.b64encode(b'\0' + USER.encode() + b'\0' + PASSWORD.encode())
r = Raw(); r.line()
r.send(b'AUTH\r\n')
expect(r.line() == b'+OK mechanisms follow', 'list')
expect(r.line() == b'PLAIN' and r.line() == b'.', 'PLAIN listed')
r.send(b'AUTH PLAIN ' + cred + b'\r\n')
l = r.line(); expect(l.startswith(b'+OK 0 messages'), l)
r.send(b'QUIT\r\n'); expect(r.line() == b'+OK bye', 'bye')

r = Raw(); r.line()
r.send(b'AUTH PLAIN\r\n'); expect(r.line() == b'+ ', 'continuation')
r.send(b'*\r\n'); l = r.line(); expect(l == b'-ERR authentication cancelled', l)
r.send(b'AUTH PLAIN\r\n'); expect(r.line() == b'+ ', 'continuation')
r.send(cred + b'\r\n')
l = r.line(); expect(l.startswith(b'+OK 0 messages'), l)
r.send(b'QUIT\r\n'); expect(r.line() == b'+OK bye', 'bye')

r = Raw(); r.line()
r.send(b'AUTH CRAM-MD5\r\n'); l = r.line(); expect(l.startswith(b'-ERR'), l)
bad = base64.b64encode(b'\0' + USER.encode() + b'\0wrong')
r.send(b'AUTH PLAIN ' + bad + b'\r\n'); l = r.line(); expect(l == b'-ERR [AUTH] authentication failed', l)
proxy = base64.b64encode(b'root\0' + USER.encode() + b'\0' + PASSWORD.encode())
r.send(b'AUTH PLAIN ' + proxy + b'\r\n'); l = r.line(); expect(l.startswith(b'-ERR [AUTH]'), l)
"#,
    );
    inst.wait_log("event=logout", 2);
    assert!(
        inst.log_text().contains("mech=plain"),
        "{}",
        inst.log_text()
    );
}

#[test]
fn three_failed_logins_then_the_connection_closes() {
    let inst = Instance::new();
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
r = Raw(); r.line()
r.send(b'PASS x\r\n'); expect(r.line() == b'-ERR USER first', 'USER first')
for i in range(3):
    r.send(b'USER ' + USER.encode() + b'\r\n'); expect(r.line().startswith(b'+OK'), 'user')
    r.send(b'PASS wrong' + str(i).encode() + b'\r\n')
    l = r.line()
    expect(l.startswith(b'-ERR [AUTH] authentication failed'), l)
expect(b'too many' in l, l)
expect(r.closed(), 'closed after three failures')
"#,
    );
    inst.wait_log("event=loginfail", 3);
    let log = inst.log_text();
    assert!(
        log.contains(&format!(
            "event=loginfail ip=127.0.0.1 tls=no reason=auth user={USER} mech=user failures=3"
        )),
        "{log}"
    );
    assert!(
        !log.contains("wrong"),
        "passwords never reach the log: {log}"
    );
}

#[test]
fn command_lines_are_limited_to_255_octets() {
    let inst = Instance::new();
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
r = Raw(); r.line()
r.send(b'NOOP ' + b'x' * 248 + b'\r\n')   # 255 octets with CRLF: fine
l = r.line(); expect(l == b'+OK', l)
r.send(b'NOOP ' + b'x' * 249 + b'\r\n')   # 256: refused, then closed
l = r.line(); expect(l == b'-ERR line too long', l)
expect(r.closed(), 'closed after a long line')
r = Raw(); r.line()
r.send(b'NO\0OP\r\n'); l = r.line(); expect(l == b'-ERR syntax error', l)
r.send(b'noop\n'); l = r.line(); expect(l == b'+OK', 'bare LF accepted')
r.send(b'QUIT\r\n'); expect(r.line() == b'+OK bye', 'bye')
"#,
    );
}

#[test]
fn pipelined_commands_after_pass_reach_pop3d() {
    let inst = Instance::new();
    inst.deliver("new", "1.a.host", b"A: 1\n\nx\n", 1_600_000_000);
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
r = Raw(); r.line()
r.send(b'CAPA\r\nUSER ' + USER.encode() + b'\r\nPASS ' + PASSWORD.encode() + b'\r\nSTAT\r\nUIDL\r\nRETR 1\r\nQUIT\r\n')
lines = []
while True:
    l = r.line()
    if l == b'' and r.closed():
        break
    lines.append(l)
i = lines.index(b'.')   # end of CAPA
got = lines[i+1:]
want = [b'+OK send PASS', b'+OK 1 messages (11 octets)', b'+OK 1 11', b'+OK listing follows', b'1 1.a.host', b'.',
        b'+OK 11 octets', b'A: 1', b'', b'x', b'.', b'+OK bye']
expect(got == want, got)
"#,
    );
}

#[test]
fn requiretls_without_tlsd_refuses_passwords() {
    let inst = Instance::new();
    inst.control("pop3requiretls", "1\n");
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
p = connect()
caps = p.capa()
expect('USER' not in caps and 'SASL' not in caps, caps)
try:
    p.user(USER)
    expect(False, 'USER accepted')
except poplib.error_proto as e:
    expect(e.args[0].startswith(b'-ERR [AUTH] plaintext authentication disallowed'), e)
r = Raw(); r.line()
r.send(b'AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n'); l = r.line(); expect(l.startswith(b'-ERR [AUTH] plaintext'), l)
r.send(b'STLS\r\n'); l = r.line(); expect(l == b'-ERR STLS not available', l)
"#,
    );
}

#[test]
fn missing_maildir_and_crashing_checker_get_sys_codes() {
    let inst = Instance::new();
    fs::remove_dir_all(&inst.maildir).unwrap();
    let crash = inst.dir.path().join("crash");
    testkit::write_script(&crash, "#!/bin/sh\nkill -SEGV $$\n");
    let server = Server::start(inst.chain_factory());
    let crash_chain = inst.factory(&[&POPUP, "pop.example.test", crash.to_str().unwrap(), &POP3D]);
    let crash_server = Server::start(crash_chain);
    python(
        &server,
        r#"
p = connect()
p.user(USER)
try:
    p.pass_(PASSWORD)
    expect(False, 'login without a Maildir')
except poplib.error_proto as e:
    expect(e.args[0] == b'-ERR [SYS/PERM] mailbox unavailable', e)
"#,
    );
    python(
        &crash_server,
        r#"
p = connect()
p.user(USER)
try:
    p.pass_(PASSWORD)
    expect(False, 'login with a crashing checker')
except poplib.error_proto as e:
    expect(e.args[0] == b'-ERR [SYS/TEMP] aack, child crashed', e)
"#,
    );
    assert!(
        inst.log_text()
            .contains("postern-pop3d: fatal: no Maildir at"),
        "{}",
        inst.log_text()
    );
}

#[test]
fn with_postern_checkpassword_and_a_postern_user_mailbox() {
    let checkpassword = testkit::workspace_bin("postern-checkpassword");
    let user_tool = testkit::workspace_bin("postern-user");
    let inst = Instance::new();
    fs::create_dir(inst.home.join("users")).unwrap();
    inst.chown(&inst.home);
    let password = "tangerine orbit lantern 42";
    let user_cmd = |args: &[&str], stdin: &str| {
        let mut argv = vec![user_tool.to_str().unwrap()];
        argv.extend_from_slice(args);
        let mut cmd = inst.command(&argv);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "postern-user {args:?}: {}",
            inst.log_text()
        );
    };
    user_cmd(
        &[
            "domain",
            "add",
            "example.test",
            "--postmaster",
            "root@elsewhere.test",
        ],
        "",
    );
    user_cmd(&["add", USER], &format!("{password}\n"));
    let maildir = inst.home.join("users/example.test/alice/Maildir");
    let msg = maildir.join("new/1700000000.M1P1.host");
    fs::write(&msg, b"Subject: real\n\nvia postern-checkpassword\n").unwrap();
    inst.chown(&msg);
    let server = Server::start(inst.factory(&[
        &POPUP,
        "pop.example.test",
        checkpassword.to_str().unwrap(),
        &POP3D,
    ]));
    python_with(
        &server,
        r#"
p = connect()
p.user(USER)
try:
    p.pass_('wrong password')
    expect(False, 'wrong password accepted')
except poplib.error_proto as e:
    expect(e.args[0] == b'-ERR [AUTH] authentication failed', e)
p.user(USER)
p.pass_(sys.argv[4])
expect(p.retr(1)[1][-1] == b'via postern-checkpassword', 'message')
p.quit()
"#,
        &[password],
    );
    inst.wait_log("event=logout", 1);
    let log = inst.log_text();
    assert!(
        log.contains(&format!(
            "event=login user={USER} ip=127.0.0.1 tls=no messages=1"
        )),
        "{log}"
    );
    assert!(
        log.contains("event=authfail"),
        "postern-checkpassword logs the failure: {log}"
    );
    assert_eq!(fs::read_dir(maildir.join("cur")).unwrap().count(), 1);
}

#[test]
fn the_chain_under_ucspi_tcp_tcpserver() {
    let Some(tcpserver) = testkit::require("tcpserver", "ucspi-tcp") else {
        return;
    };
    let inst = Instance::new();
    inst.deliver(
        "new",
        "1700000000.M1P1.host",
        b"Subject: classic\n\nhi\n",
        1_700_000_000,
    );
    let checkpw = inst.checkpw.to_str().unwrap().to_string();
    let tcpserver = tcpserver.to_str().unwrap().to_string();
    let mut cmd = inst.command(&[
        &tcpserver,
        "-1",
        "-R",
        "-H",
        "127.0.0.1",
        "0",
        &POPUP,
        "pop.example.test",
        &checkpw,
        &POP3D,
    ]);
    cmd.stdout(std::process::Stdio::piped());
    let mut daemon = testkit::Daemon::spawn("tcpserver", cmd);
    // -1: tcpserver prints the port it bound.
    let mut port = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(daemon.child_mut().stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port: u16 = port.trim().parse().expect("port from tcpserver -1");
    let out = {
        let mut c = Command::new("python3");
        c.arg("-c")
            .arg(format!(
                "{PRELUDE}\np = login()\nexpect(p.retr(1)[1] == [b'Subject: classic', b'', b'hi'], 'retr')\np.quit()\nprint('ok')\n"
            ))
            .arg(port.to_string())
            .arg(USER)
            .arg(PASSWORD);
        testkit::run(&mut c, Duration::from_secs(60))
    };
    assert_eq!(out.0, Some(0), "{out:?}");
    inst.wait_log("reason=quit", 1);
    assert!(
        inst.log_text().contains("ip=127.0.0.1"),
        "TCPREMOTEIP from tcpserver: {}",
        inst.log_text()
    );
    drop(daemon);
}
