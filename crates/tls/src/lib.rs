//! postern-tlsd: the TLS wrapper that keeps rustls and the private key out of the
//! protocol servers (docs/postern-tlsd.md; in the style of s6-ucspitlsd).
//!
//! - [`certs`]: loading the certificate chain and key into a rustls server config.
//! - [`proxy`]: the relay between the network and the program's pipes, cleartext until
//!   the program asks for TLS over the control socket, then TLS.
//! - [`tlsd`]: the command line, privileges, and starting the program.
//!
//! The program side of the control protocol lives in `postern_common::starttls`, which
//! links no TLS library; the protocol is documented in docs/postern-tlsd.md.
#![forbid(unsafe_code)]

pub mod certs;
pub mod proxy;
pub mod tlsd;
