//! STARTTLS, by default opportunistic as Postfix's `smtp_tls_security_level = may`:
//! encrypt when the server offers it, without verifying its certificate (an MX name from
//! plain DNS proves nothing, so verification would only make delivery fail, not make it
//! safer). A handshake failure makes postern-remote reconnect once without TLS. rustls
//! with the ring provider; TLS 1.2 and 1.3.
//!
//! An smtproutes line may ask for more ([`Policy`]): `tls=encrypt` (TLS required, any
//! certificate), `tls=verify` (TLS required, the chain verified against the system's
//! authorities — rustls-native-certs, /etc/ssl/certs — or those of `ca=`, and the
//! certificate valid for the route's host name), and `auth=` makes TLS required too.

use super::route::{Options, TlsPolicy};
use postern_common::control::Control;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// Accepts any certificate: the opportunistic policy.
#[derive(Debug)]
struct Opportunistic(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for opportunistic TLS (and `tls=encrypt`): any certificate.
pub fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Opportunistic(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The client configuration for `tls=verify`: rustls' (webpki's) verification of the
/// chain up to one of `roots`, and of the name.
pub fn verifying_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The authorities `tls=verify` trusts: the PEM file `ca` (relative: under control/), or
/// else the system's.
pub fn roots(control: &Control, ca: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(ca) => {
            let path = control.dir().join(ca);
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("unable to read the certificates of ca={ca}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("ca={ca} holds no usable certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "no system certificate authorities found (install ca-certificates, or \
                     name a file with ca=){why}"
                ));
            }
        }
    }
    Ok(store)
}

/// What a route asks of TLS, ready for the sessions.
#[derive(Clone)]
pub struct Policy {
    pub config: Arc<ClientConfig>,
    /// When TLS is required: the start of the reason given when it cannot be had,
    /// `TLS required by smtproutes for DOMAIN`.
    pub required: Option<String>,
}

/// The policy for mail to `domain` under a route with `options`; `Err` (a temporary
/// failure) when the authorities of `tls=verify` cannot be loaded.
pub fn policy(control: &Control, domain: &str, options: &Options) -> Result<Policy, String> {
    let setup = |e: rustls::Error| format!("TLS setup: {e}");
    let required = options.tls_required().then(|| match (&options.auth, options.tls) {
        (Some(name), TlsPolicy::May) => {
            format!("TLS required by smtproutes for {domain} (auth={name}: credentials go only inside TLS)")
        }
        _ => format!("TLS required by smtproutes for {domain}"),
    });
    let config = if options.tls == TlsPolicy::Verify {
        let roots = roots(control, options.ca.as_deref())
            .map_err(|why| format!("tls=verify in smtproutes for {domain}, but {why}"))?;
        verifying_config(roots).map_err(setup)?
    } else {
        client_config().map_err(setup)?
    };
    Ok(Policy { config, required })
}

/// The TLS session after the server's `220` to STARTTLS: the handshake with `config`
/// for `name`, run to its end before a byte of SMTP goes over it (postern-remote and
/// postern-verify both). The error is the reason for the delivery report.
pub fn start(
    tcp: std::net::TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    host: &str,
) -> Result<Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>, String> {
    let conn =
        rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS setup: {e}"))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            return Err(handshake_failure(host, &e));
        }
    }
    Ok(Box::new(stream))
}

/// Why a handshake with `host` failed: a certificate that did not verify is named as such.
pub fn handshake_failure(host: &str, e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            format!(
                "certificate of {host} not verified: UnknownIssuer (not issued by an \
                 authority the route trusts)"
            )
        }
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!("certificate of {host} not verified: {why}")
        }
        _ => format!("TLS handshake with {host} failed: {e}"),
    }
}

/// The name sent in SNI: the host name when there is one, else the IP address.
pub fn server_name(host: &str, ip: std::net::IpAddr) -> ServerName<'static> {
    ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(ip.into()))
}
