//! postern-tlsd's command line: find the certificate, drop root, start the program with
//! pipes and a control socket, relay, and exit with the program's status. Without a
//! certificate it simply becomes the program (no STARTTLS offered). With `-i` (implicit
//! TLS, ports 465 and 995) the handshake comes first and the program is started on the
//! decrypted stream, told of TLS by `POSTERN_TLS_VERSION` and `POSTERN_TLS_CIPHER`; a
//! certificate is then required.

use crate::{certs, proxy};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use postern_common::exit::EXIT_TEMP;
use postern_common::logline::LogLine;
use postern_common::{getopt, home, privilege, Error, Result, ResultExt};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const USAGE: &str = "postern-tlsd [-i] [-c CERT] [-k KEY] [-u UID] [-g GID] PROGRAM...";
/// The environment variable that names the control descriptor for the program.
pub const ENV_FD: &str = "POSTERN_TLS_FD";
/// Set for the program under implicit TLS: the version and cipher of the handshake.
pub const ENV_VERSION: &str = postern_common::starttls::ENV_VERSION;
pub const ENV_CIPHER: &str = postern_common::starttls::ENV_CIPHER;

fn path_opt(opts: &[getopt::Opt], letter: char) -> Option<PathBuf> {
    opts.iter()
        .rev()
        .find(|o| o.letter == letter)
        .and_then(|o| o.arg.clone())
        .map(PathBuf::from)
}

/// A uid or gid from an option (number, or for -u an account name) or the environment.
fn id_opt(opts: &[getopt::Opt], letter: char, env: &str) -> Result<Option<(u32, Option<u32>)>> {
    let text = match opts.iter().rev().find(|o| o.letter == letter) {
        Some(o) => o.text()?.to_string(),
        None => match std::env::var(env) {
            Ok(v) if !v.is_empty() => v,
            _ => return Ok(None),
        },
    };
    if let Ok(n) = text.parse::<u32>() {
        return Ok(Some((n, None)));
    }
    if letter == 'u' {
        let account = privilege::lookup_account(&text)?;
        return Ok(Some((account.uid, Some(account.gid))));
    }
    Err(Error::usage(format!(
        "-{letter} needs a number, not {text:?}"
    )))
}

/// As root: become -u/-g (or $UID/$GID) for good. Never run the program as root.
fn drop_root(opts: &[getopt::Opt]) -> Result<()> {
    if !privilege::is_root() {
        return Ok(());
    }
    let uid = id_opt(opts, 'u', "UID")?;
    let gid = id_opt(opts, 'g', "GID")?
        .map(|(g, _)| g)
        .or(uid.and_then(|(_, g)| g));
    match (uid, gid) {
        (Some((uid, _)), Some(gid)) if uid != 0 => privilege::drop_to(uid, gid),
        _ => Err(Error::perm(
            "refusing to run the program as root: give -u UID -g GID or set $UID and $GID",
        )),
    }
}

pub fn main() -> Result<()> {
    let (opts, program) = getopt::parse(&getopt::args(), "ic:k:u:g:", USAGE)?;
    if program.is_empty() {
        return Err(Error::usage(USAGE));
    }
    let implicit = opts.iter().any(|o| o.letter == 'i');
    let tls_dir = home::postern_home().join("control").join("tls");
    let explicit = path_opt(&opts, 'c').is_some();
    let cert = path_opt(&opts, 'c').unwrap_or_else(|| tls_dir.join("cert.pem"));
    let key = path_opt(&opts, 'k').unwrap_or_else(|| tls_dir.join("key.pem"));
    let have_cert = match std::fs::metadata(&cert) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit && !implicit => false,
        Err(e) => return Err(Error::io(format!("unable to read {}", cert.display()), &e)),
    };
    // The key is read while we may still be root; nothing after this point can read it.
    let config = if have_cert {
        Some(certs::load(&cert, &key)?)
    } else {
        None
    };
    drop_root(&opts)?;
    let Some(config) = config else {
        let err = postern_common::sys::with_default_signals(&mut Command::new(&program[0]))
            .args(&program[1..])
            .env_remove(ENV_FD)
            .env_remove(ENV_VERSION)
            .env_remove(ENV_CIPHER)
            .exec();
        return Err(Error::io(
            format!("unable to run {}", program[0].to_string_lossy()),
            &err,
        ));
    };
    // The program's status is ours: passed on silently, as an interface code.
    match serve(config, &program, implicit)? {
        0 => Ok(()),
        code => Err(Error::code(code, "")),
    }
}

/// Start the program on pipes, relay, and return its exit code. With `implicit`, the
/// handshake is done first (a client that fails it is logged and the program never
/// runs: exit 0) and the program gets no control socket.
fn serve(
    config: std::sync::Arc<rustls::ServerConfig>,
    program: &[OsString],
    implicit: bool,
) -> Result<i32> {
    let ip = std::env::var("TCPREMOTEIP").unwrap_or_default();
    let mut net_in = File::from(
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .temp("unable to use stdin")?,
    );
    let mut net_out = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .temp("unable to use stdout")?,
    );
    let established = if implicit {
        proxy::set_nonblocking(&net_in)?;
        proxy::set_nonblocking(&net_out)?;
        let deadline = std::time::Instant::now() + proxy::HANDSHAKE_TIMEOUT;
        match proxy::accept(&mut net_in, &mut net_out, &config, deadline) {
            Ok(conn) => Some(conn),
            Err(reason) => {
                LogLine::event("tlsfail")
                    .kv("ip", &ip)
                    .kv("reason", &reason)
                    .emit();
                return Ok(0);
            }
        }
    } else {
        None
    };
    let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).temp("unable to create a pipe")?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).temp("unable to create a pipe")?;
    let mut cmd = Command::new(&program[0]);
    postern_common::sys::with_default_signals(&mut cmd)
        .args(&program[1..])
        .stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w));
    let (mine, theirs) = match &established {
        Some(conn) => {
            let version = proxy::version_name(conn.protocol_version());
            let cipher = proxy::cipher_name(conn);
            LogLine::event("tls")
                .kv("ip", &ip)
                .kv("version", &version)
                .kv("cipher", &cipher)
                .emit();
            cmd.env_remove(ENV_FD)
                .env(ENV_VERSION, version)
                .env(ENV_CIPHER, cipher);
            (None, None)
        }
        None => {
            let (mine, theirs) = UnixStream::pair().temp("unable to create the control socket")?;
            // The program's end must survive exec; ours must not.
            fcntl(theirs.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
                .temp("unable to pass the control socket")?;
            cmd.env(ENV_FD, theirs.as_raw_fd().to_string())
                .env_remove(ENV_VERSION)
                .env_remove(ENV_CIPHER);
            (Some(mine), Some(theirs))
        }
    };
    let mut child = cmd
        .spawn()
        .temp(format!("unable to run {}", program[0].to_string_lossy()))?;
    drop(cmd); // our copies of the program's pipe ends
    drop(theirs);
    let ends = proxy::Ends {
        net_in,
        net_out,
        prog_in: File::from(in_w),
        prog_out: File::from(out_r),
        ctl: mine,
    };
    let relayed = proxy::relay(ends, config, &ip, established);
    let status = child.wait().temp("unable to wait for the program")?;
    relayed?;
    Ok(status.code().unwrap_or(EXIT_TEMP))
}
