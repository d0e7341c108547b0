//! SPF, DKIM and DMARC on the way in, against things nobody here wrote: dkimpy (Debian's
//! python3-dkim) signs the messages, dnsmasq serves the SPF, DKIM and DMARC records.
//! DKIM: good (rsa-sha256, ed25519-sha256), body changed, header changed, expired,
//! wrong key; DMARC: aligned, unaligned, p=reject, p=none, pct=0; SPF pass and fail;
//! DNS trouble; forged Authentication-Results removed.

#[path = "support/servfail.rs"]
mod support;

use base64ct::{Base64, Encoding};
use postern_auth::dkim::{record, Key, KeyType};
use postern_auth::inbound::{check, Input, Outcome, Policy, Verdict};
use postern_dns::Dns;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";
const SIGN: &str = include_str!("dkim_sign.py");
const HOST: &str = "mx.example.test";
const ALLOWED: &str = "192.0.2.10";
const STRANGER: &str = "192.0.2.99";

fn dkimpy_present() -> bool {
    let ok = std::path::Path::new("/usr/lib/python3/dist-packages/dkim/__init__.py").exists();
    if !ok && std::env::var("POSTERN_ALLOW_MISSING_TOOLS").as_deref() != Ok("1") {
        panic!("dkimpy (Debian package python3-dkim) is required; scripts/test installs it");
    }
    ok
}

/// `msg` signed by dkimpy with `key`.
fn dkimpy_sign(msg: &[u8], key: &Key) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dkim_sign.py");
    std::fs::write(&script, SIGN).unwrap();
    let file = dir.path().join("msg");
    std::fs::write(&file, msg).unwrap();
    let keyfile = dir.path().join("key");
    match key.kind {
        KeyType::Rsa => {
            let k = rsa::RsaPrivateKey::from_pkcs8_der(&key.pkcs8).unwrap();
            let pem = k.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
            std::fs::write(&keyfile, pem.as_bytes()).unwrap();
        }
        KeyType::Ed25519 => {
            // PKCS#8's privateKey is an OCTET STRING (04 20) around the 32-byte seed.
            let info = rsa::pkcs8::PrivateKeyInfo::try_from(key.pkcs8.as_slice()).unwrap();
            let seed = &info.private_key[2..34];
            std::fs::write(&keyfile, Base64::encode_string(seed)).unwrap();
        }
    }
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(&file)
        .arg(&key.domain)
        .arg(&key.selector)
        .arg(&keyfile)
        .arg(key.kind.name())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dkimpy sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct World {
    _dns: postern_testkit::Daemon,
    _servfail: postern_testkit::Daemon,
    /// Signs as sfkey.test s1, whose key's name gets SERVFAIL.
    sfkey: Key,
    dns: Dns,
    rsa: Key,
    ed: Key,
    other: Key,
    unpublished: Key,
}

fn txt(name: &str, text: &str) -> String {
    let strings: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!("--txt-record={name},{}", strings.join(","))
}

fn world() -> Option<World> {
    let rsa = Key::generate("strict.test", "s1", KeyType::Rsa).unwrap();
    let ed = Key::generate("strict.test", "e1", KeyType::Ed25519).unwrap();
    let other = Key::generate("other.test", "s1", KeyType::Rsa).unwrap();
    // Signs as strict.test s2, but DNS publishes another key there.
    let unpublished = Key::generate("strict.test", "s2", KeyType::Rsa).unwrap();
    let published_s2 = Key::generate("strict.test", "s2", KeyType::Rsa).unwrap();
    let sfkey = Key::generate("sfkey.test", "s1", KeyType::Rsa).unwrap();
    let (servfail, servfail_port) = support::start();
    let mut opts = vec![
        // Broken zones: the DMARC record of sfdmarc.test and the DKIM keys of
        // sfkey.test get SERVFAIL.
        format!("--server=/_dmarc.sfdmarc.test/127.0.0.1#{servfail_port}"),
        txt("sfdmarc.test", &format!("v=spf1 ip4:{ALLOWED} -all")),
        format!("--server=/_domainkey.sfkey.test/127.0.0.1#{servfail_port}"),
        txt("sfkey.test", &format!("v=spf1 ip4:{ALLOWED} -all")),
        txt("_dmarc.sfkey.test", "v=DMARC1; p=reject"),
        "--local=/test/".to_string(),
        // fail.test's server is dead: SERVFAIL.
        "--server=/fail.test/127.0.0.1#9".to_string(),
        txt("strict.test", &format!("v=spf1 ip4:{ALLOWED} -all")),
        txt("_dmarc.strict.test", "v=DMARC1; p=reject"),
        txt("none.test", &format!("v=spf1 ip4:{ALLOWED} -all")),
        txt("_dmarc.none.test", "v=DMARC1; p=none"),
        txt("sampled.test", &format!("v=spf1 ip4:{ALLOWED} -all")),
        txt("_dmarc.sampled.test", "v=DMARC1; p=reject; pct=0"),
        txt("client.test", &format!("v=spf1 ip4:{ALLOWED} -all")),
    ];
    for k in [&rsa, &ed, &other, &published_s2] {
        opts.push(txt(
            &record::name(&k.selector, &k.domain),
            &record::value(k).unwrap(),
        ));
    }
    let (daemon, port) = postern_testkit::dnsmasq(&opts)?;
    let dns = Dns::new(&[format!("127.0.0.1:{port}").parse().unwrap()]).unwrap();
    Some(World {
        _dns: daemon,
        _servfail: servfail,
        sfkey,
        dns,
        rsa,
        ed,
        other,
        unpublished,
    })
}

fn message(from: &str) -> Vec<u8> {
    format!(
        "From: {from}\nTo: bob@example.test\nSubject: the figures\n\
Date: Mon, 7 Dec 2026 20:00:00 +0000\nMessage-ID: <in-1@x.test>\n\nHello Bob,\nthe figures.\n"
    )
    .into_bytes()
}

fn run(w: &World, ip: &str, mail_from: &str, msg: &[u8], policy: &Policy) -> (Outcome, String) {
    run_hosting(w, ip, mail_from, msg, policy, &[])
}

/// As [`run`], on a host whose rcpthosts lists `hosted`.
fn run_hosting(
    w: &World,
    ip: &str,
    mail_from: &str,
    msg: &[u8],
    policy: &Policy,
    hosted: &[String],
) -> (Outcome, String) {
    let input = Input {
        ip: ip.parse().unwrap(),
        helo: "client.test",
        mail_from,
        hostname: HOST,
        hosted,
    };
    let o = check(&w.dns, &input, msg, policy);
    let text = String::from_utf8_lossy(&o.message).into_owned();
    let header: String = text
        .split_inclusive('\n')
        .take_while(|l| l.starts_with("Authentication-Results:") || l.starts_with('\t'))
        .collect();
    (o, header)
}

fn rejected(o: &Outcome) -> bool {
    matches!(&o.verdict, Verdict::Reject(t) if t.starts_with("5.7.1 "))
}

#[test]
fn dkimpy_signatures_spf_and_dmarc_decide_as_the_policy_says() {
    if !dkimpy_present() {
        return;
    }
    let Some(w) = world() else { return };
    // fail.test's dead server gets no answer: a short deadline keeps the test short.
    let p = Policy {
        deadline: std::time::Duration::from_secs(4),
        ..Policy::default()
    };
    let from = "Alice <alice@strict.test>";

    // Good signatures, rsa and ed25519, from an address SPF does not allow: DKIM
    // alone aligns, DMARC passes.
    for key in [&w.rsa, &w.ed] {
        let signed = dkimpy_sign(&message(from), key);
        let (o, h) = run(&w, STRANGER, "alice@strict.test", &signed, &p);
        eprintln!("{:?} good: {h}", key.kind);
        assert_eq!(o.verdict, Verdict::Accept, "{h}");
        assert!(
            h.starts_with(&format!("Authentication-Results: {HOST};")),
            "{h}"
        );
        assert!(h.contains("dkim=pass"), "{h}");
        assert!(h.contains("spf=fail"), "{h}");
        assert!(h.contains("dmarc=pass"), "{h}");
        assert_eq!(h.matches("Authentication-Results:").count(), 1);
    }

    // Body changed, header changed: DKIM fails, nothing aligns, p=reject refuses.
    let signed = dkimpy_sign(&message(from), &w.rsa);
    let body = String::from_utf8(signed.clone())
        .unwrap()
        .replace("the figures.", "other figures.");
    let (o, h) = run(&w, STRANGER, "alice@strict.test", body.as_bytes(), &p);
    assert!(rejected(&o), "body changed: {o:?}");
    // A body hash that does not verify is a failed verification (RFC 6376 6.1.3,
    // RFC 8601 2.7.1), though mail-auth itself says neutral; DMARC does not align.
    assert!(h.contains("dkim=fail (body hash did not verify)"), "{h}");
    assert!(!h.contains("dkim=neutral"), "{h}");
    assert!(h.contains("dmarc=fail"), "{h}");
    assert!(o.summary.contains("dkim=fail"), "{}", o.summary);
    // With the policy lenient, the message goes on, still failed and not aligned.
    let lenient = Policy {
        dmarc_reject: false,
        ..p.clone()
    };
    let (o, h) = run(&w, STRANGER, "alice@strict.test", body.as_bytes(), &lenient);
    assert_eq!(o.verdict, Verdict::Accept, "{h}");
    assert!(h.contains("dkim=fail (body hash did not verify)"), "{h}");
    assert!(h.contains("dmarc=fail"), "{h}");
    let head = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Subject: the figures", "Subject: the figures!");
    let (o, h) = run(&w, STRANGER, "alice@strict.test", head.as_bytes(), &p);
    assert!(rejected(&o), "header changed: {o:?}");
    assert!(h.contains("dkim=fail"), "{h}");

    // Signed with a key DNS does not publish: fails.
    let wrong = dkimpy_sign(&message(from), &w.unpublished);
    let (o, h) = run(&w, STRANGER, "alice@strict.test", &wrong, &p);
    assert!(rejected(&o), "wrong key: {o:?}");
    assert!(h.contains("dkim=fail"), "{h}");

    // Expired (x= passed): mail-auth's signer, as dkimpy cannot set x=.
    let wire = postern_auth::dkim::sign::wire_form(&message(from));
    let k = mail_auth::common::crypto::RsaKey::<mail_auth::common::crypto::Sha256>::from_pkcs8_der(
        &w.rsa.pkcs8,
    )
    .unwrap();
    let sig = mail_auth::dkim::DkimSigner::from_key(k)
        .domain("strict.test")
        .selector("s1")
        .headers(["From", "Subject"])
        .expiration(1)
        .sign(&wire)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut expired = mail_auth::common::headers::HeaderWriter::to_header(&sig).into_bytes();
    expired.extend_from_slice(&wire);
    let (o, h) = run(&w, STRANGER, "alice@strict.test", &expired, &p);
    assert!(rejected(&o), "expired: {o:?}");
    assert!(!h.contains("dkim=pass"), "{h}");

    // A good signature of another domain does not align with From: refused; with
    // control/dmarcreject 0, only recorded.
    let unaligned = dkimpy_sign(&message(from), &w.other);
    let (o, h) = run(&w, STRANGER, "alice@strict.test", &unaligned, &p);
    assert!(rejected(&o), "unaligned: {o:?}");
    assert!(h.contains("dkim=pass") && h.contains("dmarc=fail"), "{h}");
    let lenient = Policy {
        dmarc_reject: false,
        ..p.clone()
    };
    let (o, _) = run(&w, STRANGER, "alice@strict.test", &unaligned, &lenient);
    assert_eq!(o.verdict, Verdict::Accept);

    // SPF alone aligns: pass.
    let (o, h) = run(&w, ALLOWED, "alice@strict.test", &message(from), &p);
    assert_eq!(o.verdict, Verdict::Accept, "{h}");
    assert!(h.contains("spf=pass") && h.contains("dmarc=pass"), "{h}");

    // p=none: failing DMARC and SPF are recorded, not refused — unless spfreject.
    let (o, h) = run(&w, STRANGER, "x@none.test", &message("x@none.test"), &p);
    assert_eq!(o.verdict, Verdict::Accept, "{h}");
    assert!(h.contains("spf=fail") && h.contains("dmarc=fail"), "{h}");
    let strict_spf = Policy {
        spf_reject: true,
        ..p.clone()
    };
    let (o, _) = run(
        &w,
        STRANGER,
        "x@none.test",
        &message("x@none.test"),
        &strict_spf,
    );
    assert!(
        matches!(&o.verdict, Verdict::Reject(t) if t.contains("SPF")),
        "{o:?}"
    );

    // pct=0: the policy applies to no message.
    let (o, _) = run(
        &w,
        STRANGER,
        "x@sampled.test",
        &message("x@sampled.test"),
        &p,
    );
    assert_eq!(o.verdict, Verdict::Accept);

    // A forged result claiming our name is removed; another host's stays.
    let mut forged = b"Authentication-Results: mx.example.test; dkim=pass header.d=strict.test\n\
Authentication-Results: relay.other.test; spf=pass\n"
        .to_vec();
    forged.extend_from_slice(&message("x@none.test"));
    let (o, _) = run(&w, ALLOWED, "x@none.test", &forged, &p);
    let text = String::from_utf8(o.message).unwrap();
    assert_eq!(
        text.matches("Authentication-Results: mx.example.test;")
            .count(),
        1,
        "{text}"
    );
    assert!(!text.contains("header.d=strict.test\n"), "{text}");
    assert!(
        text.contains("Authentication-Results: relay.other.test; spf=pass\n"),
        "{text}"
    );

    // DNS trouble: 451, or with authfailopen, through and tagged.
    let (o, _) = run(&w, STRANGER, "x@fail.test", &message("x@fail.test"), &p);
    assert!(
        matches!(&o.verdict, Verdict::Defer(t) if t.starts_with("4.7.0 ")),
        "{o:?}"
    );
    let open = Policy {
        fail_open: true,
        ..p.clone()
    };
    let (o, h) = run(&w, STRANGER, "x@fail.test", &message("x@fail.test"), &open);
    assert_eq!(o.verdict, Verdict::Accept);
    assert!(h.contains("temperror"), "{h}");
}

#[test]
fn hosted_domains_cannot_be_forged_from_outside() {
    if !dkimpy_present() {
        return;
    }
    let Some(w) = world() else { return };
    // none.test (p=none: DMARC would let it through) and strict.test are ours.
    let hosted = vec!["none.test".to_string(), "strict.test".to_string()];
    let lenient = Policy {
        dmarc_reject: false,
        ..Policy::default()
    };
    let forged = message("Postmaster <postmaster@none.test>");
    let (o, h) = run_hosting(&w, STRANGER, "x@outside.test", &forged, &lenient, &hosted);
    assert!(
        matches!(&o.verdict, Verdict::Reject(t) if t.starts_with("5.7.1 none.test is a domain of this host")),
        "{o:?}"
    );
    assert!(h.contains("dmarc=fail"), "{h}");
    // The envelope sender alone counts too.
    let (o, _) = run_hosting(
        &w,
        STRANGER,
        "x@none.test",
        &message("x@outside.test"),
        &lenient,
        &hosted,
    );
    assert!(matches!(o.verdict, Verdict::Reject(_)), "{o:?}");
    // SPF passes: the client may send for it.
    let (o, _) = run_hosting(&w, ALLOWED, "x@none.test", &forged, &lenient, &hosted);
    assert_eq!(o.verdict, Verdict::Accept);
    // A passing signature of the domain: through, from anywhere.
    let signed = dkimpy_sign(&message("alice@strict.test"), &w.rsa);
    let (o, _) = run_hosting(
        &w,
        STRANGER,
        "alice@strict.test",
        &signed,
        &lenient,
        &hosted,
    );
    assert_eq!(o.verdict, Verdict::Accept);
    // Another domain's signature does not vouch for ours.
    let other = dkimpy_sign(&message("alice@strict.test"), &w.other);
    let (o, _) = run_hosting(&w, STRANGER, "alice@strict.test", &other, &lenient, &hosted);
    assert!(matches!(o.verdict, Verdict::Reject(_)), "{o:?}");
    // control/refuseforgedhosted 0 turns it off.
    let off = Policy {
        refuse_forged_hosted: false,
        ..lenient.clone()
    };
    let (o, _) = run_hosting(&w, STRANGER, "x@outside.test", &forged, &off, &hosted);
    assert_eq!(o.verdict, Verdict::Accept);
}

/// A server failure is not "no record" (mail-auth 0.7 reads it as one): SERVFAIL for the
/// DMARC record or for a DKIM key defers the message, or with authfailopen lets it through
/// tagged temperror — it never makes a p=reject domain's unaligned mail look unprotected.
#[test]
fn servfail_for_dmarc_or_a_dkim_key_is_a_temporary_error() {
    if !dkimpy_present() {
        return;
    }
    let Some(w) = world() else { return };
    let p = Policy::default();
    let open = Policy {
        fail_open: true,
        ..Policy::default()
    };
    let deferred = |o: &Outcome| matches!(&o.verdict, Verdict::Defer(t) if t.starts_with("4.7.0 "));

    // SPF fails and the DMARC record cannot be had: not "no policy", a deferral.
    let msg = message("x@sfdmarc.test");
    let (o, h) = run(&w, STRANGER, "x@sfdmarc.test", &msg, &p);
    assert!(deferred(&o), "{o:?} {h}");
    let (o, h) = run(&w, STRANGER, "x@sfdmarc.test", &msg, &open);
    eprintln!("DMARC record SERVFAIL, authfailopen: {h}");
    assert_eq!(o.verdict, Verdict::Accept, "{h}");
    assert!(h.contains("dmarc=temperror"), "{h}");
    assert!(o.summary.contains("dmarc=temperror"), "{}", o.summary);

    // The key's name gets SERVFAIL: dkim=temperror, not permerror.
    let signed = dkimpy_sign(&message("alice@sfkey.test"), &w.sfkey);
    let (o, h) = run(&w, STRANGER, "alice@sfkey.test", &signed, &p);
    assert!(deferred(&o), "{o:?} {h}");
    let (o, h) = run(&w, STRANGER, "alice@sfkey.test", &signed, &open);
    eprintln!("DKIM key SERVFAIL, authfailopen: {h}");
    assert_eq!(o.verdict, Verdict::Accept, "{h}");
    assert!(h.contains("dkim=temperror"), "{h}");
    assert!(!h.contains("dkim=permerror"), "{h}");
}
