//! What `posternctl init` puts into a new instance: the repository's `control/` defaults
//! and `service/` run-script templates, compiled into the binary so an install needs no
//! source tree. Adding a file to those directories means adding a line here.
//!
//! Templates may contain `@POSTERN_HOME@` (the instance's absolute path) and
//! `@DOMAIN@`; [`render`] fills them in.

/// A file `init` creates if it is missing.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Path relative to the instance.
    pub path: &'static str,
    pub contents: &'static str,
    pub mode: u32,
}

macro_rules! control {
    ($name:literal) => {
        Template {
            path: concat!("control/", $name),
            contents: include_str!(concat!("../../../control/", $name)),
            mode: 0o644,
        }
    };
}

/// The documented defaults (DESIGN §4), one file each.
pub const CONTROL: &[Template] = &[
    control!("databytes"),
    control!("concurrencylocal"),
    control!("concurrencyremote"),
    control!("queuelifetime"),
    control!("timeoutsmtpd"),
    control!("timeoutremote"),
    control!("timeoutconnect"),
    control!("tcp.smtp"),
    control!("tcp.pop3"),
    control!("tcp.submission"),
];

/// Service directories: `service/NAME/run` and `service/NAME/log/run`.
pub const SERVICES: &[Template] = &[];

/// Fill in the placeholders of a template.
pub fn render(contents: &str, home: &str, domain: &str) -> String {
    contents
        .replace("@POSTERN_HOME@", home)
        .replace("@DOMAIN@", domain)
}
