//! End-to-end tests of the delivery programs: the real binaries, in temporary
//! instances, on 127.0.0.1 only. One module per program, plus the whole-queue scenarios.

mod dkim;
mod helpers;
mod holds;
mod local;
mod remote;
mod remote_tls;
mod send;
mod stress;
