//! A DNS server on 127.0.0.1 that answers SERVFAIL to everything (servfail_dns.py, the
//! standard library only), for dnsmasq to forward a zone to: the tests' clients then
//! see dnsmasq answer SERVFAIL, as from a broken authoritative server (a dead one would
//! only time out).

use std::io::BufRead;
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("../servfail_dns.py");

/// The server (stopped on drop) and its port.
pub fn start() -> (postern_testkit::Daemon, u16) {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", SCRIPT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut daemon = postern_testkit::Daemon::spawn("servfail", cmd);
    let mut line = String::new();
    std::io::BufReader::new(daemon.child_mut().stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the SERVFAIL server's port");
    (daemon, port)
}
