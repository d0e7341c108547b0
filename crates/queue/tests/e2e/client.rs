//! postern_wire::qmail_queue::inject: running the queue program as a caller
//! (postern-inject, bounces), here with the real postern-queue.

use crate::*;
use postern_common::Error;
use postern_wire::qmail_queue::{inject, Failure};
use std::ffi::OsString;

/// A queue program that is postern-queue on `inst` (the caller's environment is shared
/// by parallel tests, so the instance is set in a wrapper rather than in our own env).
fn wrapper(inst: &Instance, dir: &Path) -> OsString {
    let path = dir.join("qq");
    postern_testkit::write_script(
        &path,
        &format!(
            "#!/bin/sh\nPOSTERN_HOME='{}' exec {QUEUE}\n",
            inst.home().display()
        ),
    );
    path.into_os_string()
}

#[test]
fn injects_a_message_and_its_envelope() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let qq = wrapper(&inst, scratch.path());
    inject(&qq, b"", &[b"x@y.test".to_vec()], |sink| {
        std::io::Write::write_all(sink, b"Subject: bounce\n\ntext\n").unwrap();
        Ok(())
    })
    .unwrap();
    let (qf, msg) = inst.only_new();
    assert!(qf.envelope.sender.is_empty());
    assert!(msg.ends_with(b"Subject: bounce\n\ntext\n"));
}

#[test]
fn a_failure_to_produce_the_message_queues_nothing() {
    let inst = Instance::create();
    let scratch = postern_testkit::tempdir();
    let qq = wrapper(&inst, scratch.path());
    let result = inject(&qq, b"a@b", &[b"x@y.test".to_vec()], |sink| {
        std::io::Write::write_all(sink, b"Subject: half\n\nthe first half").unwrap();
        Err(Error::temp(
            "unable to read the message: input/output error",
        ))
    });
    match result {
        Err(Failure::Input(e)) => assert!(e.msg.contains("input/output error")),
        other => panic!("expected an input failure, got {other:?}"),
    }
    assert!(inst.names("new").is_empty());
    assert!(inst.names("tmp").is_empty());
}
