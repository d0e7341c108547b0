//! postern-pop3d: the transaction and update states over a real Maildir.

use crate::*;
use postern_testkit as testkit;
use std::fs;
use std::process::Command;
use std::time::Duration;

const M1: &[u8] = b"From: a@example.test\nSubject: one\n\nfirst body\n";
const M2: &[u8] =
    b"From: b@example.test\nSubject: two\n\n.leading dot\n..two dots\nline 3\nline 4\n";
const M3: &[u8] = b"Subject: three\r\n\r\nalready CRLF\r\nno final newline";

#[test]
#[ignore = "needs root: the refusal to run as root"]
fn refuses_to_run_as_root() {
    testkit::require_root("the refusal to run as root");
    let inst = Instance::new();
    let (code, out, err) = testkit::run(
        Command::new(&*POP3D).arg(&inst.maildir),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(out, "", "nothing reaches the client");
    assert!(err.contains("event=refuse reason=root"), "{err}");
    assert!(
        err.contains("postern-pop3d: fatal: refusing to run as root"),
        "{err}"
    );
}

#[test]
fn bad_usage_exits_100() {
    let (code, _out, err) = testkit::run(
        Command::new(&*POP3D).args(["a", "b"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(100));
    assert!(err.starts_with("postern-pop3d: usage:"), "{err}");
}

#[test]
fn list_fetch_top_delete_and_quit_with_poplib() {
    let inst = Instance::new();
    inst.deliver("new", "1700000001.M1P1.host", M1, 1_700_000_001);
    inst.deliver("new", "1700000002.M2P2.host", M2, 1_700_000_002);
    inst.deliver("new", "1700000003.M3P3.host", M3, 1_700_000_003);
    let sizes = [crlf_size(M1), crlf_size(M2), crlf_size(M3)];
    let server = Server::start(inst.chain_factory());
    python_with(
        &server,
        r#"
sizes = [int(x) for x in sys.argv[4:7]]
p = login()
expect(p.stat() == (3, sum(sizes)), (p.stat(), sizes))
resp, lines, _ = p.list()
expect([l.split() for l in lines] == [[str(i+1).encode(), str(s).encode()] for i, s in enumerate(sizes)], lines)
expect(p.list(2) == b'+OK 2 %d' % sizes[1], p.list(2))
resp, lines, octets = p.retr(2)
expect(lines == [b'From: b@example.test', b'Subject: two', b'', b'.leading dot', b'..two dots', b'line 3', b'line 4'], lines)
expect(octets == sizes[1], (octets, sizes[1]))
resp, lines, octets = p.retr(3)
expect(lines == [b'Subject: three', b'', b'already CRLF', b'no final newline'], lines)
expect(octets == sizes[2], (octets, sizes[2]))
resp, lines, _ = p.top(2, 1)
expect(lines == [b'From: b@example.test', b'Subject: two', b'', b'.leading dot'], lines)
resp, lines, _ = p.top(1, 0)
expect(lines == [b'From: a@example.test', b'Subject: one', b''], lines)
u = p.uidl()[1]
expect(u == [b'1 1700000001.M1P1.host', b'2 1700000002.M2P2.host', b'3 1700000003.M3P3.host'], u)
expect(p.dele(1).startswith(b'+OK'), 'dele')
expect(p.stat() == (2, sizes[1] + sizes[2]), 'STAT leaves deleted messages out')
for cmd in [lambda: p.retr(1), lambda: p.dele(1), lambda: p.list(1)]:
    try:
        cmd(); expect(False, 'deleted message answered')
    except poplib.error_proto as e:
        expect(b'deleted' in e.args[0], e)
for bad in [b'RETR 0', b'RETR 4', b'RETR x', b'TOP 1', b'DELE', b'LIST 1 2']:
    try:
        p._shortcmd(bad.decode()); expect(False, bad)
    except poplib.error_proto:
        pass
p.rset()
expect(p.stat() == (3, sum(sizes)), 'RSET undeletes')
p.dele(1)
p.quit()
"#,
        &[
            &sizes[0].to_string(),
            &sizes[1].to_string(),
            &sizes[2].to_string(),
        ],
    );
    inst.wait_log("event=logout", 1);
    assert_eq!(inst.names("new"), Vec::<String>::new());
    // Deleted at QUIT; read ones get S, the one only listed gets no flag.
    assert_eq!(
        inst.names("cur"),
        vec!["1700000002.M2P2.host:2,S", "1700000003.M3P3.host:2,S"]
    );
    let log = inst.log_text();
    assert!(
        log.contains(&format!(
            "event=logout user={USER} ip=127.0.0.1 reason=quit retrieved=2 deleted=1 bytes={}",
            sizes[1] + sizes[2]
        )),
        "{log}"
    );
}

#[test]
fn nothing_changes_without_quit_and_uidls_are_stable() {
    let inst = Instance::new();
    inst.deliver("new", "1700000001.M1P1.host", M1, 1_700_000_001);
    inst.deliver("new", "1700000002.M2P2.host", M2, 1_700_000_002);
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
p = login()
first = p.uidl()[1]
p.retr(1)
p.dele(2)
p.sock.close()      # dropped connection: no UPDATE state
time.sleep(0)
print(first)
"#,
    );
    inst.wait_log("reason=eof", 1);
    assert_eq!(
        inst.names("new"),
        vec!["1700000001.M1P1.host", "1700000002.M2P2.host"]
    );
    assert!(inst.names("cur").is_empty());
    python(
        &server,
        r#"
p = login()
u1 = p.uidl()[1]
p.quit()
p = login()
u2 = p.uidl()[1]
expect(u1 == u2 == [b'1 1700000001.M1P1.host', b'2 1700000002.M2P2.host'], (u1, u2))
p.quit()
"#,
    );
    inst.wait_log("reason=quit", 2);
    assert_eq!(
        inst.names("cur"),
        vec!["1700000001.M1P1.host:2,", "1700000002.M2P2.host:2,"]
    );
}

#[test]
fn odd_names_and_messages_changed_by_another_session() {
    let inst = Instance::new();
    inst.deliver("cur", "1000.a,S=44:2,", M1, 1000);
    inst.deliver("cur", "1001.b:2,FRT", M1, 1001);
    inst.deliver("new", "1002.c,with,commas", M2, 1002);
    inst.deliver("cur", "1003.d:1,experimental", M1, 1003);
    inst.deliver("new", "1004.e", M1, 1004);
    inst.deliver("new", "1005.f", M1, 1005);
    inst.deliver("cur", ".hidden", M1, 999);
    fs::create_dir(inst.maildir.join("cur/1006.dir")).unwrap();
    let server = Server::start(inst.chain_factory());
    let maildir = inst.maildir.to_str().unwrap().to_string();
    python_with(
        &server,
        r#"
import os
md = sys.argv[4]
p = login()
u = p.uidl()[1]
expect(u == [b'1 1000.a,S=44', b'2 1001.b', b'3 1002.c,with,commas', b'4 1003.d', b'5 1004.e', b'6 1005.f'], u)
# Another session deletes message 5 and renames message 6 while we look.
os.unlink(md + '/new/1004.e')
os.rename(md + '/new/1005.f', md + '/cur/1005.f:2,S')
try:
    p.retr(5); expect(False, 'retr of a vanished message')
except poplib.error_proto as e:
    expect(b'removed by another session' in e.args[0], e)
expect(p.noop().startswith(b'+OK'), 'session goes on')
expect(p.retr(6)[1][-1] == b'first body', 'renamed message still readable')
p.retr(1); p.retr(2); p.retr(3); p.retr(4)
p.dele(5)
p.quit()
"#,
        &[&maildir],
    );
    inst.wait_log("reason=quit", 1);
    assert!(inst.names("new").is_empty());
    assert_eq!(
        inst.names("cur"),
        vec![
            ".hidden",
            "1000.a,S=44:2,S",
            "1001.b:2,FRST",
            "1002.c,with,commas:2,S",
            "1003.d:1,experimental",
            "1005.f:2,S",
            "1006.dir"
        ]
    );
}

#[test]
fn ten_thousand_messages() {
    let inst = Instance::new();
    let body = b"Subject: bulk\n\nline\n";
    for i in 0..10_000 {
        let path = inst
            .maildir
            .join("new")
            .join(format!("{}.M{i}P1.host", 1_700_000_000 + i / 100));
        fs::write(&path, body).unwrap();
    }
    inst.chown(&inst.maildir);
    let size = crlf_size(body);
    let server = Server::start(inst.chain_factory());
    python_with(
        &server,
        r#"
size = int(sys.argv[4])
p = login()
expect(p.stat() == (10000, 10000 * size), p.stat())
expect(len(p.list()[1]) == 10000, 'list')
u = p.uidl()[1]
expect(len(u) == 10000 and len(set(x.split()[1] for x in u)) == 10000, 'uidl unique')
expect(p.retr(10000)[1][-1] == b'line', 'last message')
p.dele(1)
p.quit()
"#,
        &[&size.to_string()],
    );
    inst.wait_log("reason=quit", 1);
    assert!(inst.names("new").is_empty());
    assert_eq!(inst.names("cur").len(), 9_999);
}

#[test]
fn stale_tmp_files_are_cleaned_at_login() {
    let inst = Instance::new();
    let old = inst.deliver("tmp", "1.stale.host", b"x", 1_000_000);
    let fresh = inst.maildir.join("tmp/2.fresh.host");
    fs::write(&fresh, b"x").unwrap();
    inst.chown(&fresh);
    let server = Server::start(inst.chain_factory());
    python(&server, "p = login()\np.quit()\n");
    assert!(!old.exists(), "tmp file older than 36 h removed");
    assert!(fresh.exists(), "recent tmp file kept");
}

#[test]
fn autologout_ends_the_session_without_update() {
    let inst = Instance::new();
    inst.deliver("new", "1.a.host", M1, 1_600_000_000);
    let argv = [
        &POPUP,
        "pop.example.test",
        inst.checkpw.to_str().unwrap(),
        &POP3D,
        "-t",
        "1",
    ];
    let server = Server::start(inst.factory(&argv));
    python(
        &server,
        r#"
p = login()
p.dele(1)
expect(p.sock.recv(100) == b'', 'closed by the server after the idle timeout')
"#,
    );
    inst.wait_log("reason=timeout", 1);
    assert_eq!(inst.names("new"), vec!["1.a.host"]);
}

/// Regression: deletions at QUIT never updated Maildir++'s `maildirsize`, so a
/// mailbox emptied over POP3 stayed "over quota". Now QUIT appends `-bytes -count`
/// for what it deleted, sizes counted as the quota code counts them (`,S=`, else the
/// file's length).
#[test]
fn deletions_at_quit_update_maildirsize() {
    use postern_mailstore::maildir::{parse_size_file, Usage};
    let inst = Instance::new();
    // The first name carries its size (,S=), which wins over the file's length.
    let named = "1700000001.M1P1.host,S=1000";
    inst.deliver("new", named, M1, 1_700_000_001);
    inst.deliver("new", "1700000002.M2P2.host", M2, 1_700_000_002);
    inst.deliver("cur", "1700000003.M3P3.host:2,S", M3, 1_700_000_003);
    let (s1, s2, s3) = (1000, M2.len() as i64, M3.len() as i64);
    let size_file = inst.maildir.join("maildirsize");
    fs::write(&size_file, format!("100000S\n{s1} 1\n{s2} 1\n{s3} 1\n")).unwrap();
    inst.chown(&size_file);
    let server = Server::start(inst.chain_factory());
    python(
        &server,
        r#"
p = login()
expect(p.stat()[0] == 3, p.stat())
p.dele(1)
p.dele(2)
p.quit()
"#,
    );
    inst.wait_log("event=logout", 1);
    assert_eq!(inst.names("new"), Vec::<String>::new());
    assert_eq!(inst.names("cur"), vec!["1700000003.M3P3.host:2,S"]);
    let text = fs::read_to_string(&size_file).unwrap();
    let parsed = parse_size_file(&text).unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(
        parsed.usage,
        Usage {
            bytes: s3,
            count: 1
        },
        "{text}"
    );
    assert_eq!(parsed.lines, 4, "one summed line for the session: {text}");
    // Without a maildirsize, none is created.
    let inst = Instance::new();
    inst.deliver("new", "1700000004.M4P4.host", M1, 1_700_000_004);
    let server = Server::start(inst.chain_factory());
    python(&server, "p = login()\np.dele(1)\np.quit()\n");
    inst.wait_log("event=logout", 1);
    assert!(!inst.maildir.join("maildirsize").exists());
}
