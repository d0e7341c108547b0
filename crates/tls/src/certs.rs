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

/// Load `cert` (a chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1) into a config.
/// Errors are temporary (fail closed) and name the file.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
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
        })?;
    Ok(Arc::new(config))
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
