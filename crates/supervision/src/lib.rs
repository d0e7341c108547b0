//! The daemontools family: start, watch, restart, signal and log services, compatible
//! with daemontools 0.76 on disk and on the control FIFO.
//!
//! One module per program; each binary in `src/bin/` is a thin call into its module.
//! - [`status`]: the 18-byte `supervise/status` record (and the 20/40-byte variants).
//! - [`supervise`], [`svscan`], [`svc`], [`svstat`], [`svok`]: supervision.
//! - [`multilog`], [`tai64nlocal`]: logging.
//! - [`softlimit`], [`setuidgid`], [`envdir`]: chain-loading helpers for run scripts.

mod chain;
pub mod envdir;
pub mod multilog;
pub mod setuidgid;
pub mod softlimit;
pub mod status;
pub mod supervise;
pub mod svc;
pub mod svok;
pub mod svscan;
pub mod svstat;
pub mod tai64nlocal;
