//! `postern-tcpserver`: accept TCP connections and run a program for each, with the
//! UCSPI environment and fd 0 = fd 1 = the socket.
//!
//! The parent binds, drops privileges (`-u`/`-g`/`-U`) before any client byte is read,
//! and runs one loop that polls the listening socket, a signalfd (SIGCHLD, SIGTERM)
//! and a wake-up socket. An accepted connection is set up — banner, names, rules
//! (reopening the cdb every time), program — by the loop itself when nothing of that
//! can wait on the network (`-H -R`, no banner: the usual case), else by a
//! short-lived thread with a small stack ([`connection::STACK_SIZE`]) that reports the
//! program's pid and ends. The loop alone owns the slots ([`limits`]) and reaps the
//! children on SIGCHLD, so the parent's memory grows with connections being set up,
//! not with programs running: it stays small under `postern-softlimit`. A connection
//! whose thread cannot be started is closed and logged; the listener carries on.
//! At the `-c` limit the loop stops accepting (classic), unless `-M` gives a line for
//! the clients it cannot serve: then it accepts each one, sends that line without
//! waiting and closes ([`turn_away`]), and it answers the clients over `-C` the same
//! way. SIGTERM makes the parent exit 0 at once; running programs are separate processes
//! and carry on.

pub mod connection;
pub mod limits;
pub mod options;

use connection::{Report, Shared};
use limits::{Ended, Limits};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use options::{Config, Verbosity};
use postern_common::logline::LogLine;
use postern_common::{getopt, privilege, Error, Result, ResultExt};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

pub const PROG: &str = "postern-tcpserver";
/// Pause after a failed accept (e.g. out of descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub fn main() -> Result<()> {
    // Before any thread: connection threads allocate from the main heap (see there).
    postern_common::sys::one_malloc_arena();
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
    let signals = signal_fd()?;
    serve(listener, config, signals)
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
    // The address and port in the message: "address in use" alone does not say which.
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| match e {
        nix::errno::Errno::EADDRINUSE => {
            Error::temp(format!("unable to bind {addr}: address in use"))
        }
        e => Error::temp(format!(
            "unable to bind {addr}: {}",
            e.desc().to_lowercase()
        )),
    })?;
    let backlog = Backlog::new(c.backlog).unwrap_or(Backlog::MAXCONN);
    socket::listen(&fd, backlog).temp("unable to listen")?;
    Ok(TcpListener::from(fd))
}

/// `-u` without `-g` takes the uid's primary group from the password database (as
/// setuidgid does); a uid with no entry there needs `-g`. Either way the supplementary
/// groups are replaced by the one gid: nothing of root's groups survives `-u`.
fn drop_privileges(c: &Config) -> Result<()> {
    if c.uid.is_none() && c.gid.is_none() {
        return Ok(());
    }
    let gid = match (c.uid, c.gid) {
        (_, Some(gid)) => gid,
        (Some(uid), None) => match privilege::account_of(uid) {
            Some(account) => account.gid,
            None => {
                return Err(Error::perm(format!(
                    "-u {uid}: no such uid in the password database: give -g too"
                )))
            }
        },
        (None, None) => nix::unistd::getgid().as_raw(),
    };
    let uid = c.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    privilege::drop_to(uid, gid)
}

/// Block SIGTERM and SIGCHLD (before any thread exists, so every thread inherits the
/// mask; programs are spawned with an empty mask) and take them from a signalfd.
fn signal_fd() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGCHLD);
    set.thread_block().temp("unable to block signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .temp("unable to create a signalfd")
}

/// IPv4-mapped IPv6 addresses (from a dual-stack `::` socket) are shown as IPv4, so
/// IPv4 rules and logs apply to them.
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The accept loop: poll, take signals, reports and connections, never block
/// elsewhere.
fn serve(listener: TcpListener, config: Config, signals: SignalFd) -> Result<()> {
    listener
        .set_nonblocking(true)
        .temp("unable to set up the listening socket")?;
    let (wake_rx, wake_tx) = UnixStream::pair().temp("unable to create a socket pair")?;
    wake_rx
        .set_nonblocking(true)
        .and_then(|_| wake_tx.set_nonblocking(true))
        .temp("unable to set up the socket pair")?;
    let (tx, rx) = mpsc::channel();
    let mut limits = Limits::new(config.limit, config.per_ip);
    let verbose = config.verbosity == Verbosity::Verbose;
    // -M: keep accepting at the limit, to answer the clients that cannot be served.
    let answer_full = !config.full_message.is_empty();
    let shared = Arc::new(Shared {
        config,
        reports: tx,
        wake: wake_tx,
    });
    loop {
        let accepting = if limits.full() && !answer_full {
            PollFlags::empty()
        } else {
            PollFlags::POLLIN
        };
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), accepting),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).temp("unable to poll"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready[0] {
            take_signals(&signals, &rx, &mut limits, verbose);
        }
        if ready[1] {
            let mut buf = [0u8; 256];
            while matches!((&wake_rx).read(&mut buf), Ok(n) if n > 0) {}
            take_reports(&rx, &mut limits, verbose);
        }
        if ready[2] && (answer_full || !limits.full()) {
            accept_one(&listener, &shared, &mut limits);
        }
    }
}

/// SIGTERM: exit 0 now, leaving the children running (classic behaviour). SIGCHLD:
/// reap every child that has ended.
fn take_signals(signals: &SignalFd, rx: &Receiver<Report>, limits: &mut Limits, verbose: bool) {
    let mut child = false;
    while let Ok(Some(info)) = signals.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGTERM) => std::process::exit(0),
            Ok(Signal::SIGCHLD) => child = true,
            _ => {}
        }
    }
    if child {
        reap(rx, limits, verbose);
    }
}

/// Apply the connection threads' reports to the slots. A program the loop has reaped
/// already gets its `end` line now (its thread wrote `start` before reporting).
fn take_reports(rx: &Receiver<Report>, limits: &mut Limits, verbose: bool) {
    for report in rx.try_iter() {
        match report {
            Report::Started { pid, ip } => {
                if let Some(ended) = limits.started(pid, ip) {
                    log_end(pid, ended, limits, verbose);
                }
            }
            Report::Closed { ip } => limits.release(ip),
        }
    }
}

/// Wait for every ended child and free its slot; a pid whose start has not been
/// reported yet keeps its slot until the report comes (see [`limits`]).
fn reap(rx: &Receiver<Report>, limits: &mut Limits, verbose: bool) {
    take_reports(rx, limits, verbose);
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(s) => s,
        };
        let Some(pid) = status.pid() else { continue };
        let pid = pid.as_raw() as u32;
        let ended = match status {
            WaitStatus::Exited(_, code) => Ended::Exit(code),
            WaitStatus::Signaled(_, sig, _) => Ended::Signal(sig as i32),
            _ => Ended::Unknown,
        };
        if limits.reaped(pid, ended) {
            log_end(pid, ended, limits, verbose);
        }
    }
}

/// The `end` line of a program whose slot has just been freed.
fn log_end(pid: u32, ended: Ended, limits: &Limits, verbose: bool) {
    if !verbose {
        return;
    }
    let mut line = LogLine::event("end")
        .kv("pid", pid)
        .kv("status", format!("{}/{}", limits.active(), limits.limit()));
    match ended {
        Ended::Exit(code) => line.push("exit", code),
        Ended::Signal(sig) => line.push("signal", sig),
        Ended::Unknown => line.push("exit", "unknown"),
    }
    line.emit();
}

/// Close a connection the limits do not allow, after writing `message` (the `-M`
/// line; nothing when empty) with one send that never waits: the socket is fresh, its
/// send buffer empty, and the line short, so it fits; if it does not, it is lost, not
/// waited for. No thread, no lookup, no rules: a flood of clients at the limit costs
/// the loop an accept, a send and a close each.
fn turn_away(stream: std::net::TcpStream, message: &[u8]) {
    use socket::MsgFlags;
    if !message.is_empty() {
        let _ = socket::send(
            stream.as_raw_fd(),
            message,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
    }
    drop(stream);
}

/// Accept one connection and set it up, in a thread if that may wait.
fn accept_one(listener: &TcpListener, shared: &Arc<Shared>, limits: &mut Limits) {
    let config = &shared.config;
    let (stream, peer) = match listener.accept() {
        Ok(x) => x,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            return
        }
        Err(e) => {
            if config.verbosity != Verbosity::Quiet {
                LogLine::event("error")
                    .kv("reason", format!("unable to accept: {e}"))
                    .emit();
            }
            // E.g. out of descriptors: let some connections end first.
            std::thread::sleep(ACCEPT_RETRY);
            return;
        }
    };
    let ip = plain_ip(peer.ip());
    if limits.full() {
        // Only with -M: the loop does not accept at the limit otherwise.
        turn_away(stream, &config.full_message);
        if config.verbosity != Verbosity::Quiet {
            LogLine::event("refuse")
                .kv("reason", "full")
                .kv("ip", ip)
                .kv("port", peer.port())
                .kv("status", format!("{}/{}", limits.active(), limits.limit()))
                .emit();
        }
        return;
    }
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let Some(active) = limits.take(ip) else {
        turn_away(stream, &config.full_message);
        if config.verbosity != Verbosity::Quiet {
            LogLine::event("refuse")
                .kv("reason", "perip")
                .kv("ip", ip)
                .kv("port", peer.port())
                .emit();
        }
        return;
    };
    if !connection::may_block(config) {
        // Nothing here waits on the network: no thread to start, no report to wait for.
        match connection::setup(stream, config, ip, active) {
            Some(pid) => {
                if let Some(ended) = limits.started(pid, ip) {
                    log_end(pid, ended, limits, config.verbosity == Verbosity::Verbose);
                }
            }
            None => limits.release(ip),
        }
        return;
    }
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("connection".into())
        .stack_size(connection::STACK_SIZE)
        .spawn(move || connection::handle_in_thread(stream, &thread_shared, ip, active));
    if let Err(e) = spawned {
        // The closure (and with it the stream) is dropped: the client sees a close.
        limits.release(ip);
        if config.verbosity != Verbosity::Quiet {
            LogLine::event("error")
                .kv("ip", ip)
                .kv("reason", format!("unable to start thread: {e}"))
                .emit();
        }
    }
}
