//! postern-scan against messages built to get past it: ambiguous MIME, zip tricks and a
//! header too big to parse, each end to end through the real binary.

use crate::scan::Setup;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The memory limit the service run scripts put on the SMTP chain (`postern-softlimit -m
/// 64000000`), which postern-scan inherits from postern-smtpd.
const SOFTLIMIT: u64 = 64_000_000;

/// The instance of the scan tests; here postern-scan also runs under the memory limit.
impl Setup {
    /// Run postern-scan on `message` under the service's memory limit (as `ulimit -v` and
    /// `-d`, what postern-softlimit -m sets); (exit code, stderr). A crash shows as 128+N.
    fn scan_under_softlimit(&self, message: &[u8]) -> (i32, String) {
        let msg_path = self.home().join("in.msg");
        let env_path = self.home().join("in.env");
        fs::write(&msg_path, message).unwrap();
        fs::write(&env_path, b"Fsender@outside.test\0Tuser@example.test\0\0").unwrap();
        let kib = SOFTLIMIT / 1024;
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {kib} && ulimit -d {kib} && exec \"$0\""))
            .arg(self.home().join("bin/postern-scan"))
            .env("POSTERN_HOME", self.home())
            .env("TCPREMOTEIP", "192.0.2.7")
            .stdin(File::open(&msg_path).unwrap())
            .stdout(File::open(&env_path).unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// `parts` as a multipart/mixed message with boundary `XX`.
fn message(parts: &[&[u8]]) -> Vec<u8> {
    let mut msg = b"From: a@outside.test\r\nTo: user@example.test\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n".to_vec();
    for p in parts {
        msg.extend_from_slice(b"--XX\r\n");
        msg.extend_from_slice(p);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"--XX--\r\n");
    msg
}

/// Base64 in lines of 76, as mail clients send it.
fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A base64 part with `headers` (no trailing line break) and `data`.
fn part(headers: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "{headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        b64(data)
    )
    .into_bytes()
}

/// Run a python3 snippet that writes bytes to the file named by sys.argv[1]; the bytes.
fn python(dir: &Path, script: &str) -> Vec<u8> {
    let path = dir.join("made.bin");
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success(), "{script}");
    fs::read(path).unwrap()
}

fn assert_refused(s: &Setup, msg: &[u8], reason: &str, needle: &str) {
    let before = s.quarantined().len();
    let (code, err) = s.scan_under_softlimit(msg);
    assert_eq!(code, 31, "{err}");
    assert!(err.contains(&format!("reason={reason} ")), "{err}");
    assert!(err.contains(needle), "{needle}: {err}");
    assert_eq!(s.quarantined().len(), before + 1, "a copy is kept");
}

#[test]
fn ambiguous_mime_cannot_carry_a_forbidden_name() {
    let s = Setup::new();
    // The plain attachment is refused: the baseline every variant below must match.
    let plain = message(&[&part(
        "Content-Type: application/octet-stream; name=\"c.exe\"",
        b"MZ",
    )]);
    assert_refused(&s, &plain, "attachment", "c.exe");

    // (a) Two top-level Content-Type headers with different boundaries: a client that
    // takes the second one sees c.exe.
    let two_boundaries = b"From: a@outside.test\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=AA\r\nContent-Type: multipart/mixed; boundary=ZZ\r\n\r\n--AA\r\nContent-Type: text/plain\r\n\r\n--ZZ\r\nContent-Type: application/octet-stream; name=\"c.exe\"\r\n\r\nMZ\r\n--ZZ--\r\n--AA--\r\n";
    assert_refused(
        &s,
        two_boundaries,
        "mime",
        "detail=\"conflicting Content-Type headers\"",
    );

    // (b) Two names for one part: every one counts.
    let two_names = message(&[&part(
        "Content-Type: application/octet-stream; name=\"a.txt\"\r\nContent-Type: application/octet-stream; name=\"c.exe\"",
        b"MZ",
    )]);
    assert_refused(&s, &two_names, "attachment", "c.exe");
    let two_filenames = message(&[&part(
        "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\nContent-Disposition: attachment; filename=\"c.exe\"",
        b"MZ",
    )]);
    assert_refused(&s, &two_filenames, "attachment", "c.exe");

    // (c) White space before the colon (obsolete RFC 5322 syntax) is the same header.
    let obsolete = message(&[&part(
        "Content-Type : application/octet-stream; name=\"b.exe\"",
        b"MZ",
    )]);
    assert_refused(&s, &obsolete, "attachment", "b.exe");
}

#[test]
fn zip_tricks_cannot_carry_a_forbidden_name() {
    let s = Setup::new();
    // (a) The central directory says invoice.txt, the local file header invoice.exe.
    let renamed = python(
        s.home(),
        "import sys,io,zipfile\nb=io.BytesIO(); z=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED); z.writestr('invoice.exe','MZ'*100); z.close()\nd=bytearray(b.getvalue()); c=d.rfind(b'PK\\x01\\x02'); i=d.index(b'invoice.exe',c); d[i:i+11]=b'invoice.txt'\nopen(sys.argv[1],'wb').write(d)",
    );
    let msg = message(&[&part(
        "Content-Type: application/zip; name=\"invoice.zip\"",
        &renamed,
    )]);
    assert_refused(&s, &msg, "attachment", "invoice.exe (in zip:invoice.zip)");

    // (b) A zip behind 4 KiB of junk, sent as a JPEG: unzip tools open it from its end.
    let mut jpeg = b"\xff\xd8\xff\xe0".to_vec();
    jpeg.extend(std::iter::repeat_n(0x41u8, 4096));
    jpeg.extend(python(
        s.home(),
        "import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED); z.writestr('c.exe','MZ'*100); z.close()",
    ));
    let msg = message(&[&part("Content-Type: image/jpeg; name=\"photo.jpg\"", &jpeg)]);
    assert_refused(&s, &msg, "attachment", "c.exe (in zip:photo.jpg)");

    // (c) A zip inside a zip, deflated and named like anything else.
    let nested = python(
        s.home(),
        "import sys,io,zipfile\nb=io.BytesIO(); z=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED); z.writestr('c.exe','MZ'*100); z.close()\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED); z.writestr('notes.txt','hello'); z.writestr('data.bin',b.getvalue()); z.close()",
    );
    let msg = message(&[&part(
        "Content-Type: application/zip; name=\"files.zip\"",
        &nested,
    )]);
    assert_refused(&s, &msg, "attachment", "c.exe (in zip:files.zip/data.bin)");

    // A decompression bomb (one member of 1 GiB of zeros, about 1 MB deflated) is
    // refused quickly, within the memory limit, instead of being inflated.
    let bomb = python(
        s.home(),
        "import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\nwith z.open('zeros.bin','w',force_zip64=False) as f:\n  for _ in range(1024): f.write(bytes(1<<20))\nz.close()",
    );
    let msg = message(&[&part(
        "Content-Type: application/zip; name=\"big.zip\"",
        &bomb,
    )]);
    let started = Instant::now();
    assert_refused(&s, &msg, "mime", "inflates to more than");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );

    // A clean zip with ordinary names still goes through.
    let clean = python(
        s.home(),
        "import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED); z.writestr('report.pdf','%PDF'*1000); z.writestr('notes.txt','hello'); z.close()",
    );
    let msg = message(&[&part(
        "Content-Type: application/zip; name=\"report.zip\"",
        &clean,
    )]);
    let (code, err) = s.scan_under_softlimit(&msg);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_huge_header_is_refused_not_a_crash() {
    let s = Setup::new();
    // One header folded over 2.4 million lines: 9.6 MB, under smtpd's databytes.
    let mut msg = Vec::with_capacity(9_700_000);
    msg.extend_from_slice(b"From: a@outside.test\r\nX-Filler: a");
    for _ in 0..2_400_000 {
        msg.extend_from_slice(b"\r\n a");
    }
    msg.extend_from_slice(b"\r\nSubject: big\r\n\r\nbody\r\n");
    assert!(msg.len() > 9_600_000 && msg.len() < 10_240_000);
    let (code, err) = s.scan_under_softlimit(&msg);
    assert_eq!(code, 31, "a permanent refusal (554), not a crash: {err}");
    assert!(err.contains("reason=mime"), "{err}");
    assert!(
        err.contains("detail=\"header section of the message over 10000 lines\""),
        "{err}"
    );
    assert!(!err.contains("memory allocation"), "{err}");
    assert_eq!(s.quarantined().len(), 1);

    // The same in a MIME part, by size: one 2 MB line.
    let big = format!("X-Filler: {}", "a".repeat(2 << 20));
    let msg = message(&[format!("{big}\r\nContent-Type: text/plain\r\n\r\nx").as_bytes()]);
    let (code, err) = s.scan_under_softlimit(&msg);
    assert_eq!(code, 31, "{err}");
    assert!(
        err.contains("detail=\"header section of a MIME part over 1048576 bytes\""),
        "{err}"
    );

    // An ordinary message still passes under the same memory limit.
    let (code, err) =
        s.scan_under_softlimit(b"From: a@outside.test\r\nSubject: hi\r\n\r\nhello\r\n");
    assert_eq!(code, 0, "{err}");
}
