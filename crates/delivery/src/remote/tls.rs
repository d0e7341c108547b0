//! Opportunistic STARTTLS, as Postfix's `smtp_tls_security_level = may`: encrypt when
//! the server offers it, without verifying its certificate (an MX name from plain DNS
//! proves nothing, so verification would only make delivery fail, not make it safer).
//! A handshake failure makes postern-remote reconnect once without TLS. rustls with the
//! ring provider; TLS 1.2 and 1.3.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
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

/// The client configuration for opportunistic TLS.
pub fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Opportunistic(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name sent in SNI: the host name when there is one, else the IP address.
pub fn server_name(host: &str, ip: std::net::IpAddr) -> ServerName<'static> {
    ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(ip.into()))
}
