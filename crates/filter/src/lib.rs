//! The two programs that sit beside the queue path and judge mail, each in a module tree
//! of its own:
//!
//! - [`scan`]: `postern-scan`, content filtering and antivirus in `$QMAILQUEUE`
//!   position (both directions: mail from outside and mail our own users send).
//! - [`ratelimit`]: `postern-ratelimit`, which follows smtpd's logs and limits how much
//!   mail one sender, client or login can send (blocks, holds, alerts).
//!
//! They share only the alert recipient (`scan::alert::recipient`).
#![forbid(unsafe_code)]

pub mod ratelimit;
pub mod scan;
