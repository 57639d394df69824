//! Trust material shared by the TLS connections to PostgreSQL and to the SMTP server:
//! CA bundles read from PEM files, and the one crypto provider both use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A CA file that cannot serve as trust anchors. Names the file and the reason only.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {} as CA certificates: {reason}", path.display())]
pub struct CaFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Every certificate in the PEM file `path` (other PEM sections, e.g. comments or keys,
/// are skipped). A file without any certificate is an error: trusting nothing by accident
/// would fail later with a far less helpful message.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let error = |reason: String| CaFileError {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not a PEM file ({e})")))?;
    if certs.is_empty() {
        return Err(error("no `BEGIN CERTIFICATE` block in it".into()));
    }
    Ok(certs)
}

/// ring, as `main` installs it for the whole process; named here too so the library (and
/// its tests) never depend on a process default being set.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_an_empty_and_a_garbled_file_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_ca_file(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot use {} as CA", missing.display())),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "# nothing here\n").unwrap();
        let err = read_ca_file(&empty).unwrap_err().to_string();
        assert!(err.ends_with("no `BEGIN CERTIFICATE` block in it"), "{err}");

        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_ca_file(&garbled).is_err());
    }
}
