//! `postern-setuidgid account child...`: become `account` (its uid, its primary gid and
//! no other groups), then exec the child — daemontools' setuidgid. The drop is checked:
//! if root could be regained, the child is not run.

use crate::chain;
use postern_common::privilege;
use postern_common::{Error, Kind, Result};

pub const USAGE: &str = "postern-setuidgid account child";

pub fn main() -> Result<()> {
    let args = postern_common::getopt::args();
    if args.len() < 2 {
        return Err(Error::usage(USAGE));
    }
    let name = args[0].to_str().ok_or_else(|| Error::usage(USAGE))?;
    // The classic tool treats an unknown account as temporary (111): the account may be
    // created by an install that is still running.
    let account = privilege::lookup_account(name).map_err(|e| Error {
        kind: Kind::Temp,
        ..e
    })?;
    privilege::become_account(&account)?;
    chain::exec(&args[1..])
}
