//! `postern-tcpserver`: accept TCP connections and run a program for each, with the
//! UCSPI environment and fd 0 = fd 1 = the socket (interop §3.1).
//!
//! The parent binds, drops privileges (`-u`/`-g`/`-U`) before any client byte is read,
//! and runs the accept loop. Each connection gets a thread that writes the banner,
//! looks up names, checks the rules (reopening the cdb every time), spawns the program
//! and reaps it; the thread holds the connection's [`limits::Slot`], so the count is
//! exact without a SIGCHLD handler. SIGTERM makes the parent exit 0 at once; running
//! programs are separate processes and carry on.

pub mod connection;
pub mod limits;
pub mod options;

use limits::Limits;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};
use options::{Config, Verbosity};
use postern_common::logline::LogLine;
use postern_common::{getopt, privilege, Error, Result, ResultExt};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

pub const PROG: &str = "postern-tcpserver";
/// Pause after a failed accept (e.g. out of descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub fn main() -> Result<()> {
    let config = options::parse(&getopt::args())?;
    let listener = bind(&config)?;
    drop_privileges(&config)?;
    let local = listener.local_addr().temp("unable to get local address")?;
    if config.print_port {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", local.port())
            .and_then(|_| out.flush())
            .temp("unable to print port")?;
    }
    // Classic tcpserver closes stdin and stdout; /dev/null keeps fds 0 and 1 taken.
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .temp("unable to open /dev/null")?;
    nix::unistd::dup2_stdin(&null).temp("unable to close stdin")?;
    nix::unistd::dup2_stdout(&null).temp("unable to close stdout")?;
    exit_on_sigterm()?;
    serve(listener, Arc::new(config))
}

/// Bind with SO_REUSEADDR and the requested backlog.
fn bind(c: &Config) -> Result<TcpListener> {
    let addr = SocketAddr::new(c.host, c.port);
    let family = if c.host.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .temp("unable to create socket")?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).temp("unable to set SO_REUSEADDR")?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| match e {
        nix::errno::Errno::EADDRINUSE => Error::temp("unable to bind: address in use"),
        e => Error::temp(format!("unable to bind: {}", e.desc().to_lowercase())),
    })?;
    let backlog = Backlog::new(c.backlog).unwrap_or(Backlog::MAXCONN);
    socket::listen(&fd, backlog).temp("unable to listen")?;
    Ok(TcpListener::from(fd))
}

fn drop_privileges(c: &Config) -> Result<()> {
    if c.uid.is_none() && c.gid.is_none() {
        return Ok(());
    }
    let uid = c.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let gid = c.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw());
    privilege::drop_to(uid, gid)
}

/// SIGTERM: exit 0 now, leaving the children running (classic behaviour). The signal
/// is blocked here, before any other thread exists, and taken by one waiting thread.
fn exit_on_sigterm() -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.thread_block().temp("unable to block SIGTERM")?;
    std::thread::Builder::new()
        .name("sigterm".into())
        .spawn(move || {
            if set.wait().is_ok() {
                std::process::exit(0);
            }
        })
        .temp("unable to start the signal thread")?;
    Ok(())
}

/// IPv4-mapped IPv6 addresses (from a dual-stack `::` socket) are shown as IPv4, so
/// IPv4 rules and logs apply to them.
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let limits = Limits::new(config.limit, config.per_ip);
    loop {
        limits.wait_for_room();
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    if config.verbosity != Verbosity::Quiet {
                        LogLine::event("error")
                            .kv("reason", format!("unable to accept: {e}"))
                            .emit();
                    }
                    std::thread::sleep(ACCEPT_RETRY);
                }
                continue;
            }
        };
        let ip = plain_ip(peer.ip());
        let Some((slot, active)) = limits.take(ip) else {
            if config.verbosity != Verbosity::Quiet {
                LogLine::event("refuse")
                    .kv("reason", "perip")
                    .kv("ip", ip)
                    .kv("port", peer.port())
                    .emit();
            }
            drop(stream);
            continue;
        };
        let conf = Arc::clone(&config);
        let lim = Arc::clone(&limits);
        let spawned = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                connection::handle(stream, &conf, &lim, slot, active);
            });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the slot) is dropped: the client
            // sees a close and the slot is freed.
            if config.verbosity != Verbosity::Quiet {
                LogLine::event("error")
                    .kv("ip", ip)
                    .kv("reason", format!("unable to start thread: {e}"))
                    .emit();
            }
        }
    }
}
