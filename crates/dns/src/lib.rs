//! DNS for every postern program that resolves — postern-tcpserver (TCPREMOTEHOST),
//! postern-rblsmtpd and posternctl audit (blocklists), postern-remote and postern-verify
//! (MX, A, AAAA) — through hickory-resolver on a current-thread tokio runtime owned by
//! the caller's process (no DNSSEC, no DoT/DoH). This is the only crate that builds
//! a resolver or a runtime (mail-auth, in postern-auth, links hickory too and is handed
//! this crate's resolver: [`Dns::hickory`]).
//!
//! - [`resolver`]: [`Dns`], built from `control/resolvers` (else the `nameserver` lines
//!   of /etc/resolv.conf, see [`postern_common::resolvers`]) with the one set of
//!   options; [`Answer`], the outcome of every lookup.
//! - [`lookup`]: the lookups the programs make (TXT, A, PTR, MX, A and AAAA), each
//!   within a deadline its caller gives.
//! - [`blocklist`]: the names a DNS blocklist is asked about and the text of its TXT
//!   answer.
//!
//! The hosts file is never consulted; names are always absolute (no search list).

pub mod blocklist;
pub mod lookup;
pub mod resolver;

pub use blocklist::{reverse_name, txt_text, MAX_TXT};
pub use lookup::{MAX_ADDRS, MAX_MX};
pub use postern_common::resolvers::{
    parse_resolv_conf, parse_server, servers, MAX_SERVERS, RESOLV_CONF,
};
pub use resolver::{Answer, Dns, ATTEMPTS, CACHE_SIZE, TRY_TIMEOUT};

/// hickory's DNS message types, for the `dns_txt` fuzz target: it decodes arbitrary
/// responses with the same decoder the lookups use.
pub use hickory_resolver::proto;
