//! Antivirus engines from `control/scanners`, several at once (AMaViS style), one per line:
//!
//! - `clamd:/path/to/clamd.sock` or `clamd:HOST:PORT` — clamd's INSTREAM protocol over a
//!   unix or TCP socket: `zINSTREAM\0`, then chunks of `u32be length` + bytes, then a zero
//!   length; the answer is `stream: OK` or `stream: SIGNATURE FOUND`.
//! - `command:/path/to/scanner [ARGS…]` — runs the program with the message in a
//!   temporary file as its last argument. Exit 0 = clean; exit 1 = infected, and the first
//!   line of its output names the signature; anything else (or a crash) = scanner error.
//!
//! - `rspamd:HOST:PORT` or `rspamd:/path/to/socket` (`rspamd:` alone is 127.0.0.1:11333)
//!   and `spamd:HOST:PORT` or `spamd:/path/to/socket` (`spamd:` alone is 127.0.0.1:783)
//!   — *score* engines ([`crate::scan::rspamd`], [`crate::scan::spamd`]): they do not
//!   find viruses but score spam, and [`crate::scan::spam`] asks them after the virus
//!   scan.
//!
//! A scanner that cannot be reached or answers nonsense is an *error*, never "clean": the
//! caller answers 451 (or lets the mail through only if `control/scanfailopen` says so).

use postern_common::control::Line;
use postern_common::{Error, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bytes per INSTREAM chunk.
pub const CHUNK: usize = 64 * 1024;
/// Longest answer we read from clamd.
pub const MAX_REPLY: u64 = 4096;
/// How long one engine may take for one message.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    ClamdUnix(PathBuf),
    ClamdTcp(String),
    Command(Vec<String>),
    Rspamd(Endpoint),
    Spamd(Endpoint),
}

/// Where a score engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT`, resolved at each connection.
    Tcp(String),
}

/// rspamd's normal worker, where Debian's rspamd listens.
pub const RSPAMD_DEFAULT: &str = "127.0.0.1:11333";
/// spamd's port (spamc's default).
pub const SPAMD_DEFAULT: &str = "127.0.0.1:783";

/// A connected score-engine socket, either kind.
pub trait Stream: Read + Write {
    /// Say we have sent everything (spamd reads to the end; harmless for rspamd).
    fn shutdown_write(&self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Stream for UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Endpoint {
    /// `/socket/path`, `HOST:PORT`, or empty for `default`.
    fn parse(addr: &str, default: &str) -> Option<Endpoint> {
        if addr.is_empty() {
            Some(Endpoint::Tcp(default.to_string()))
        } else if addr.starts_with('/') {
            Some(Endpoint::Unix(PathBuf::from(addr)))
        } else if host_port(addr) {
            Some(Endpoint::Tcp(addr.to_string()))
        } else {
            None
        }
    }

    /// Connect within `limit`, with `limit` as the read and write timeout too.
    pub fn connect(&self, limit: Duration) -> std::io::Result<Box<dyn Stream>> {
        match self {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(limit))?;
                s.set_write_timeout(Some(limit))?;
                Ok(Box::new(s))
            }
            Endpoint::Tcp(addr) => {
                use std::net::ToSocketAddrs;
                let mut last = std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{addr}: no address"),
                );
                for a in addr.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&a, limit) {
                        Ok(s) => {
                            s.set_read_timeout(Some(limit))?;
                            s.set_write_timeout(Some(limit))?;
                            return Ok(Box::new(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => f.write_str(a),
        }
    }
}

/// `HOST:PORT` with a host and a port number.
fn host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .map(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .unwrap_or(false)
}

impl Engine {
    /// How the engine is named in logs and alerts.
    pub fn name(&self) -> String {
        match self {
            Engine::ClamdUnix(p) => format!("clamd:{}", p.display()),
            Engine::ClamdTcp(a) => format!("clamd:{a}"),
            Engine::Command(argv) => format!("command:{}", argv[0]),
            Engine::Rspamd(e) => format!("rspamd:{e}"),
            Engine::Spamd(e) => format!("spamd:{e}"),
        }
    }

    /// A spam-score engine (asked by [`crate::scan::spam`]), not a virus scanner.
    pub fn is_score(&self) -> bool {
        matches!(self, Engine::Rspamd(_) | Engine::Spamd(_))
    }
}

/// What one engine said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Infected(String),
}

/// Parse `control/scanners` lines.
pub fn parse(lines: &[Line]) -> Result<Vec<Engine>> {
    lines
        .iter()
        .map(|l| {
            let bad = |why: &str| Error::temp(format!("control/scanners:{}: {why}", l.number));
            if let Some(addr) = l.text.strip_prefix("clamd:") {
                if addr.starts_with('/') {
                    Ok(Engine::ClamdUnix(PathBuf::from(addr)))
                } else if host_port(addr) {
                    Ok(Engine::ClamdTcp(addr.to_string()))
                } else {
                    Err(bad("clamd: needs /socket/path or host:port"))
                }
            } else if let Some(cmd) = l.text.strip_prefix("command:") {
                let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
                if argv.is_empty() {
                    return Err(bad("command: needs a program"));
                }
                Ok(Engine::Command(argv))
            } else if let Some(addr) = l.text.strip_prefix("rspamd:") {
                Endpoint::parse(addr.trim(), RSPAMD_DEFAULT)
                    .map(Engine::Rspamd)
                    .ok_or_else(|| bad("rspamd: needs /socket/path or host:port"))
            } else if let Some(addr) = l.text.strip_prefix("spamd:") {
                Endpoint::parse(addr.trim(), SPAMD_DEFAULT)
                    .map(Engine::Spamd)
                    .ok_or_else(|| bad("spamd: needs /socket/path or host:port"))
            } else {
                Err(bad(
                    "expected clamd:SOCKET, command:PROGRAM, rspamd:ADDRESS or spamd:ADDRESS",
                ))
            }
        })
        .collect()
}

/// Talk INSTREAM over any stream.
fn instream<S: Read + Write>(mut s: S, message: &[u8]) -> std::io::Result<String> {
    s.write_all(b"zINSTREAM\0")?;
    for chunk in message.chunks(CHUNK) {
        s.write_all(&(chunk.len() as u32).to_be_bytes())?;
        s.write_all(chunk)?;
    }
    s.write_all(&0u32.to_be_bytes())?;
    s.flush()?;
    let mut reply = Vec::new();
    s.take(MAX_REPLY).read_to_end(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply)
        .trim_end_matches(['\0', '\n'])
        .to_string())
}

/// Turn clamd's answer into a verdict.
pub fn clamd_verdict(reply: &str) -> std::result::Result<Verdict, String> {
    let body = reply.strip_prefix("stream: ").unwrap_or(reply);
    if body == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(sig) = body.strip_suffix(" FOUND") {
        Ok(Verdict::Infected(sig.to_string()))
    } else {
        Err(format!(
            "unexpected clamd answer: {}",
            postern_common::logline::printable(reply)
        ))
    }
}

/// Most bytes of a command scanner's output we keep (its first line names the signature).
pub const MAX_OUTPUT: u64 = 4096;

/// Run a command scanner on `file` in its own process group, at most `limit` long (then
/// the whole group is killed and it counts as a scanner error). Returns its exit code and
/// the first line of its output.
fn run_command(
    argv: &[String],
    file: &Path,
    limit: Duration,
) -> std::result::Result<(Option<i32>, String), String> {
    use std::os::unix::process::CommandExt;
    let mut child = postern_common::sys::with_default_signals(&mut Command::new(&argv[0]))
        .args(&argv[1..])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| postern_common::exit::describe_io(&e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    // Read at most MAX_OUTPUT bytes; dropping the pipe then makes a chatty scanner stop.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.take(MAX_OUTPUT).read_to_end(&mut out);
        out
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(None) | Err(_) => {
                let group = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    let first = String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((status.code(), first))
}

/// Scan `message` (stored in `file`) with one engine.
pub fn scan(engine: &Engine, message: &[u8], file: &Path) -> std::result::Result<Verdict, String> {
    let io = |e: std::io::Error| {
        format!(
            "{}: {}",
            engine.name(),
            postern_common::exit::describe_io(&e)
        )
    };
    match engine {
        Engine::ClamdUnix(path) => {
            let s = UnixStream::connect(path).map_err(io)?;
            s.set_read_timeout(Some(SCAN_TIMEOUT)).map_err(io)?;
            s.set_write_timeout(Some(SCAN_TIMEOUT)).map_err(io)?;
            clamd_verdict(&instream(s, message).map_err(io)?)
        }
        Engine::ClamdTcp(addr) => {
            let s = TcpStream::connect(addr).map_err(io)?;
            s.set_read_timeout(Some(SCAN_TIMEOUT)).map_err(io)?;
            s.set_write_timeout(Some(SCAN_TIMEOUT)).map_err(io)?;
            clamd_verdict(&instream(s, message).map_err(io)?)
        }
        Engine::Rspamd(_) | Engine::Spamd(_) => Err(format!(
            "{}: a score engine, asked by the spam check, not the virus scan",
            engine.name()
        )),
        Engine::Command(argv) => {
            let (status, first) = run_command(argv, file, SCAN_TIMEOUT)
                .map_err(|why| format!("{}: {why}", engine.name()))?;
            match status {
                Some(0) => Ok(Verdict::Clean),
                Some(1) => Ok(Verdict::Infected(if first.is_empty() {
                    "unnamed".into()
                } else {
                    first
                })),
                other => Err(format!(
                    "{}: scanner failed (status {other:?})",
                    engine.name()
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::control::parse_lines;

    #[test]
    fn parses_engines_and_names_bad_lines() {
        let lines = parse_lines(
            "clamd:/run/clamav/clamd.ctl\nclamd:127.0.0.1:3310\ncommand:/usr/bin/scan -q\n",
        );
        let engines = parse(&lines).unwrap();
        assert_eq!(
            engines[0],
            Engine::ClamdUnix("/run/clamav/clamd.ctl".into())
        );
        assert_eq!(engines[1], Engine::ClamdTcp("127.0.0.1:3310".into()));
        assert_eq!(
            engines[2],
            Engine::Command(vec!["/usr/bin/scan".into(), "-q".into()])
        );
        let e = parse(&parse_lines("# x\nclamd:nowhere\n")).unwrap_err();
        assert_eq!(
            e.msg,
            "control/scanners:2: clamd: needs /socket/path or host:port"
        );
        assert!(parse(&parse_lines("sophos:x\n")).is_err());
    }

    #[test]
    fn parses_score_engines_with_their_default_addresses() {
        let lines = parse_lines(
            "rspamd:\nrspamd:10.0.0.2:11333\nspamd:/run/spamd.sock\nspamd:\nclamd:127.0.0.1:3310\n",
        );
        let engines = parse(&lines).unwrap();
        assert_eq!(
            engines[0],
            Engine::Rspamd(Endpoint::Tcp("127.0.0.1:11333".into()))
        );
        assert_eq!(engines[0].name(), "rspamd:127.0.0.1:11333");
        assert_eq!(
            engines[1],
            Engine::Rspamd(Endpoint::Tcp("10.0.0.2:11333".into()))
        );
        assert_eq!(
            engines[2],
            Engine::Spamd(Endpoint::Unix("/run/spamd.sock".into()))
        );
        assert_eq!(engines[3].name(), "spamd:127.0.0.1:783");
        assert!(engines[..4].iter().all(Engine::is_score));
        assert!(!engines[4].is_score());
        let e = parse(&parse_lines("spamd:nowhere\n")).unwrap_err();
        assert_eq!(
            e.msg,
            "control/scanners:1: spamd: needs /socket/path or host:port"
        );
    }

    #[test]
    fn a_hung_command_scanner_is_killed_and_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("msg");
        std::fs::write(&file, "x").unwrap();
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            "sleep 30 & sleep 30".to_string(),
        ];
        let started = std::time::Instant::now();
        let err = run_command(&argv, &file, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err, "no answer within 0 s");
        assert!(started.elapsed() < Duration::from_secs(10));
        let chatty = vec![
            "sh".to_string(),
            "-c".to_string(),
            "yes FOUND; exit 1".to_string(),
        ];
        let (code, first) = run_command(&chatty, &file, Duration::from_secs(20)).unwrap();
        assert_ne!(code, Some(0));
        assert_eq!(first, "FOUND");
    }

    #[test]
    fn clamd_answers() {
        assert_eq!(clamd_verdict("stream: OK"), Ok(Verdict::Clean));
        assert_eq!(
            clamd_verdict("stream: Eicar-Test-Signature FOUND"),
            Ok(Verdict::Infected("Eicar-Test-Signature".into()))
        );
        assert!(clamd_verdict("INSTREAM size limit exceeded. ERROR").is_err());
    }
}
