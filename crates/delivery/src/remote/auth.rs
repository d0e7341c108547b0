//! SMTP AUTH credentials for smtproutes' `auth=NAME` (docs/postern-remote.md "Routes: TLS
//! policy and credentials"): `control/smtpauth`, lines `NAME USER PASSWORD` (the password
//! is the rest of the line, blanks inside included). The file is root's, mode 0640, group
//! postern-remote (scripts/install sets that): postern-remote refuses to use it when every
//! account may read or write it — a temporary failure naming the file and its mode, so
//! the mail waits for the fix instead of going out with credentials everyone has seen.
//!
//! Errors never quote a line of the file: it holds passwords.

use postern_common::control::{parse_lines, Control, MAX_CONTROL_FILE};
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// The credentials file, under control/.
pub const FILE: &str = "smtpauth";

/// One set of credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The name smtproutes gives (`auth=NAME`).
    pub name: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// Find `name` in the text of the file. Every line must be well-formed (a broken file is
/// a mistake to fix, whichever line it is on); the first line with `name` counts.
pub fn find(text: &str, name: &str) -> Result<Credentials, String> {
    let mut found = None;
    for line in parse_lines(text) {
        let mut words = line.text.splitn(2, [' ', '\t']);
        let key = words.next().unwrap_or_default();
        let rest = words
            .next()
            .unwrap_or_default()
            .trim_start_matches([' ', '\t']);
        let mut rest = rest.splitn(2, [' ', '\t']);
        let user = rest.next().unwrap_or_default();
        let password = rest
            .next()
            .unwrap_or_default()
            .trim_start_matches([' ', '\t']);
        if user.is_empty() || password.is_empty() {
            return Err(format!(
                "control/{FILE}:{}: expected NAME USER PASSWORD (#4.3.0)",
                line.number
            ));
        }
        if [user, password].iter().any(|w| w.contains('\0')) {
            return Err(format!(
                "control/{FILE}:{}: a NUL in the user or password (#4.3.0)",
                line.number
            ));
        }
        if key == name && found.is_none() {
            found = Some(Credentials {
                name: name.to_string(),
                user: user.to_string(),
                password: password.to_string(),
            });
        }
    }
    found.ok_or_else(|| format!(
        "control/{FILE} has no credentials named {name} (auth={name} in control/smtproutes) (#4.3.0)"
    ))
}

/// Read the credentials `name` from `control/smtpauth`, refusing a file that every
/// account may read or write.
pub fn load(control: &Control, name: &str) -> Result<Credentials, String> {
    let path = control.path(FILE);
    let unreadable =
        |e: &std::io::Error| format!("unable to read control/{FILE}: {} (#4.3.0)", describe(e));
    let file = std::fs::File::open(&path).map_err(|e| unreadable(&e))?;
    // The mode of what was opened, not of a name that could change meanwhile.
    let meta = file.metadata().map_err(|e| unreadable(&e))?;
    let mode = meta.mode() & 0o7777;
    if !meta.is_file() {
        return Err(format!("control/{FILE} is not a file (#4.3.0)"));
    }
    if mode & 0o007 != 0 {
        return Err(format!(
            "control/{FILE} is open to every account (mode {mode:04o}): its credentials are \
             not used; make it mode 0640, owner root, group postern-remote (#4.3.0)"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONTROL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(&e))?;
    if bytes.len() as u64 > MAX_CONTROL_FILE {
        return Err(format!("control/{FILE} is too big (#4.3.0)"));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("control/{FILE} is not UTF-8 (#4.3.0)"))?;
    find(&text, name)
}

fn describe(e: &std::io::Error) -> String {
    postern_common::exit::describe_io(e)
}

/// The mechanisms a server offers in its EHLO keywords (already upper-case): the words
/// after `AUTH` (or the old `AUTH=` form).
pub fn mechanisms(ext: &[String]) -> Vec<String> {
    ext.iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("AUTH")?;
            (rest.starts_with([' ', '=']) || rest.is_empty()).then(|| {
                rest.trim_start_matches('=')
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

/// Which mechanism to use: PLAIN when offered, else LOGIN, else none.
pub fn choose(offered: &[String]) -> Option<&'static str> {
    ["PLAIN", "LOGIN"]
        .into_iter()
        .find(|m| offered.iter().any(|o| o == m))
}

/// The AUTH PLAIN initial response (RFC 4616): base64 of `\0USER\0PASSWORD`.
pub fn plain_response(c: &Credentials) -> String {
    let mut raw = vec![0u8];
    raw.extend_from_slice(c.user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(c.password.as_bytes());
    postern_common::sasl::encode_base64(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lines_name_user_and_the_rest_as_password() {
        let text = "# credentials\ncorp  alice@corp.test\tpass word \nsmart bob pw\n";
        let c = find(text, "corp").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice@corp.test", "pass word")
        );
        assert_eq!(find(text, "smart").unwrap().password, "pw");
        let e = find(text, "other").unwrap_err();
        assert!(e.contains("no credentials named other"), "{e}");
        let e = find("corp alice secret\nbroken onlyuser\n", "corp").unwrap_err();
        assert!(
            e.starts_with("control/smtpauth:2: expected NAME USER PASSWORD"),
            "{e}"
        );
        assert!(!e.contains("onlyuser"), "no line text: {e}");
        assert!(!format!("{c:?}").contains("pass word"), "{c:?}");
    }

    #[test]
    fn a_file_open_to_everyone_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let control = Control::at(d.path());
        let path = d.path().join(FILE);
        let e = load(&control, "corp").unwrap_err();
        assert!(e.starts_with("unable to read control/smtpauth"), "{e}");
        std::fs::write(&path, "corp alice secret\n").unwrap();
        for mode in [0o644, 0o604, 0o602, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load(&control, "corp").unwrap_err();
            assert!(
                e.contains(&format!("open to every account (mode {mode:04o})")),
                "{e}"
            );
            assert!(!e.contains("secret"));
        }
        for mode in [0o640, 0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(load(&control, "corp").unwrap().password, "secret");
        }
    }

    #[test]
    fn mechanisms_and_the_choice() {
        let ext = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            mechanisms(&ext(&["PIPELINING", "AUTH LOGIN PLAIN", "AUTH=LOGIN"])),
            ["LOGIN", "PLAIN", "LOGIN"]
        );
        assert!(mechanisms(&ext(&["AUTHX PLAIN", "SIZE 5"])).is_empty());
        assert_eq!(
            choose(&mechanisms(&ext(&["AUTH LOGIN PLAIN"]))),
            Some("PLAIN")
        );
        assert_eq!(
            choose(&mechanisms(&ext(&["AUTH CRAM-MD5 LOGIN"]))),
            Some("LOGIN")
        );
        assert_eq!(choose(&mechanisms(&ext(&["AUTH CRAM-MD5"]))), None);
        let c = Credentials {
            name: "x".into(),
            user: "alice".into(),
            password: "secret".into(),
        };
        assert_eq!(plain_response(&c), "AGFsaWNlAHNlY3JldA==");
    }
}
