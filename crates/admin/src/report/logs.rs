//! Finding and reading the instance's multilog directories (`$POSTERN_HOME/log/*/`).
//!
//! A multilog directory holds archives `@TAI64N.s` (complete) and `@TAI64N.u` (recovered
//! after an unclean stop), perhaps a `previous` being rotated, and `current`. Read in that
//! order, the lines are in time order: an archive's name is the moment it was rotated.
//! Every line starts with multilog's `@TAI64N ` stamp; a line without one (multilog run
//! without `t`) takes the time of its file (the archive's name, or `current`'s mtime).

use postern_common::tai64n::Tai64n;
use postern_common::{Result, ResultExt};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Longest line kept; the rest of a longer line is skipped (multilog's own limit is lower).
pub const MAX_LINE: usize = 16 * 1024;
/// Most log directories read (an instance has half a dozen).
pub const MAX_DIRS: usize = 256;
/// Most files read per log directory (multilog keeps `n` files, default 10).
pub const MAX_FILES: usize = 10_000;

/// One multilog directory: `name` is its path under `log/` (e.g. `smtpd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    pub name: String,
    pub path: PathBuf,
}

/// One file of a log directory, with the time its lines were written before (archives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// The rotation time in an archive's name; `None` for `previous` and `current`.
    pub rotated: Option<i64>,
}

fn is_archive(name: &str) -> bool {
    name.len() == 27
        && (name.ends_with(".s") || name.ends_with(".u"))
        && Tai64n::parse_label(name.as_bytes()).is_some()
}

fn is_logdir(path: &Path) -> bool {
    if path.join("current").is_file() {
        return true;
    }
    fs::read_dir(path)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .any(|e| is_archive(&e.file_name().to_string_lossy()))
        })
        .unwrap_or(false)
}

fn subdirs(path: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(path)
        .temp(format!("unable to read {}", path.display()))?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, p)| !n.starts_with('.') && p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// The log directories under `home/log/`: each directory that looks like multilog's, or
/// one level further down (`log/smtpd/main/`) when it does not.
pub fn find(home: &Path) -> Result<Vec<LogDir>> {
    let mut dirs = Vec::new();
    for (name, path) in subdirs(&home.join("log"))? {
        if is_logdir(&path) {
            dirs.push(LogDir { name, path });
        } else {
            for (sub, p) in subdirs(&path).unwrap_or_default() {
                if is_logdir(&p) {
                    dirs.push(LogDir {
                        name: format!("{name}/{sub}"),
                        path: p,
                    });
                }
            }
        }
        if dirs.len() >= MAX_DIRS {
            dirs.truncate(MAX_DIRS);
            break;
        }
    }
    Ok(dirs)
}

/// The files of a log directory in time order: archives, `previous`, `current`.
pub fn files(dir: &Path) -> Result<Vec<LogFile>> {
    let mut archives: Vec<String> = fs::read_dir(dir)
        .temp(format!("unable to read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_archive(n))
        .collect();
    // The label is fixed-width lowercase hex, so name order is time order.
    archives.sort();
    if archives.len() > MAX_FILES {
        archives.drain(..archives.len() - MAX_FILES);
    }
    let mut out: Vec<LogFile> = archives
        .into_iter()
        .map(|n| LogFile {
            rotated: Tai64n::parse_label(n.as_bytes()).map(|t| t.unix_secs()),
            path: dir.join(n),
        })
        .collect();
    for name in ["previous", "current"] {
        let path = dir.join(name);
        if path.is_file() {
            out.push(LogFile {
                path,
                rotated: None,
            });
        }
    }
    Ok(out)
}

/// The time a line without a stamp gets: the archive's rotation time, else the mtime.
pub fn fallback_time(file: &LogFile) -> Option<i64> {
    file.rotated.or_else(|| {
        fs::metadata(&file.path)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| Tai64n::from_system(t).unix_secs())
    })
}

/// Split multilog's stamp off a line: (unix seconds, the rest).
pub fn split_stamp(line: &str) -> (Option<i64>, &str) {
    match Tai64n::parse_label(line.as_bytes()) {
        Some(t) if line.as_bytes().get(25) == Some(&b' ') => (Some(t.unix_secs()), &line[26..]),
        Some(t) if line.len() == 25 => (Some(t.unix_secs()), ""),
        _ => (None, line),
    }
}

/// Read one line of at most [`MAX_LINE`] bytes into `buf` (the rest of a longer line is
/// consumed and dropped). Returns the bytes consumed and whether the line was complete
/// (ended by a newline); `(0, false)` at the end of the file.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(u64, bool)> {
    buf.clear();
    let mut consumed = 0u64;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok((consumed, false));
        }
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        r.consume(used);
        consumed += used as u64;
        if done {
            return Ok((consumed, true));
        }
    }
}

/// Feed each line of `path` from byte `from` on to `each(time, line-without-stamp)`.
/// With `partial_ok` false a last line without its newline is left for later (a writer is
/// still at it). Returns the offset after the last line fed.
pub fn read_from(
    file: &LogFile,
    from: u64,
    partial_ok: bool,
    each: &mut dyn FnMut(Option<i64>, &str),
) -> Result<u64> {
    let path = &file.path;
    let what = || format!("unable to read {}", path.display());
    let mut f = match File::open(path) {
        Ok(f) => f,
        // Rotated away between listing and opening: its lines are in the next archive.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(from),
        Err(e) => return Err(e).temp(what()),
    };
    f.seek(SeekFrom::Start(from)).temp(what())?;
    let fallback = fallback_time(file);
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let mut buf = Vec::with_capacity(512);
    let mut offset = from;
    loop {
        let (n, complete) = read_line(&mut r, &mut buf).temp(what())?;
        if n == 0 || (!complete && !partial_ok) {
            return Ok(offset);
        }
        offset += n;
        let text = String::from_utf8_lossy(&buf);
        let (t, rest) = split_stamp(&text);
        each(t.or(fallback), rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let mut data = vec![b'a'; MAX_LINE * 3];
        data.extend_from_slice(b"\nnext\n");
        let mut r = BufReader::with_capacity(100, &data[..]);
        let mut buf = Vec::new();
        let (n, complete) = read_line(&mut r, &mut buf).unwrap();
        assert!(complete);
        assert_eq!(n as usize, MAX_LINE * 3 + 1);
        assert_eq!(buf.len(), MAX_LINE);
        read_line(&mut r, &mut buf).unwrap();
        assert_eq!(buf, b"next");
        assert_eq!(read_line(&mut r, &mut buf).unwrap(), (0, false));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_lines() {
        let data = b"one\ntwo three\n\nlast";
        let mut whole = BufReader::new(&data[..]);
        let mut tiny = BufReader::with_capacity(1, &data[..]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        loop {
            let x = read_line(&mut whole, &mut a).unwrap();
            let y = read_line(&mut tiny, &mut b).unwrap();
            assert_eq!(x, y);
            assert_eq!(a, b);
            if x.0 == 0 {
                break;
            }
        }
    }

    #[test]
    fn stamps_are_split_off() {
        let t = Tai64n::from_unix(1_700_000_000, 5);
        let line = format!("{} event=accept ip=1.2.3.4", t.label());
        assert_eq!(
            split_stamp(&line),
            (Some(1_700_000_000), "event=accept ip=1.2.3.4")
        );
        assert_eq!(split_stamp("event=x"), (None, "event=x"));
    }

    #[test]
    fn archives_then_current_in_time_order() {
        let dir = postern_testkit::tempdir();
        let late = Tai64n::from_unix(2_000, 0).label() + ".s";
        let early = Tai64n::from_unix(1_000, 0).label() + ".u";
        for n in [&late, &early, &"current".to_string(), &"state".to_string()] {
            fs::write(dir.path().join(n), "x\n").unwrap();
        }
        let names: Vec<String> = files(dir.path())
            .unwrap()
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![early, late, "current".to_string()]);
    }
}
