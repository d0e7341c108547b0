//! Mail authentication for postern, through Stalwart's `mail-auth` crate
//! (docs/architecture.md "Mail authentication").
//!
//! - [`dkim`]: DKIM keys per domain and selector under `control/dkim/` (made by
//!   `posternctl dkim`), the DNS TXT record that publishes each, and the signature
//!   postern-remote puts on outgoing mail.
//! - [`inbound`]: SPF, DKIM and DMARC of incoming mail (postern-scan), the one
//!   `Authentication-Results:` header, and the policy's verdict.
//! - [`spf`]: SPF for a client's HELO name and envelope sender, as `inbound` checks it.
//! - `servfail`: a DNS server failure told apart from "no record", which mail-auth
//!   0.7 confuses (SPF, DKIM keys, DMARC records).
//! - [`published`]: what DNS publishes for one of our domains (SPF, DMARC), for
//!   `posternctl audit`.
//!
//! DNS goes through [`postern_dns`] (its resolver, its servers from
//! `control/resolvers`); mail-auth does the SPF, DKIM and DMARC work, ring the cryptography.

pub mod dkim;
pub mod inbound;
pub mod published;
mod servfail;
pub mod spf;
