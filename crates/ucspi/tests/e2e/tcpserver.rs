//! postern-tcpserver: environment, rules, limits, privileges, IPv6, signals — and the
//! rules cdb exchanged both ways with Debian's ucspi-tcp.

use crate::{bin, compile_with, read_all, script, Server, TIMEOUT};
use postern_testkit::{expect_within, require, run, tempdir};
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

/// A program that prints its UCSPI environment (and rule variables) to the client.
const PRINT_ENV: &str = "#!/bin/sh\nenv | grep -E '^(PROTO|TCP|RULE)' | sort\n";

fn server(args: &[&str], program: &[&Path]) -> Server {
    let mut cmd = Command::new(bin("postern-tcpserver"));
    cmd.args(args).args(program);
    Server::start(cmd)
}

fn env_of(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn the_program_gets_the_ucspi_environment_and_the_rule_variables() {
    let dir = tempdir();
    let child = script(&dir, "child", PRINT_ENV);
    let rules = "127.0.0.1:allow,RULEVAR=\"from rule\",TCPLOCALHOST=\"overridden.test\"\n:deny\n";
    compile_with(&bin("postern-tcprules"), dir.path(), "rules", rules);
    let cdb = dir.path().join("rules.cdb");
    let s = server(
        &[
            "-1",
            "-v",
            "-H",
            "-l",
            "local.test",
            "-x",
            cdb.to_str().unwrap(),
            "127.0.0.1",
            "0",
        ],
        &[&child],
    );
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let my_port = conn.local_addr().unwrap().port();
    let mut out = String::new();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn.read_to_string(&mut out).unwrap();
    let env = env_of(&out);
    assert_eq!(get(&env, "PROTO"), Some("TCP"), "{out}");
    assert_eq!(get(&env, "TCPLOCALIP"), Some("127.0.0.1"));
    assert_eq!(get(&env, "TCPLOCALPORT"), Some(s.port.to_string().as_str()));
    assert_eq!(get(&env, "TCPREMOTEIP"), Some("127.0.0.1"));
    assert_eq!(
        get(&env, "TCPREMOTEPORT"),
        Some(my_port.to_string().as_str())
    );
    assert_eq!(get(&env, "RULEVAR"), Some("from rule"));
    // Rule variables come last, so they override tcpserver's own.
    assert_eq!(get(&env, "TCPLOCALHOST"), Some("overridden.test"));
    assert_eq!(get(&env, "TCPREMOTEHOST"), None, "-H: no name");
    assert_eq!(get(&env, "TCPREMOTEINFO"), None);
    let start = s.wait_log(&["event=start", "ip=127.0.0.1"]);
    assert!(start.contains(&format!("port={my_port}")), "{start}");
    assert!(
        start.contains("rule=127.0.0.1") && start.contains("status=1/40"),
        "{start}"
    );
    let end = s.wait_log(&["event=end", "exit=0"]);
    assert!(end.contains("status=0/40"), "{end}");
}

#[test]
fn deny_closes_after_the_banner_without_running_the_program() {
    let dir = tempdir();
    let ran = dir.path().join("ran");
    let child = script(
        &dir,
        "child",
        &format!("#!/bin/sh\ntouch {}\necho hello\n", ran.display()),
    );
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        "127.0.0.:deny\n:allow\n",
    );
    let cdb = dir.path().join("rules.cdb");
    let s = server(
        &[
            "-1v",
            "-H",
            "-B",
            "banner\r\n",
            "-x",
            cdb.to_str().unwrap(),
            "127.0.0.1",
            "0",
        ],
        &[&child],
    );
    assert_eq!(read_all(&format!("127.0.0.1:{}", s.port)), "banner\r\n");
    s.wait_log(&["event=deny", "ip=127.0.0.1", "rule=127.0.0."]);
    assert!(!ran.exists());
    // An edit takes effect at the next connection: the cdb is reopened every time.
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        "127.0.0.1:allow\n",
    );
    assert_eq!(
        read_all(&format!("127.0.0.1:{}", s.port)),
        "banner\r\nhello\n"
    );
    assert!(ran.exists());
}

#[test]
fn a_missing_rules_file_drops_unless_x_upper() {
    let dir = tempdir();
    let child = script(&dir, "child", "#!/bin/sh\necho ran\n");
    let missing = dir.path().join("none.cdb");
    let s = server(
        &[
            "-1",
            "-H",
            "-x",
            missing.to_str().unwrap(),
            "127.0.0.1",
            "0",
        ],
        &[&child],
    );
    assert_eq!(read_all(&format!("127.0.0.1:{}", s.port)), "");
    s.wait_log(&["event=drop", "ip=127.0.0.1", "none.cdb"]);
    let s = server(
        &[
            "-1",
            "-H",
            "-X",
            "-x",
            missing.to_str().unwrap(),
            "127.0.0.1",
            "0",
        ],
        &[&child],
    );
    assert_eq!(read_all(&format!("127.0.0.1:{}", s.port)), "ran\n");
}

/// A child that records its start, waits until the test releases it, then finishes.
fn held_child(dir: &Path) -> std::path::PathBuf {
    let body = format!(
        "#!/bin/sh\nd={d}\ntouch $d/started.$$\nwhile [ ! -e $d/release.$$ ]; do sleep 0.02; done\ntouch $d/done.$$\necho done\n",
        d = dir.display()
    );
    let path = dir.join("held");
    postern_testkit::write_script(&path, &body);
    path
}

fn pids(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix(prefix)
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

fn running(dir: &Path) -> Vec<String> {
    let done = pids(dir, "done.");
    pids(dir, "started.")
        .into_iter()
        .filter(|p| !done.contains(p))
        .collect()
}

#[test]
fn c_2_runs_exactly_two_at_a_time_and_the_others_wait() {
    let dir = tempdir();
    let child = held_child(dir.path());
    let s = server(&["-1v", "-H", "-c", "2", "127.0.0.1", "0"], &[&child]);
    let addr = format!("127.0.0.1:{}", s.port);
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let a = addr.clone();
            std::thread::spawn(move || read_all(&a))
        })
        .collect();
    for finished in 0..5 {
        let expect = (5 - finished).min(2);
        expect_within(TIMEOUT, &format!("{expect} running"), || {
            running(dir.path()).len() == expect
        });
        let now = running(dir.path());
        assert_eq!(now.len(), expect, "{now:?}");
        fs::write(dir.path().join(format!("release.{}", now[0])), "").unwrap();
        expect_within(TIMEOUT, "child to finish", || {
            !running(dir.path()).contains(&now[0])
        });
    }
    for c in clients {
        assert_eq!(
            c.join().unwrap(),
            "done\n",
            "every waiting client was served"
        );
    }
    assert_eq!(pids(dir.path(), "started.").len(), 5);
    expect_within(TIMEOUT, "5 end lines", || {
        s.log_lines()
            .iter()
            .filter(|l| l.contains("event=end"))
            .count()
            == 5
    });
    for line in s.log_lines().iter().filter(|l| l.contains("event=start")) {
        assert!(
            line.contains("status=1/2") || line.contains("status=2/2"),
            "{line}"
        );
    }
}

/// Connect from a chosen loopback source address.
pub fn connect_from(src: &str, port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    let src: std::net::SocketAddrV4 = format!("{src}:0").parse().unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::from(src)).unwrap();
    let dst: std::net::SocketAddrV4 = format!("127.0.0.1:{port}").parse().unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[test]
fn c_upper_1_limits_each_address_not_the_server() {
    let dir = tempdir();
    let child = held_child(dir.path());
    let s = server(&["-1v", "-H", "-C", "1", "0", "0"], &[&child]);
    let mut first = connect_from("127.0.0.1", s.port);
    expect_within(TIMEOUT, "first child", || running(dir.path()).len() == 1);
    let mut second = connect_from("127.0.0.1", s.port);
    let mut buf = String::new();
    second.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "", "over the per-IP limit: closed, nothing written");
    s.wait_log(&["event=refuse", "reason=perip", "ip=127.0.0.1"]);
    let mut other = connect_from("127.0.0.2", s.port);
    expect_within(TIMEOUT, "a child for the other address", || {
        running(dir.path()).len() == 2
    });
    for pid in running(dir.path()) {
        fs::write(dir.path().join(format!("release.{pid}")), "").unwrap();
    }
    for conn in [&mut first, &mut other] {
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        assert_eq!(out, "done\n");
    }
    assert_eq!(pids(dir.path(), "started.").len(), 2);
}

#[test]
#[ignore = "needs root: change ids"]
fn privileges_are_dropped_after_bind() {
    postern_testkit::require_root("change ids");
    let dir = tempdir();
    let child = script(
        &dir,
        "child",
        "#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G)\"\n",
    );
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let s = server(
        &["-1", "-H", "-u", "65534", "-g", "65534", "127.0.0.1", "0"],
        &[&child],
    );
    assert_eq!(
        read_all(&format!("127.0.0.1:{}", s.port)),
        "65534 65534 65534\n"
    );
    let uid = postern_testkit::proc_status_field(s.daemon.pid(), "Uid").unwrap();
    assert!(
        uid.split_whitespace().all(|u| u == "65534"),
        "parent uid {uid}"
    );
    // No supplementary groups at all (classic tcpserver keeps the one gid there): a
    // setuid program it starts could not drop them.
    let groups = postern_testkit::proc_status_field(s.daemon.pid(), "Groups").unwrap();
    assert_eq!(groups, "");
    // -U takes the ids from $UID and $GID, as envuidgid sets them.
    let mut cmd = Command::new(bin("postern-tcpserver"));
    cmd.args(["-1", "-H", "-U", "127.0.0.1", "0"])
        .arg(&child)
        .env("UID", "65534")
        .env("GID", "65533");
    let s = Server::start(cmd);
    assert_eq!(
        read_all(&format!("127.0.0.1:{}", s.port)),
        "65534 65533 65533\n"
    );
}

#[test]
fn ipv6_loopback_and_dual_stack() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let dir = tempdir();
    let child = script(&dir, "child", PRINT_ENV);
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        "::1:allow,RULE6=\"yes\"\n",
    );
    let cdb = dir.path().join("rules.cdb");
    let s = server(
        &["-1", "-H", "-x", cdb.to_str().unwrap(), "::1", "0"],
        &[&child],
    );
    let env = env_of(&read_all(&format!("[::1]:{}", s.port)));
    assert_eq!(get(&env, "TCPREMOTEIP"), Some("::1"));
    assert_eq!(get(&env, "TCPLOCALIP"), Some("::1"));
    assert_eq!(get(&env, "RULE6"), Some("yes"));
    // `::` takes IPv4 clients too; they appear as plain IPv4.
    let s = server(&["-1", "-H", "::", "0"], &[&child]);
    let env = env_of(&read_all(&format!("127.0.0.1:{}", s.port)));
    assert_eq!(get(&env, "TCPREMOTEIP"), Some("127.0.0.1"));
}

#[test]
fn sigterm_exits_0_and_leaves_the_children_running() {
    let dir = tempdir();
    let child = held_child(dir.path());
    let mut s = server(&["-1", "-H", "127.0.0.1", "0"], &[&child]);
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    expect_within(TIMEOUT, "child started", || running(dir.path()).len() == 1);
    s.daemon.signal(libc::SIGTERM);
    let status = s.daemon.wait_exit(TIMEOUT).expect("parent exits");
    assert_eq!(status.code(), Some(0));
    let pid = running(dir.path()).remove(0);
    fs::write(dir.path().join(format!("release.{pid}")), "").unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    assert_eq!(out, "done\n", "the child outlived the parent");
}

#[test]
fn usage_errors_and_a_port_in_use() {
    for args in [
        vec![],
        vec!["-Z", "0", "0", "true"],
        vec!["0", "0"],
        vec!["-c", "many", "0", "0", "true"],
    ] {
        let (code, _out, err) = run(Command::new(bin("postern-tcpserver")).args(&args), TIMEOUT);
        assert_eq!(code, Some(100), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("postern-tcpserver: usage: "), "{err}");
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _out, err) = run(
        Command::new(bin("postern-tcpserver")).args(["127.0.0.1", &port, "true"]),
        TIMEOUT,
    );
    assert_eq!(code, Some(111));
    assert_eq!(
        err,
        format!("postern-tcpserver: fatal: unable to bind 127.0.0.1:{port}: address in use\n")
    );
}

/// tcpserver reads TERM and CHLD through a signalfd (so keeps them blocked), and may
/// itself have been started with INT and QUIT ignored; the program it starts for a
/// connection gets none of that. `cp` (not a shell, which might reset its own mask)
/// copies its own /proc status out.
#[test]
fn the_program_starts_with_no_signal_blocked_or_ignored() {
    let dir = tempdir();
    let out = dir.path().join("status");
    for args in [&["-H", "-R"][..], &[][..]] {
        let _ = fs::remove_file(&out);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("trap '' INT QUIT; exec \"$@\"")
            .arg("sh")
            .arg(bin("postern-tcpserver"))
            .args(args)
            .args(["-1", "-v", "127.0.0.1", "0", "/bin/cp", "/proc/self/status"])
            .arg(&out);
        let s = Server::start(cmd);
        let conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        s.wait_log(&["event=end"]);
        drop(conn);
        let status = fs::read_to_string(&out).unwrap();
        for field in ["SigBlk:", "SigIgn:"] {
            let value = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .unwrap()
                .trim();
            // Bits 31 and 32 are glibc's own real-time signals.
            let ours = u64::from_str_radix(value, 16).unwrap() & 0x7fff_ffff;
            assert_eq!(ours, 0, "{args:?}: {field} {value}");
        }
    }
}

#[test]
fn classic_tcpserver_enforces_our_cdb() {
    let Some(classic) = require("tcpserver", "ucspi-tcp") else {
        return;
    };
    let dir = tempdir();
    let child = script(&dir, "child", PRINT_ENV);
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        "127.0.0.2:deny\n127.0.0.:allow,RULEVAR=\"ours\"\n",
    );
    let cdb = dir.path().join("rules.cdb");
    let mut cmd = Command::new(classic);
    cmd.args([
        "-1",
        "-H",
        "-R",
        "-l",
        "0",
        "-x",
        cdb.to_str().unwrap(),
        "0",
        "0",
    ])
    .arg(&child);
    let s = Server::start(cmd);
    let env = env_of(&read_all(&format!("127.0.0.1:{}", s.port)));
    assert_eq!(get(&env, "RULEVAR"), Some("ours"), "{env:?}");
    let mut denied = connect_from("127.0.0.2", s.port);
    let mut out = String::new();
    denied.read_to_string(&mut out).unwrap();
    assert_eq!(out, "", "classic tcpserver denied 127.0.0.2 from our cdb");
}

#[test]
fn we_enforce_a_cdb_classic_tcprules_compiled() {
    let Some(classic) = require("tcprules", "ucspi-tcp") else {
        return;
    };
    let dir = tempdir();
    let child = script(&dir, "child", PRINT_ENV);
    let rules = "127.0.0.2:deny\n127.0.0.1:allow,RULEVAR=\"theirs\"\n:deny\n";
    assert_eq!(
        compile_with(&classic, dir.path(), "rules", rules).0,
        Some(0)
    );
    let cdb = dir.path().join("rules.cdb");
    let s = server(
        &["-1v", "-H", "-x", cdb.to_str().unwrap(), "0", "0"],
        &[&child],
    );
    let env = env_of(&read_all(&format!("127.0.0.1:{}", s.port)));
    assert_eq!(get(&env, "RULEVAR"), Some("theirs"), "{env:?}");
    let mut denied = connect_from("127.0.0.2", s.port);
    let mut out = String::new();
    denied.read_to_string(&mut out).unwrap();
    assert_eq!(out, "");
    s.wait_log(&["event=deny", "ip=127.0.0.2", "rule=127.0.0.2"]);
    let mut default = connect_from("127.0.0.3", s.port);
    default.read_to_string(&mut out).unwrap();
    assert_eq!(out, "");
    s.wait_log(&["event=deny", "ip=127.0.0.3", "rule=\"\""]);
}

/// hickory answers the PTR of every 127/8 address with `localhost` itself (RFC 6761
/// special-use names), whose address is 127.0.0.1: enough to see -h and -p work.
#[test]
fn h_looks_up_the_remote_name_and_p_checks_it() {
    let dir = tempdir();
    // Never asked: the loopback names are answered inside the resolver.
    let home = crate::instance("127.0.0.1:9");
    let child = script(&dir, "child", PRINT_ENV);
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        "=localhost:allow,RULEVIA=\"name\"\n:allow\n",
    );
    let cdb = dir.path().join("rules.cdb");
    let start = |paranoid: bool| {
        let mut cmd = Command::new(bin("postern-tcpserver"));
        cmd.args(["-1v", "-x", cdb.to_str().unwrap()])
            .args(paranoid.then_some("-p"))
            .args(["0", "0"]);
        cmd.arg(&child).env("POSTERN_HOME", home.path());
        Server::start(cmd)
    };
    let env_from = |s: &Server, ip: &str| {
        let mut out = String::new();
        connect_from(ip, s.port).read_to_string(&mut out).unwrap();
        env_of(&out)
    };
    let s = start(true);
    let env = env_from(&s, "127.0.0.1");
    assert_eq!(get(&env, "TCPREMOTEHOST"), Some("localhost"), "{env:?}");
    assert_eq!(get(&env, "TCPLOCALHOST"), Some("localhost"), "{env:?}");
    assert_eq!(get(&env, "RULEVIA"), Some("name"));
    s.wait_log(&["event=start", "ip=127.0.0.1", "rule=\"=localhost\""]);
    // 127.0.0.5 is named localhost, whose address is 127.0.0.1: -p drops the name.
    let env = env_from(&s, "127.0.0.5");
    assert_eq!(get(&env, "TCPREMOTEHOST"), None, "{env:?}");
    assert_eq!(get(&env, "RULEVIA"), None);
    let s = start(false);
    assert_eq!(
        get(&env_from(&s, "127.0.0.5"), "TCPREMOTEHOST"),
        Some("localhost")
    );
}

/// A program that greets at once, then waits until the test releases everyone.
fn greeting_child(dir: &Path) -> std::path::PathBuf {
    let body = format!(
        "#!/bin/sh\necho ok\nwhile [ ! -e {d}/release ]; do sleep 0.05; done\necho bye\n",
        d = dir.display()
    );
    let path = dir.join("greeting");
    postern_testkit::write_script(&path, &body);
    path
}

/// Hold `n` connections to `port` open at once, each served (`ok`), then release them
/// all and check each got the rest.
fn hold_connections(dir: &Path, port: u16, n: usize) {
    use std::io::{BufRead, BufReader};
    let _ = fs::remove_file(dir.join("release"));
    let mut held = Vec::new();
    for i in 0..n {
        let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        assert_eq!(line, "ok\n", "connection {} of {n} was not served", i + 1);
        held.push(reader);
    }
    fs::write(dir.join("release"), "").unwrap();
    for (i, mut reader) in held.into_iter().enumerate() {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        assert_eq!(rest, "bye\n", "connection {} of {n}", i + 1);
    }
}

/// Regression: under `postern-softlimit -m 64000000` the listener ran out of memory
/// with a thread (2 MiB of stack) per running program: 25 of 40 connections served,
/// and a debug build aborted. The parent now only has a thread, with a small stack,
/// while a connection is set up, and reaps the programs from its loop.
#[test]
fn forty_connections_at_once_under_softlimit_64m_are_all_served() {
    let softlimit = postern_testkit::workspace_bin("postern-softlimit");
    let dir = tempdir();
    let child = greeting_child(dir.path());
    // Name lookups on (no -H): the heavier path. Loopback names are answered inside
    // the resolver; the configured server is never asked.
    let home = crate::instance("127.0.0.1:9");
    for (limit, n) in [("40", 40), ("200", 120)] {
        let mut cmd = Command::new(&softlimit);
        cmd.args(["-m", "64000000"])
            .arg(bin("postern-tcpserver"))
            .args(["-1", "-v", "-c", limit, "127.0.0.1", "0"])
            .arg(&child)
            .env("POSTERN_HOME", home.path());
        let s = Server::start(cmd);
        hold_connections(dir.path(), s.port, n);
        // Still accepting afterwards, and nothing went wrong on the way.
        hold_connections(dir.path(), s.port, 1);
        expect_within(TIMEOUT, "every program reaped", || {
            s.log_lines()
                .iter()
                .filter(|l| l.contains("event=end"))
                .count()
                == n + 1
        });
        let errors: Vec<String> = s
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("event=error") || l.contains("memory"))
            .collect();
        assert!(errors.is_empty(), "-c {limit}: {errors:?}");
        assert!(
            s.log_lines().last().unwrap().contains("status=0/"),
            "all slots free"
        );
    }
}

/// Regression: `-u` without `-g` kept gid 0 (and root's groups). It now takes the
/// uid's primary group from the password database, and refuses a uid not there.
#[test]
#[ignore = "needs root: change ids"]
fn u_without_g_takes_the_primary_group_never_gid_0() {
    postern_testkit::require_root("change ids");
    let dir = tempdir();
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let child = script(
        &dir,
        "child",
        "#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G)\"\n",
    );
    let nobody = postern_common::privilege::lookup_account("nobody").unwrap();
    assert_ne!(nobody.gid, 0);
    let uid = nobody.uid.to_string();
    let s = server(&["-1", "-H", "-u", &uid, "127.0.0.1", "0"], &[&child]);
    assert_eq!(
        read_all(&format!("127.0.0.1:{}", s.port)),
        format!("{uid} {g} {g}\n", g = nobody.gid)
    );
    let gid = postern_testkit::proc_status_field(s.daemon.pid(), "Gid").unwrap();
    assert!(
        gid.split_whitespace().all(|g| g == nobody.gid.to_string()),
        "parent gid {gid}"
    );
    let groups = postern_testkit::proc_status_field(s.daemon.pid(), "Groups").unwrap();
    assert_eq!(groups, "");
    // A uid with no account: which group is unknown, so -g is needed.
    let (code, _out, err) = run(
        Command::new(bin("postern-tcpserver")).args(["-u", "4000123", "127.0.0.1", "0", "true"]),
        TIMEOUT,
    );
    assert_eq!(code, Some(100), "{err}");
    assert_eq!(
        err,
        "postern-tcpserver: fatal: -u 4000123: no such uid in the password database: give -g too\n"
    );
}

/// A fake identd on `ip`:113 that answers one query with `USERID : UNIX : user`,
/// echoing the ports it was asked about. Returns the query it got.
fn fake_identd(ip: &str, user: &'static str) -> std::thread::JoinHandle<String> {
    let listener = TcpListener::bind((ip, 113))
        .unwrap_or_else(|e| panic!("cannot listen on {ip}:113 for a fake identd: {e}"));
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut query = String::new();
        reader.read_line(&mut query).unwrap();
        let ports = query.trim_end().to_string();
        (&conn)
            .write_all(format!("{ports} : USERID : UNIX : {user}\r\n").as_bytes())
            .unwrap();
        ports
    })
}

#[test]
#[ignore = "needs root: listen on port 113 for a fake identd"]
fn r_asks_the_clients_identd_and_info_rules_apply() {
    postern_testkit::require_root("listen on port 113 for a fake identd");
    let dir = tempdir();
    let child = script(&dir, "child", PRINT_ENV);
    let rules = "joe@127.0.0.77:allow,RULE=\"for joe\"\n:allow\n";
    compile_with(&bin("postern-tcprules"), dir.path(), "rules", rules);
    let cdb = dir.path().join("rules.cdb");
    let identd = fake_identd("127.0.0.77", "joe");
    let s = server(
        &[
            "-1",
            "-v",
            "-H",
            "-r",
            "-t",
            "5",
            "-x",
            cdb.to_str().unwrap(),
            "127.0.0.1",
            "0",
        ],
        &[&child],
    );
    let mut conn = connect_from("127.0.0.77", s.port);
    let my_port = conn.local_addr().unwrap().port();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    let env = env_of(&out);
    assert_eq!(get(&env, "TCPREMOTEINFO"), Some("joe"), "{out}");
    assert_eq!(
        get(&env, "RULE"),
        Some("for joe"),
        "the info@ip rule matched: {out}"
    );
    // RFC 1413: the query names the client's port, then ours.
    assert_eq!(identd.join().unwrap(), format!("{my_port} , {}", s.port));

    // -R: no query, no TCPREMOTEINFO; and no identd at all just leaves it unset.
    let s = server(&["-1", "-H", "-R", "127.0.0.1", "0"], &[&child]);
    let mut conn = connect_from("127.0.0.78", s.port);
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    assert_eq!(get(&env_of(&out), "TCPREMOTEINFO"), None, "{out}");
    let s = server(&["-1", "-H", "-t", "2", "127.0.0.1", "0"], &[&child]);
    let mut conn = connect_from("127.0.0.79", s.port);
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    let env = env_of(&out);
    assert_eq!(get(&env, "TCPREMOTEINFO"), None, "{out}");
    assert_eq!(get(&env, "TCPREMOTEIP"), Some("127.0.0.79"));
}

/// A program that cannot be run: the client is closed, the log says why, the slot is
/// freed, and the server goes on — whether the program is forked from the accept loop
/// (`-H -R`, no banner) or spawned from a connection thread (a banner). A program named
/// without a path is found in PATH either way.
#[test]
fn a_program_that_cannot_run_closes_the_connection_and_the_server_goes_on() {
    for banner in [None, Some("hello\r\n")] {
        let mut args = vec!["-1", "-v", "-H", "-R", "-c", "1", "127.0.0.1", "0"];
        if let Some(b) = banner {
            args.splice(0..0, ["-B", b]);
        }
        let s = server(&args, &[Path::new("/nonexistent/program")]);
        for _ in 0..3 {
            // -c 1: a slot that was never freed would make the second connection wait.
            let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            conn.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut out = String::new();
            conn.read_to_string(&mut out).unwrap();
            assert_eq!(out, banner.unwrap_or(""), "{banner:?}");
        }
        expect_within(TIMEOUT, "three error lines", || {
            s.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| {
                    l.starts_with(
                        "event=error ip=127.0.0.1 reason=\"unable to run /nonexistent/program",
                    )
                })
                .count()
                == 3
        });
        drop(s);
        let s = server(&args, &[Path::new("echo"), Path::new("found")]);
        let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        assert_eq!(out, format!("{}found\n", banner.unwrap_or("")));
    }
}

/// The line the smtpd and submission run scripts give `-M`.
const FULL_SMTP: &str = "421 4.3.2 too many connections, try again later";
/// At least 30 s for anything that should happen.
const LONG: std::time::Duration = std::time::Duration::from_secs(30);

/// Wait (up to [`LONG`]) for a log line of `s` containing every one of `parts`.
fn log_line_within(s: &Server, parts: &[&str]) -> String {
    let mut found = String::new();
    expect_within(LONG, &format!("a log line with {parts:?}"), || {
        match s
            .log_lines()
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            Some(l) => {
                found = l;
                true
            }
            None => false,
        }
    });
    found
}

/// Read what the server writes until it closes; the text and how long it took.
fn read_until_closed(conn: &mut TcpStream) -> (String, std::time::Duration) {
    let start = std::time::Instant::now();
    conn.set_read_timeout(Some(LONG)).unwrap();
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    (out, start.elapsed())
}

#[test]
fn m_answers_a_client_over_c_at_once_and_a_freed_slot_serves_normally() {
    let dir = tempdir();
    let child = held_child(dir.path());
    let s = server(
        &[
            "-1v",
            "-H",
            "-R",
            "-c",
            "2",
            "-M",
            FULL_SMTP,
            "127.0.0.1",
            "0",
        ],
        &[&child],
    );
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.1", s.port)).collect();
    expect_within(LONG, "two programs running", || {
        running(dir.path()).len() == 2
    });
    // The third client is answered and closed at once, not left in the backlog.
    let mut third = connect_from("127.0.0.1", s.port);
    let (text, took) = read_until_closed(&mut third);
    assert_eq!(text, format!("{FULL_SMTP}\r\n"));
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    log_line_within(
        &s,
        &["event=refuse", "reason=full", "ip=127.0.0.1", "status=2/2"],
    );
    assert_eq!(
        pids(dir.path(), "started.").len(),
        2,
        "no program for a client turned away"
    );
    // Several more at the limit: each answered, none served, the server unharmed.
    for _ in 0..5 {
        let mut c = connect_from("127.0.0.1", s.port);
        assert_eq!(read_until_closed(&mut c).0, format!("{FULL_SMTP}\r\n"));
    }
    // One of the two leaves: its slot serves the next client normally.
    let leaving = running(dir.path())[0].clone();
    fs::write(dir.path().join(format!("release.{leaving}")), "").unwrap();
    log_line_within(&s, &["event=end", "status=1/2"]);
    let mut next = connect_from("127.0.0.1", s.port);
    expect_within(LONG, "a program for the next client", || {
        pids(dir.path(), "started.").len() == 3 && running(dir.path()).len() == 2
    });
    for pid in running(dir.path()) {
        fs::write(dir.path().join(format!("release.{pid}")), "").unwrap();
    }
    let (text, _) = read_until_closed(&mut next);
    assert_eq!(text, "done\n", "served by the program, not turned away");
    for conn in held.iter_mut() {
        assert_eq!(read_until_closed(conn).0, "done\n");
    }
    let refused = s
        .log_lines()
        .iter()
        .filter(|l| l.contains("reason=full"))
        .count();
    assert_eq!(refused, 6);
}

#[test]
fn m_answers_a_client_over_c_upper_and_other_addresses_are_served() {
    let dir = tempdir();
    let child = held_child(dir.path());
    let s = server(
        &[
            "-1v",
            "-H",
            "-R",
            "-C",
            "1",
            "-M",
            "-ERR too many connections, try again later",
            "0",
            "0",
        ],
        &[&child],
    );
    let mut first = connect_from("127.0.0.1", s.port);
    expect_within(LONG, "first program", || running(dir.path()).len() == 1);
    let mut second = connect_from("127.0.0.1", s.port);
    let (text, _) = read_until_closed(&mut second);
    assert_eq!(text, "-ERR too many connections, try again later\r\n");
    log_line_within(&s, &["event=refuse", "reason=perip", "ip=127.0.0.1"]);
    let mut other = connect_from("127.0.0.2", s.port);
    expect_within(LONG, "a program for the other address", || {
        running(dir.path()).len() == 2
    });
    for pid in running(dir.path()) {
        fs::write(dir.path().join(format!("release.{pid}")), "").unwrap();
    }
    for conn in [&mut first, &mut other] {
        assert_eq!(read_until_closed(conn).0, "done\n");
    }
    assert_eq!(pids(dir.path(), "started.").len(), 2);
}
