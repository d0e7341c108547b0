//! End-to-end tests: the real binaries on loopback, driven by real clients (Python's
//! smtplib, swaks) and by raw sockets where the exact bytes matter.

mod greylist;
mod smtpd;
mod verify;
