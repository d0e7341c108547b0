//! The certificate chain and private key, from PEM files, as a rustls server config
//! with the *ring* provider, TLS 1.2 and 1.3, no client certificates.

use postern_common::{Error, Result, ResultExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Largest certificate or key file we read.
pub const MAX_PEM_FILE: u64 = 1 << 20;

fn read(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).temp(format!("unable to read {}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut data)
        .temp(format!("unable to read {}", path.display()))?;
    if data.len() as u64 > MAX_PEM_FILE {
        return Err(Error::temp(format!(
            "{}: larger than {MAX_PEM_FILE} bytes",
            path.display()
        )));
    }
    Ok(data)
}

/// The first (leaf) certificate of the PEM chain in `cert`, in DER: what a client is
/// shown, and what `openssl x509 -fingerprint` hashes.
pub fn leaf_der(cert: &Path) -> Result<Vec<u8>> {
    let pem = read(cert)?;
    match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(der)) => Ok(der.as_ref().to_vec()),
        Some(Err(e)) => Err(Error::temp(format!(
            "{}: not a PEM certificate chain: {e:?}",
            cert.display()
        ))),
        None => Err(Error::temp(format!(
            "{}: no certificate in it",
            cert.display()
        ))),
    }
}

/// How often a certificate and key that do not match are read again.
pub const MISMATCH_RETRIES: u32 = 5;
/// The pause between those reads.
pub const MISMATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Load `cert` (a chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1) into a config.
/// Errors are temporary (fail closed) and name the file. A pair that does not match is
/// read again, up to [`MISMATCH_RETRIES`] times [`MISMATCH_PAUSE`] apart: a renewal
/// renames the new key and then the new certificate into place (`posternctl cert
/// install`), and a connection that read one file before and the other after must not
/// fail for it.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let mut tries = 0;
    loop {
        match load_once(cert, key) {
            Err((_, true)) if tries < MISMATCH_RETRIES => {
                tries += 1;
                std::thread::sleep(MISMATCH_PAUSE);
            }
            other => return other.map_err(|(e, _)| e),
        }
    }
}

/// One attempt; the error says whether the files were read but do not make a pair.
fn load_once(
    cert: &Path,
    key: &Path,
) -> std::result::Result<Arc<ServerConfig>, (postern_common::Error, bool)> {
    let config = build(cert, key).map_err(|e| (e, false))?;
    config.map_err(|e| (e, true))
}

/// The config, or (inner error) a certificate and key that were read but do not match.
fn build(cert: &Path, key: &Path) -> Result<Result<Arc<ServerConfig>>> {
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::temp(format!(
                "{}: not a PEM certificate chain: {e:?}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::temp(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| Error::temp(format!("{}: no usable private key: {e:?}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::temp(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            Error::temp(format!(
                "{} and {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            ))
        });
    Ok(config.map(Arc::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let err = load(&cert, &key).unwrap_err();
        assert_eq!(err.kind, postern_common::Kind::Temp);
        assert!(
            err.msg
                .starts_with(&format!("unable to read {}", cert.display())),
            "{}",
            err.msg
        );
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let err = load(&cert, &key).unwrap_err();
        assert_eq!(err.msg, format!("{}: no certificate in it", cert.display()));
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load(&cert, &key).unwrap_err();
        assert!(
            err.msg.contains("not a PEM certificate chain"),
            "{}",
            err.msg
        );
    }
}
