//! The ucspi-tcp family: the front door every SMTP and POP3 connection comes through.
//!
//! - [`tcpserver`]: `postern-tcpserver`, accept, limit, check the rules, run a program
//!   per connection with the UCSPI environment.
//! - [`tcprules`] / [`tcprulescheck`]: compile access rules into the classic cdb; show
//!   which rule applies.
//! - [`rblsmtpd`]: the DNS blocklist gate in front of an SMTP server.
//! - [`pregreet`]: the pre-greeting check in front of an SMTP server (early talkers).
//! - [`rules`]: the rules syntax and lookup (in the cdb of [`postern_common::cdb`]).
#![forbid(unsafe_code)]

pub mod pregreet;
pub mod rblsmtpd;
pub mod rules;
pub mod tcprules;
pub mod tcprulescheck;
pub mod tcpserver;
