//! postern-tcprulescheck: the same words as classic tcprulescheck for the same cdb and
//! client, and the address-argument form.

use crate::{bin, compile_with, TIMEOUT};
use postern_testkit::{require, run, tempdir};
use std::path::Path;
use std::process::Command;

fn check(
    prog: &Path,
    cdb: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(prog);
    cmd.arg(cdb).args(extra);
    for var in ["TCPREMOTEIP", "TCPREMOTEHOST", "TCPREMOTEINFO"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    run(&mut cmd, TIMEOUT)
}

#[test]
fn same_answers_as_classic_tcprulescheck() {
    let Some(classic) = require("tcprulescheck", "ucspi-tcp") else {
        return;
    };
    let dir = tempdir();
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        crate::tcprules::CLASSIC_RULES,
    );
    let cdb = dir.path().join("rules.cdb");
    let clients: &[&[(&str, &str)]] = &[
        &[("TCPREMOTEIP", "1.2.3.4")],
        &[("TCPREMOTEIP", "1.2.3.9")],
        &[("TCPREMOTEIP", "10.9.9.9")],
        &[("TCPREMOTEIP", "192.168.1.15")],
        &[("TCPREMOTEIP", "172.17.0.1")],
        &[
            ("TCPREMOTEIP", "9.9.9.9"),
            ("TCPREMOTEHOST", "host.example.test"),
        ],
        &[
            ("TCPREMOTEIP", "9.9.9.9"),
            ("TCPREMOTEHOST", "mx.example.test"),
        ],
        &[("TCPREMOTEIP", "9.9.9.9"), ("TCPREMOTEHOST", "other.test")],
        &[("TCPREMOTEIP", "1.2.3.5"), ("TCPREMOTEINFO", "joe")],
        &[
            ("TCPREMOTEIP", "9.9.9.9"),
            ("TCPREMOTEHOST", "host.test"),
            ("TCPREMOTEINFO", "joe"),
        ],
        &[("TCPREMOTEIP", "127.0.0.1")],
        &[("TCPREMOTEIP", "8.8.8.8")],
    ];
    for env in clients {
        let theirs = check(&classic, &cdb, env, &[]);
        let ours = check(&bin("postern-tcprulescheck"), &cdb, env, &[]);
        assert_eq!(ours.0, Some(0), "{env:?}: {}", ours.2);
        assert_eq!(ours.1, theirs.1, "{env:?}");
    }
    // With no rule at all both say "default".
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "one",
        "1.2.3.4:deny\n",
    );
    let one = dir.path().join("one.cdb");
    let env: &[(&str, &str)] = &[("TCPREMOTEIP", "5.6.7.8")];
    assert_eq!(
        check(&bin("postern-tcprulescheck"), &one, env, &[]).1,
        check(&classic, &one, env, &[]).1
    );
}

#[test]
fn an_address_argument_and_cidr_rules() {
    let dir = tempdir();
    compile_with(
        &bin("postern-tcprules"),
        dir.path(),
        "rules",
        "10.0.0.0/8:allow,RELAYCLIENT=\"\"\n2001:db8::/32:deny\n:deny\n",
    );
    let cdb = dir.path().join("rules.cdb");
    let ours = bin("postern-tcprulescheck");
    let (code, out, _) = check(&ours, &cdb, &[], &["10.20.30.40"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "rule 10.0.0.0/8:\nset environment variable RELAYCLIENT=\nallow connection\n"
    );
    assert_eq!(
        check(&ours, &cdb, &[], &["2001:db8:1::5"]).1,
        "rule 2001:db8::/32:\ndeny connection\n"
    );
    assert_eq!(
        check(&ours, &cdb, &[], &["192.0.2.1"]).1,
        "rule :\ndeny connection\n"
    );
}

#[test]
fn errors() {
    let dir = tempdir();
    let ours = bin("postern-tcprulescheck");
    let (code, _, err) = check(
        &ours,
        &dir.path().join("missing.cdb"),
        &[("TCPREMOTEIP", "1.2.3.4")],
        &[],
    );
    assert_eq!(code, Some(111));
    assert!(
        err.starts_with("postern-tcprulescheck: fatal: unable to read "),
        "{err}"
    );
    let (code, _, err) = run(&mut Command::new(&ours), TIMEOUT);
    assert_eq!(code, Some(100));
    assert!(err.starts_with("postern-tcprulescheck: usage: "), "{err}");
    let (code, _, err) = check(&ours, &dir.path().join("x.cdb"), &[], &["not-an-ip"]);
    assert_eq!(code, Some(100), "{err}");
}
