//! `postern-tcprules CDB TMP < RULES`: compile access rules into the cdb tcpserver reads
//! (ours and classic ucspi-tcp's). The whole source is parsed first, so a bad line
//! leaves the old cdb in force; then TMP is written, fsynced and renamed onto CDB, and
//! the directory fsynced.

use crate::rules::compile;
use postern_common::cdb::Writer;
use postern_common::{getopt, Error, Result, ResultExt};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const USAGE: &str = "postern-tcprules rules.cdb rules.tmp < rules";
/// Largest rules source accepted on stdin.
pub const MAX_SOURCE: u64 = 256 * 1024 * 1024;

pub fn main() -> Result<()> {
    run(&getopt::args(), &mut std::io::stdin().lock())
}

pub fn run(args: &[OsString], input: &mut dyn Read) -> Result<()> {
    let (_opts, operands) = getopt::parse(args, "", USAGE)?;
    let [cdb, tmp] = operands.as_slice() else {
        return Err(Error::usage(USAGE));
    };
    let mut source = Vec::new();
    input
        .take(MAX_SOURCE + 1)
        .read_to_end(&mut source)
        .temp("unable to read input")?;
    if source.len() as u64 > MAX_SOURCE {
        return Err(Error::perm(format!(
            "input is larger than {MAX_SOURCE} bytes"
        )));
    }
    let records = compile(&source).map_err(Error::perm)?;
    let mut w = Writer::new();
    for (k, v) in &records {
        w.add(k, v).perm("unable to create cdb")?;
    }
    let bytes = w.finish().perm("unable to create cdb")?;
    install(&bytes, Path::new(cdb), Path::new(tmp))
}

/// Write TMP, fsync, rename onto CDB, fsync the directory; remove TMP on failure.
fn install(bytes: &[u8], cdb: &Path, tmp: &Path) -> Result<()> {
    let result = (|| -> Result<()> {
        let what = format!("unable to write {}", tmp.display());
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(tmp)
            .temp(&what)?;
        f.write_all(bytes).temp(&what)?;
        f.sync_all().temp(&what)?;
        drop(f);
        fs::rename(tmp, cdb).temp(format!(
            "unable to move {} to {}",
            tmp.display(),
            cdb.display()
        ))?;
        let dir = postern_common::atomic::parent_dir(cdb);
        postern_common::atomic::fsync_dir(&dir).temp(format!("unable to sync {}", dir.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}
