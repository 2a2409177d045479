//! TLS for the gate and every HTTP client in the project, with rustls (ring).
//!
//! In scope: the gate's server configuration from PEM files, optionally
//! asking for client certificates verified against a client CA (mTLS) and
//! reading the verified certificate's subject common name; and HTTPS agents
//! (ureq) that verify the server against a CA file, or against the system's
//! roots (`rustls-native-certs`: the OS trust store, `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` honoured) when none is given. Out of scope: sockets (the
//! gate's accept loop does the handshake) and what a subject authorizes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file or setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct Error {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

fn error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file (at least one).
///
/// # Errors
///
/// [`Error`] naming the file.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    certs_from_pem(&std::fs::read(path).map_err(|e| error(path, e))?, path)
}

/// The certificates in PEM text (at least one); `path` names it in errors.
///
/// # Errors
///
/// [`Error`] naming `path`.
pub fn certs_from_pem(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, e))?;
    if certs.is_empty() {
        return Err(error(path, "no CERTIFICATE in the PEM file"));
    }
    Ok(certs)
}

/// A root store holding the certificates of a PEM file.
///
/// # Errors
///
/// [`Error`] naming the file.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| error(path, e))?;
    }
    Ok(roots)
}

/// The gate's server configuration: its certificate chain and key (PEM),
/// and with `client_ca` the CA whose client certificates are verified.
/// Client certificates are optional (callers with bearer tokens need none);
/// a presented one must verify.
///
/// # Errors
///
/// [`Error`] naming the file that cannot be used.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| error(key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(cert, e))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| error(cert, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject common name of a verified client certificate (the first in
/// the chain the peer presented).
#[must_use]
pub fn subject_cn(peer_certs: &[CertificateDer<'_>]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(peer_certs.first()?).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The system's trust roots: the certificates that load (an unreadable one
/// is skipped). Possibly none, on a machine without a trust store: plain
/// HTTP still works then, and an https server fails verification (give a
/// CA file).
#[must_use]
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// An HTTP(S) agent: `https://` servers are verified against the
/// certificates in `ca_file`, or the system's roots without one; `timeout`
/// bounds each request. Plain `http://` works as before.
///
/// # Errors
///
/// [`Error`] naming the CA file, or the system store, that cannot be used.
pub fn agent(ca_file: Option<&Path>, timeout: std::time::Duration) -> Result<ureq::Agent, Error> {
    Ok(ureq::AgentBuilder::new()
        .timeout(timeout)
        .tls_config(client_config(ca_file)?)
        .build())
}

/// A TLS client configuration verifying servers against the certificates
/// in `ca_file`, or the system's roots without one (no client certificate).
///
/// # Errors
///
/// [`Error`] naming the CA file, or the system store, that cannot be used.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let (roots, at) = match ca_file {
        Some(ca) => (roots(ca)?, ca),
        None => (system_roots(), Path::new("the system trust store")),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(at, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`agent`] that also presents a client certificate (mTLS): `cert` (PEM
/// chain) and `key`.
///
/// # Errors
///
/// [`Error`] naming the file that cannot be used.
pub fn agent_with_client_cert(
    ca_file: &Path,
    cert: &Path,
    key: &Path,
    timeout: std::time::Duration,
) -> Result<ureq::Agent, Error> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| error(key, e))?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(ca_file, e))?
        .with_root_certificates(roots(ca_file)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| error(cert, e))?;
    Ok(ureq::AgentBuilder::new()
        .timeout(timeout)
        .tls_config(Arc::new(config))
        .build())
}
