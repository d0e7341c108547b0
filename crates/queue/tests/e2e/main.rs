//! End-to-end tests of the queue programs: the real binaries on temporary instances.
//! One module per program.

mod client;
mod inject;
mod qread;
mod queue;

use postern_queue::layout::{self, Queue};
use postern_testkit::TempDir;
use postern_wire::queue_file::{self, QueueFile};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const QUEUE: &str = env!("CARGO_BIN_EXE_postern-queue");
pub const INJECT: &str = env!("CARGO_BIN_EXE_postern-inject");
pub const QSTAT: &str = env!("CARGO_BIN_EXE_postern-qstat");
pub const QREAD: &str = env!("CARGO_BIN_EXE_postern-qread");

/// A temporary instance with a queue made by `layout::create` and `control/me`.
pub struct Instance {
    pub dir: TempDir,
}

impl Instance {
    pub fn create() -> Instance {
        let dir = postern_testkit::tempdir();
        layout::create(dir.path()).expect("create queue");
        fs::create_dir(dir.path().join("control")).unwrap();
        fs::write(dir.path().join("control/me"), "mx.example.test\n").unwrap();
        Instance { dir }
    }
    pub fn home(&self) -> &Path {
        self.dir.path()
    }
    pub fn queue(&self) -> Queue {
        Queue::for_home(self.home())
    }
    /// Names in a queue directory, sorted.
    pub fn names(&self, sub: &str) -> Vec<String> {
        names(&self.queue().dir(sub))
    }
    /// The only message in new/, parsed, with its message bytes.
    pub fn only_new(&self) -> (QueueFile, Vec<u8>) {
        let new = self.names("new");
        assert_eq!(new.len(), 1, "new/ holds {new:?}");
        read_queue_file(&self.queue().new_file(&new[0]))
    }
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

pub fn read_queue_file(path: &Path) -> (QueueFile, Vec<u8>) {
    let mut qf = queue_file::open(path).expect("parse queue file");
    let mut msg = Vec::new();
    std::io::Read::read_to_end(&mut qf.file, &mut msg).unwrap();
    (qf, msg)
}

/// A file holding `bytes`, to be a child's fd 0 or fd 1.
pub fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    File::create(&path).unwrap().write_all(bytes).unwrap();
    path
}

/// Run the qmail-queue protocol directly: message on fd 0, envelope on fd 1 (a file).
pub fn qmail_queue(program: &str, home: &Path, message: &[u8], envelope: &[u8]) -> Output {
    let scratch = postern_testkit::tempdir();
    let m = file_with(scratch.path(), "message", message);
    let e = file_with(scratch.path(), "envelope", envelope);
    Command::new(program)
        .env("POSTERN_HOME", home)
        .stdin(File::open(m).unwrap())
        .stdout(Stdio::from(File::open(e).unwrap()))
        .stderr(Stdio::piped())
        .output()
        .expect("run queue program")
}
