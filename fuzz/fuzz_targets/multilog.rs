//! postern-multilog's script and input: the script's actions (`t`, `+pattern`,
//! `-pattern`, `e`, `=file`, `sN`, `nN`, `!processor`, `./dir`), the pattern language,
//! the line splitter that bounds each line's head, and the status-file/stderr copy of a
//! head — without touching the disk.
//!
//! Input: the script, one action per line, then a `==` line, then the log input.
//!
//! Checks: sizes and counts are clamped to their documented bounds; the splitter
//! gives the same heads, tails and ends whether the input comes in one read or byte by
//! byte, and no head is longer than its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_supervision::multilog::line::{Sink, Splitter, HEAD_LIMIT};
use postern_supervision::multilog::script::{self, Action};
use postern_supervision::multilog::{pattern, status};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// What the splitter delivered (tails joined: how an overlong line is cut into tail
/// calls depends on the reads), and which directories each line went to.
#[derive(Default, PartialEq, Eq, Debug)]
struct Record {
    heads: Vec<Vec<u8>>,
    /// Each line: head and tails, and whether its end came.
    lines: Vec<(Vec<u8>, bool)>,
    selected: Vec<Vec<bool>>,
}

struct Run<'a> {
    actions: &'a [Action],
    dirs: usize,
    rec: Record,
}

impl Sink for Run<'_> {
    fn head(&mut self, head: &[u8]) {
        assert!(head.len() <= HEAD_LIMIT, "head of {} bytes", head.len());
        assert!(!head.contains(&b'\n'));
        assert!(
            self.rec.lines.last().is_none_or(|l| l.1),
            "a head before the previous line ended"
        );
        let mut selected = true;
        let mut dirs = vec![false; self.dirs];
        for action in self.actions {
            match action {
                Action::Select(p) => selected = selected || pattern::matches(p, head),
                Action::Deselect(p) => selected = selected && !pattern::matches(p, head),
                Action::Stderr if selected => {
                    let copy = status::stderr_copy(head);
                    assert!(copy.ends_with(b"\n"));
                }
                Action::Dir(i) => dirs[*i] = selected,
                Action::Stderr | Action::Status(_) => {}
            }
        }
        self.rec.selected.push(dirs);
        self.rec.heads.push(head.to_vec());
        self.rec.lines.push((head.to_vec(), false));
    }
    fn tail(&mut self, bytes: &[u8]) {
        assert!(!bytes.is_empty() && !bytes.contains(&b'\n'));
        let line = self.rec.lines.last_mut().expect("a tail after a head");
        assert!(!line.1, "a tail after the end");
        assert!(line.0.len() >= HEAD_LIMIT, "a tail after a short head");
        line.0.extend_from_slice(bytes);
    }
    fn end(&mut self) {
        let line = self.rec.lines.last_mut().expect("an end after a head");
        assert!(!line.1, "two ends");
        line.1 = true;
    }
}

fn split(actions: &[Action], dirs: usize, stamp: bool, input: &[u8], cut: usize) -> Record {
    let mut run = Run {
        actions,
        dirs,
        rec: Record::default(),
    };
    let mut splitter = Splitter::default();
    let mut stamp_fn = || {
        if stamp {
            b"@400000005f0000001234567a ".to_vec()
        } else {
            Vec::new()
        }
    };
    for piece in postern_fuzz::chunks(input, cut) {
        splitter.feed(piece, &mut stamp_fn, &mut run);
    }
    splitter.finish(&mut run);
    assert!(splitter.at_boundary());
    run.rec
}

fuzz_target!(|data: &[u8]| {
    let parts = postern_fuzz::parts(data);
    let args: Vec<OsString> = parts[0]
        .split(|&b| b == b'\n')
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let input = parts.get(1).copied().unwrap_or(b"");
    for line in input.split(|&b| b == b'\n').take(8) {
        for arg in args.iter().take(8) {
            let _ = pattern::matches(arg.as_encoded_bytes(), line);
        }
    }
    let Ok(s) = script::parse(&args) else {
        return;
    };
    for d in &s.dirs {
        assert!((script::MIN_SIZE..=script::MAX_SIZE).contains(&d.size));
        assert!((script::MIN_NUM..=script::MAX_NUM).contains(&d.num));
    }
    let whole = split(&s.actions, s.dirs.len(), s.timestamp, input, 0);
    let bytes = split(&s.actions, s.dirs.len(), s.timestamp, input, 1);
    assert_eq!(whole, bytes, "the splitter depends on the reads");
    if !s.timestamp {
        let mut joined = Vec::new();
        for (line, ended) in &whole.lines {
            assert!(ended);
            joined.extend_from_slice(line);
            joined.push(b'\n');
        }
        let mut want = input.to_vec();
        if !want.is_empty() && !want.ends_with(b"\n") {
            want.push(b'\n');
        }
        assert_eq!(joined, want, "the splitter loses or adds bytes");
    }
});
