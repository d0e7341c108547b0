//! End-to-end tests of postern-popup and postern-pop3d: the real binaries in a temporary
//! instance, served on a loopback port the kernel picks, driven by Python's poplib (a
//! client nobody here wrote) or, where exact bytes matter, by a raw socket.
//!
//! We run as root in CI, and pop3d refuses root: the chain then runs under a throwaway
//! uid/gid with no account (setpriv), which owns the test Maildir.

mod pop3d;
mod popup;

mod support;
pub use support::*;
