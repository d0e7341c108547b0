//! End-to-end tests of the supervision family: real processes in temp directories,
//! checked against Debian's classic daemontools where it is installed.

mod multilog;
mod supervise;
mod svscan;
mod tools;
