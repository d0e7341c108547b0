//! End-to-end tests of postern-tlsd in front of postern-popup and postern-pop3d (built by
//! the workspace), with Python's poplib and ssl as the client and a certificate made by
//! the `openssl` command line tool.

#[path = "../../../pop3/tests/e2e/support.rs"]
mod support;
mod tlsd;

pub use support::*;
