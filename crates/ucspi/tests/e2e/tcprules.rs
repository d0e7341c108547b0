//! postern-tcprules: the classic syntax compiled to the classic cdb, checked against
//! Debian's ucspi-tcp tcprules and tinycdb's `cdb -d`.

use crate::{bin, compile_with};
use postern_testkit::{require, run, tempdir};
use std::fs;
use std::process::Command;

/// Every form classic tcprules knows (no CIDR: classic would store it as plain text).
pub const CLASSIC_RULES: &str = "\
# every classic form
1.2.3.4:allow
1.2.3.:allow,RELAYCLIENT=\"\"
10.:deny
192.168.1.10-20:allow,X=\"a b\"
172.16-18.:allow,Q=/slash/
=host.example.test:allow,A=/x/
=.example.test:deny
=:allow,NAMED=\"yes\"
joe@1.2.3.5:allow
joe@=host.test:deny,WHY=\"ident\"

1.2.3.4:deny
127.0.0.1:allow,RBLSMTPD=\"\",TCPREMOTEHOST='over\"ridden'
:allow,RBLSMTPD=\"-go away\"
";

fn dump(cdb: &std::path::Path) -> String {
    let cdbtool = require("cdb", "tinycdb").unwrap();
    let (code, out, err) = run(Command::new(cdbtool).arg("-d").arg(cdb), crate::TIMEOUT);
    assert_eq!(code, Some(0), "cdb -d: {err}");
    out
}

#[test]
fn same_records_as_classic_tcprules() {
    let (Some(classic), Some(_)) = (require("tcprules", "ucspi-tcp"), require("cdb", "tinycdb"))
    else {
        return;
    };
    let dir = tempdir();
    assert_eq!(
        compile_with(&classic, dir.path(), "classic", CLASSIC_RULES).0,
        Some(0)
    );
    assert_eq!(
        compile_with(&bin("postern-tcprules"), dir.path(), "ours", CLASSIC_RULES).0,
        Some(0)
    );
    let theirs = dump(&dir.path().join("classic.cdb"));
    let ours = dump(&dir.path().join("ours.cdb"));
    assert!(theirs.contains("+12,7:192.168.1.20->+X=a b\0"), "{theirs}");
    assert_eq!(ours, theirs);
    // Same records in the same order and same hash tables: the files are identical.
    assert_eq!(
        fs::read(dir.path().join("ours.cdb")).unwrap(),
        fs::read(dir.path().join("classic.cdb")).unwrap()
    );
    assert!(!dir.path().join("ours.tmp").exists());
}

#[test]
fn cidr_keys_are_normalised_in_the_cdb() {
    let Some(_) = require("cdb", "tinycdb") else {
        return;
    };
    let dir = tempdir();
    let rules = "10.1.2.3/8:deny\n2001:DB8::/32:allow,V6=\"1\"\n";
    assert_eq!(
        compile_with(&bin("postern-tcprules"), dir.path(), "r", rules).0,
        Some(0)
    );
    let out = dump(&dir.path().join("r.cdb"));
    assert!(out.contains("+10,2:10.0.0.0/8->D\0"), "{out:?}");
    assert!(out.contains("+13,6:2001:db8::/32->+V6=1\0"), "{out:?}");
}

#[test]
fn a_bad_line_is_named_and_the_old_cdb_stays() {
    let dir = tempdir();
    let ours = bin("postern-tcprules");
    assert_eq!(
        compile_with(&ours, dir.path(), "r", "1.2.3.4:deny\n").0,
        Some(0)
    );
    let before = fs::read(dir.path().join("r.cdb")).unwrap();
    for (rules, line, shown) in [
        ("# c\n1.2.3.4:allow\n5.6.7.8: allow\n", 3, "5.6.7.8: allow"),
        (
            "1.2.3.4:allow,A=\"unterminated\n",
            1,
            "1.2.3.4:allow,A=\"unterminated",
        ),
        ("\n\nno colon\n", 3, "no colon"),
        (
            "9.9.9.9:allow,X=\"\x1b\"\n1.2.3.4:permit\n",
            2,
            "1.2.3.4:permit",
        ),
    ] {
        let (code, err) = compile_with(&ours, dir.path(), "r", rules);
        assert_eq!(code, Some(100), "{rules:?}");
        assert_eq!(
            err,
            format!("postern-tcprules: fatal: unable to parse line {line}: {shown}\n")
        );
        assert_eq!(fs::read(dir.path().join("r.cdb")).unwrap(), before);
        assert!(!dir.path().join("r.tmp").exists());
    }
}

#[test]
fn usage_errors_exit_100() {
    for args in [
        vec![],
        vec!["only-one"],
        vec!["-z", "a", "b"],
        vec!["a", "b", "c"],
    ] {
        let (code, _out, err) = run(
            Command::new(bin("postern-tcprules")).args(&args),
            crate::TIMEOUT,
        );
        assert_eq!(code, Some(100), "{args:?}");
        assert_eq!(err.lines().count(), 1);
        assert!(err.starts_with("postern-tcprules: usage: "), "{err}");
    }
}

#[test]
fn unwritable_tmp_is_temporary() {
    let dir = tempdir();
    let (code, err) = compile_with(
        &bin("postern-tcprules"),
        &dir.path().join("missing-dir"),
        "r",
        ":allow\n",
    );
    assert_eq!(code, Some(111), "{err}");
    assert!(
        err.starts_with("postern-tcprules: fatal: unable to write "),
        "{err}"
    );
}
