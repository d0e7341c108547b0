//! postern's DKIM signatures verified by someone else's verifier: Python's dkimpy
//! (Debian's python3-dkim), the public key given as the TXT record `posternctl dkim new`
//! prints. A changed body or header, or another key, must fail.

use postern_auth::dkim::{keys, record, sign, Key, KeyType};
use postern_common::control::Control;
use std::process::Command;

/// Debian's python, whose dist-packages hold python3-dkim (a pyenv `python3` first on
/// PATH would not see it).
const PYTHON: &str = "/usr/bin/python3";
const VERIFY: &str = include_str!("dkim_verify.py");

fn dkimpy_present() -> bool {
    let ok = std::path::Path::new("/usr/lib/python3/dist-packages/dkim/__init__.py").exists();
    if !ok && std::env::var("POSTERN_ALLOW_MISSING_TOOLS").as_deref() != Ok("1") {
        panic!("dkimpy (Debian package python3-dkim) is required; scripts/test installs it");
    }
    ok
}

/// dkimpy's verdict on `msg` with `records` as DNS: (passed, its lines).
fn dkimpy(msg: &[u8], records: &[(String, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dkim_verify.py");
    std::fs::write(&script, VERIFY).unwrap();
    let file = dir.path().join("msg");
    std::fs::write(&file, msg).unwrap();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script).arg(&file);
    for (n, v) in records {
        cmd.arg(n).arg(v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn instance(kind: KeyType) -> (tempfile::TempDir, Control, Key) {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::at(dir.path());
    let key = Key::generate("example.test", "s1", kind).unwrap();
    keys::save(&control, &key, None).unwrap();
    keys::set_active(&control, "example.test", "s1", None).unwrap();
    (dir, control, key)
}

const MESSAGE: &str = "From: Alice <alice@example.test>\n\
To: bob@far.test\n\
Subject: quarterly figures\n\
Date: Mon, 7 Dec 2026 20:00:00 +0000\n\
Message-ID: <1@example.test>\n\
\n\
Hello Bob,\n\
.a line with a leading dot\n\
trailing blanks   \n\
\n\
no final line end";

#[test]
fn dkimpy_verifies_rsa_and_ed25519_signatures_and_catches_changes() {
    if !dkimpy_present() {
        return;
    }
    for kind in [KeyType::Rsa, KeyType::Ed25519] {
        let (_d, control, key) = instance(kind);
        let signed = sign::sign(&control, b"alice@example.test", MESSAGE.as_bytes())
            .unwrap()
            .expect("signed");
        let dns = vec![(
            record::name(&key.selector, &key.domain),
            record::value(&key).unwrap(),
        )];
        let (ok, out) = dkimpy(&signed, &dns);
        assert!(ok, "{kind:?}: dkimpy: {out}");
        assert!(out.contains("d=example.test s=s1"), "{out}");
        eprintln!("{kind:?}: {out}");

        let body_changed = String::from_utf8(signed.clone())
            .unwrap()
            .replace("Hello Bob", "Hello Eve");
        let (ok, out) = dkimpy(body_changed.as_bytes(), &dns);
        assert!(!ok, "{kind:?}: a changed body passed: {out}");

        let header_changed = String::from_utf8(signed.clone())
            .unwrap()
            .replace("quarterly figures", "quarterly figures!");
        let (ok, out) = dkimpy(header_changed.as_bytes(), &dns);
        assert!(!ok, "{kind:?}: a changed header passed: {out}");

        let mut from_added = b"From: mallory@example.test\r\n".to_vec();
        from_added.extend_from_slice(&signed);
        let (ok, out) = dkimpy(&from_added, &dns);
        assert!(!ok, "{kind:?}: a From: added before passed: {out}");

        let other = Key::generate("example.test", "s1", kind).unwrap();
        let wrong = vec![(dns[0].0.clone(), record::value(&other).unwrap())];
        let (ok, out) = dkimpy(&signed, &wrong);
        assert!(!ok, "{kind:?}: another key passed: {out}");
    }
}
