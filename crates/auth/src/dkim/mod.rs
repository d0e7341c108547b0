//! DKIM (RFC 6376, RFC 8463) for outgoing mail.
//!
//! - [`keys`]: the keys under `control/dkim/DOMAIN/` and which selector signs.
//! - [`record`]: the DNS TXT record that publishes a key, and whether DNS does.
//! - [`sign`]: the `DKIM-Signature:` postern-remote adds, over the message exactly as
//!   it goes out.

pub mod keys;
pub mod record;
pub mod sign;

pub use keys::{Key, KeyType};
