//! End-to-end tests of the acceptance family: the real binaries, in temp dirs, on
//! loopback, against the classic ucspi-tcp tools, tinycdb and dnsmasq where they matter.

mod pregreet;
mod rblsmtpd;
mod tcprules;
mod tcprulescheck;

mod tcpserver;

use postern_testkit::{tempdir, Daemon, TempDir};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn bin(name: &str) -> PathBuf {
    match name {
        "postern-tcpserver" => PathBuf::from(env!("CARGO_BIN_EXE_postern-tcpserver")),
        "postern-tcprules" => PathBuf::from(env!("CARGO_BIN_EXE_postern-tcprules")),
        "postern-tcprulescheck" => PathBuf::from(env!("CARGO_BIN_EXE_postern-tcprulescheck")),
        "postern-rblsmtpd" => PathBuf::from(env!("CARGO_BIN_EXE_postern-rblsmtpd")),
        "postern-pregreet" => PathBuf::from(env!("CARGO_BIN_EXE_postern-pregreet")),
        other => panic!("unknown binary {other}"),
    }
}

/// Compile `rules` with `tcprules` (ours or classic) into `dir/NAME.cdb`.
pub fn compile_with(tcprules: &Path, dir: &Path, name: &str, rules: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let cdb = dir.join(format!("{name}.cdb"));
    let tmp = dir.join(format!("{name}.tmp"));
    let mut child = Command::new(tcprules)
        .arg(&cdb)
        .arg(&tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcprules");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server started with `-1`: the port it printed, and its stderr lines as they come.
pub struct Server {
    pub daemon: Daemon,
    pub port: u16,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Start `cmd` (which must print its port with -1) and read the port.
    pub fn start(mut cmd: Command) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut daemon = Daemon::spawn("server", cmd);
        let stdout = daemon.child_mut().stdout.take().unwrap();
        let stderr = daemon.child_mut().stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port printed: {line:?}"));
        Server { daemon, port, log }
    }

    /// Wait for a log line containing every one of `parts`, and return it.
    pub fn wait_log(&self, parts: &[&str]) -> String {
        let mut found = String::new();
        postern_testkit::expect_within(TIMEOUT, &format!("log line with {parts:?}"), || {
            let log = self.log.lock().unwrap();
            match log.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                Some(l) => {
                    found = l.clone();
                    true
                }
                None => false,
            }
        });
        found
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Connect to `addr`, send nothing, read until EOF (bounded by TIMEOUT).
pub fn read_all(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A temp dir with a shell script `name` in it.
pub fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path().join(name);
    postern_testkit::write_script(&path, body);
    path
}

/// A dnsmasq answering for zen.test (blocklist) and allow.test (allow list) only.
pub struct Dnsmasq {
    _daemon: Daemon,
    pub port: u16,
}

pub fn dnsmasq(dir: &TempDir) -> Option<Dnsmasq> {
    // The config file form understands \r\n escapes, so a TXT record can carry CR LF.
    let conf = dir.path().join("dnsmasq.conf");
    fs::write(
        &conf,
        "txt-record=4.0.0.127.zen.test,\"evil\\r\\n250 ok\"\n",
    )
    .unwrap();
    let records = [
        "--local=/zen.test/".to_string(),
        "--local=/allow.test/".to_string(),
        "--txt-record=2.0.0.127.zen.test,listed: go away".to_string(),
        "--txt-record=3.0.0.127.zen.test,listed too".to_string(),
        "--address=/3.0.0.127.allow.test/127.0.0.2".to_string(),
        format!("--conf-file={}", conf.display()),
    ];
    let (daemon, port) = postern_testkit::dnsmasq(&records)?;
    Some(Dnsmasq {
        _daemon: daemon,
        port,
    })
}

/// An instance whose control/resolvers names `server`.
pub fn instance(server: &str) -> TempDir {
    let home = tempdir();
    fs::create_dir(home.path().join("control")).unwrap();
    fs::write(
        home.path().join("control/resolvers"),
        format!("# test DNS\n{server}\n"),
    )
    .unwrap();
    home
}
