//! What the coordinator's connections present, read and checked at start
//! so that a mistake stops it there, not at the first connection: the
//! database URL, the CA bundles (`--upstream-ca`, `--database-ca`) and the
//! database client certificate. Messages never repeat a secret (the URL's
//! password, the key's contents).

use std::path::Path;

use super::ConfigError;
use crate::storage::ClientCertificate;

/// A `--database-url` that parses (the message never repeats the URL: it
/// may hold a password).
pub(super) fn check_database_url(url: String) -> Result<String, ConfigError> {
    // The parser ends the credentials at the URL's first `@`, wherever it
    // is, and takes the rest for the host: a raw `@` in a password (or in
    // the query) leaves an `@` in a host name, or a path in the user name,
    // and would connect elsewhere (and show part of the password as a host).
    let raw_at = || ConfigError::Invalid("--database-url: a raw @ in it: write an @ in a password as %40".into());
    let misread = |db: &tokio_postgres::Config| {
        db.get_user().is_some_and(|user| user.contains(['/', '?', '#']))
            || db
                .get_hosts()
                .iter()
                .any(|host| matches!(host, tokio_postgres::config::Host::Tcp(name) if name.contains('@')))
    };
    match url.parse::<tokio_postgres::Config>() {
        Ok(db) if misread(&db) => Err(raw_at()),
        Ok(_) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(url),
        Ok(_) => Err(ConfigError::Invalid("--database-url must be a postgres:// URL".into())),
        Err(e) => Err(ConfigError::Invalid(format!("--database-url does not parse: {e}"))),
    }
}

/// The PEM bytes of a CA file (`--upstream-ca`, `--database-ca`) that holds
/// at least one certificate.
pub(super) fn read_ca_file(flag: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("{flag} {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(invalid("no certificate in it".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// The client certificate of `--database-cert` and `--database-key`: both
/// or neither, a certificate and a private key that parse.
pub(super) fn client_certificate(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientCertificate>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => return Err(ConfigError::Invalid("--database-cert needs --database-key".into())),
        (None, Some(_)) => return Err(ConfigError::Invalid("--database-key needs --database-cert".into())),
    };
    let invalid =
        |flag: &str, path: &Path, why: String| ConfigError::Invalid(format!("{flag} {}: {why}", path.display()));
    let cert_pem = std::fs::read(cert).map_err(|e| invalid("--database-cert", cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("--database-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("--database-cert", cert, "no certificate in it".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| invalid("--database-key", key, e.to_string()))?;
    // The messages never repeat the key's contents.
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| invalid("--database-key", key, "no private key in it (PEM: PKCS#8, PKCS#1 or SEC1)".into()))?;
    // Loaded as the connection will load it, and checked against the
    // certificate: a wrong or broken key is refused here, at start.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => invalid("--database-key", key, "not the key of --database-cert".into()),
        _ => invalid("--database-key", key, "no usable private key in it (RSA, ECDSA or Ed25519)".into()),
    })?;
    Ok(Some(ClientCertificate { cert_pem, key_pem }))
}
