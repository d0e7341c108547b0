//! postern-qstat: how many messages are in the queue, in qmail-qstat's words
//! (docs/postern-qstat.md). Counts directory entries only: `mess/` (taken over by
//! postern-send) plus `new/` (committed, not yet taken over).

use crate::layout::Queue;
use postern_common::{Error, Result, ResultExt};
use std::path::Path;

/// Usage line.
pub const USAGE: &str = "postern-qstat";

/// Entries in `dir` whose names do not start with a dot.
pub fn count_entries(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).temp(format!("unable to read {}", dir.display()))? {
        let entry = entry.temp(format!("unable to read {}", dir.display()))?;
        if !entry.file_name().as_encoded_bytes().starts_with(b".") {
            n += 1;
        }
    }
    Ok(n)
}

/// The two counts: (all messages, not yet preprocessed).
pub fn counts(queue: &Queue) -> Result<(u64, u64)> {
    let new = count_entries(&queue.new_dir())?;
    let mess = count_entries(&queue.mess())?;
    Ok((new + mess, new))
}

/// The report, as qmail-qstat prints it.
pub fn report(queue: &Queue) -> Result<String> {
    let (all, new) = counts(queue)?;
    Ok(format!(
        "messages in queue: {all}\nmessages in queue but not yet preprocessed: {new}\n"
    ))
}

/// The program.
pub fn main() -> Result<()> {
    if !postern_common::getopt::args().is_empty() {
        return Err(Error::usage(USAGE));
    }
    let queue = Queue::for_home(&postern_common::home::postern_home());
    print!("{}", report(&queue)?);
    Ok(())
}
