//! Greylisting through the real postern-smtpd, driven by Python's smtplib: the first
//! attempt gets 451 4.7.1 at RCPT, the retry after `greylistdelay` is queued, the state
//! is files named by hashes under `run/greylist/`, and a directory that cannot be
//! written fails open.

use crate::smtpd::Setup;
use std::fs;

const SEND: &str = r#"
import os, smtplib
c = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.test")
try:
    c.sendmail("sender@client.test", ["user@example.test"], "Subject: grey\r\n\r\nhello\r\n")
    print("accepted")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["user@example.test"]
    print("refused", code, text.decode())
c.quit()
"#;

#[test]
fn the_first_attempt_is_greylisted_and_the_retry_after_the_delay_is_queued() {
    let s = Setup::default()
        .control("greylist", "on\n")
        .control("greylistdelay", "1\n")
        .control("greylistretry", "600\n")
        .start();
    fs::create_dir_all(s.home().join("run/greylist")).unwrap();

    let (code, out, err) = s.python(SEND);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        "refused 451 4.7.1 greylisted, please try again later"
    );
    assert!(s.queued().is_empty());
    let names: Vec<String> = fs::read_dir(s.home().join("run/greylist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("t-") && names[0].len() == 34,
        "{names:?}"
    );

    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = s.python(SEND);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "accepted");
    assert_eq!(s.queued().len(), 1);
    s.wait_sessions_done(2);
    let log = s.log();
    assert!(
        log.contains("event=greylist ip=127.0.0.1 from=<sender@client.test> rcpt=<user@example.test> result=defer wait=1"),
        "{log}"
    );
    assert!(log.contains("result=retried"), "{log}");

    // No state directory: the recipient is accepted (greylisting only delays mail that
    // would be accepted anyway) and the trouble is logged.
    fs::remove_dir_all(s.home().join("run/greylist")).unwrap();
    let (code, out, err) = s.python(&SEND.replace("user@example.test", "other@example.test"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "accepted");
    s.wait_sessions_done(3);
    assert!(
        s.log()
            .contains("event=error ip=127.0.0.1 what=\"greylist: unable to write"),
        "{}",
        s.log()
    );
}
