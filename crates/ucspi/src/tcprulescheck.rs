//! `postern-tcprulescheck CDB [ADDRESS]`: show which rule tcpserver would apply, in
//! classic tcprulescheck's words. The client is `ADDRESS` if given, else
//! `$TCPREMOTEIP`, with `$TCPREMOTEHOST` and `$TCPREMOTEINFO` if set.

use crate::rules::{lookup, Client};
use postern_common::cdb::Reader;
use postern_common::{getopt, Error, Result, ResultExt};
use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const USAGE: &str = "postern-tcprulescheck rules.cdb [address]";

pub fn main() -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let text = report(
        &getopt::args(),
        env("TCPREMOTEIP"),
        env("TCPREMOTEHOST"),
        env("TCPREMOTEINFO"),
    )?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .temp("unable to write output")
}

/// The report for the given arguments and environment values.
pub fn report(
    args: &[OsString],
    ip: Option<String>,
    host: Option<String>,
    info: Option<String>,
) -> Result<String> {
    let (_opts, operands) = getopt::parse(args, "", USAGE)?;
    let (cdb, ip) = match operands.as_slice() {
        [cdb] => (cdb, ip.unwrap_or_else(|| "0.0.0.0".to_string())),
        [cdb, addr] => (cdb, addr.to_string_lossy().into_owned()),
        _ => return Err(Error::usage(USAGE)),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| Error::perm(format!("not an IP address: {ip}")))?;
    let path = Path::new(cdb);
    let what = format!("unable to read {}", path.display());
    let reader = Reader::open(path).temp(&what)?;
    let client = Client {
        ip,
        host: host.as_deref(),
        info: info.as_deref(),
    };
    let d = lookup(&reader, &client).temp(&what)?;
    let mut out = String::new();
    match &d.key {
        None => out.push_str("default:\n"),
        Some(k) => out.push_str(&format!("rule {}:\n", String::from_utf8_lossy(k))),
    }
    if d.deny {
        out.push_str("deny connection\n");
        return Ok(out);
    }
    for (k, v) in &d.env {
        out.push_str("set environment variable ");
        out.push_str(&String::from_utf8_lossy(k.as_bytes()));
        out.push('=');
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        out.push('\n');
    }
    out.push_str("allow connection\n");
    Ok(out)
}
