//! TLS for the PostgreSQL store, with rustls, honouring libpq's `sslmode`.
//!
//! The connection string's `sslmode` and `sslrootcert` are taken out of it
//! (the `postgres` client knows neither `verify-ca` nor `verify-full`) and
//! decide how the server is checked, as libpq does:
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default) | if the server offers it | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `require` | always | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | always | chains to `sslrootcert` |
//! | `verify-full` | always | chains to `sslrootcert`, and names the host |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the
//! platform's roots; `verify-ca` and `verify-full` need it. Only `require`
//! and above keep a gate's connections from ever being plaintext, and only
//! `verify-full` keeps them from being intercepted: use it across machines.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::config::SslMode;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Error;

/// How a connection string asks the server to be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Encrypted, the certificate not checked (libpq's `require`).
    Nothing,
    /// The certificate chains to a trusted CA, whatever name it has.
    Ca,
    /// The certificate chains to a trusted CA and names the host.
    Full,
}

/// The connection string without its TLS settings, the mode to give the
/// client, and the connector that carries them out.
pub(crate) fn settings(url: &str) -> Result<(String, SslMode, Connector), Error> {
    let (rest, params) = take_params(url, &["sslmode", "sslrootcert"])?;
    let bad = |m: String| Error::Storage(format!("postgres connection string: {m}"));
    let root = params[1].as_deref();
    let (mode, check) = match params[0].as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Check::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, root.map_or(Check::Nothing, |_| Check::Ca)),
        "require" => (SslMode::Require, root.map_or(Check::Nothing, |_| Check::Ca)),
        "verify-ca" => (SslMode::Require, Check::Ca),
        "verify-full" => (SslMode::Require, Check::Full),
        other => {
            return Err(bad(format!(
                "sslmode {other:?}: disable, allow, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    let roots = match (check, root) {
        (Check::Nothing, _) => None,
        (_, None) => {
            return Err(bad(
                "sslmode verify-ca and verify-full need sslrootcert (a PEM file of CA \
                 certificates, or system)"
                    .into(),
            ))
        }
        (_, Some(r)) => Some(load_roots(r).map_err(bad)?),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(Unchecked(provider.clone())),
        Some(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| bad(format!("sslrootcert: {e}")))?;
            if check == Check::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((rest, mode, Connector(Arc::new(config))))
}

fn load_roots(root: &str) -> Result<rustls::RootCertStore, String> {
    let store = if root == "system" {
        tls::system_roots()
    } else {
        tls::roots(std::path::Path::new(root)).map_err(|e| format!("sslrootcert {e}"))?
    };
    if store.is_empty() {
        return Err(format!("sslrootcert {root}: no CA certificate in it"));
    }
    Ok(store)
}

/// Takes the parameters `names` out of a libpq connection string (key=value
/// pairs, values optionally single-quoted) or a `postgres://` URL (query
/// parameters): the string without them, and their values in order.
fn take_params(url: &str, names: &[&str]) -> Result<(String, Vec<Option<String>>), Error> {
    let mut found = vec![None; names.len()];
    let mut set = |k: &str, v: String| match names.iter().position(|n| *n == k) {
        Some(i) => {
            found[i] = Some(v);
            true
        }
        None => false,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), found));
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                !set(k, percent_decode(v))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, found));
    }
    let mut rest = String::new();
    let mut chars = url.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(Error::Storage(format!(
                "postgres connection string: {key:?} has no value"
            )));
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().map(|(_, c)| *c) == Some('\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(Error::Storage(
                            "postgres connection string: an unterminated quote".into(),
                        ))
                    }
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        let end = chars.peek().map_or(url.len(), |(i, _)| *i);
        if !set(&key, value) {
            rest.push_str(&url[start..end]);
            rest.push(' ');
        }
    }
    Ok((rest.trim_end().to_string(), found))
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `require` without a root certificate: the handshake's signatures
/// are checked, the certificate is not.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

/// `verify-ca`: the chain must verify; the name it was issued for is not
/// compared with the host.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The `postgres` client's TLS connector over rustls.
#[derive(Clone)]
pub(crate) struct Connector(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, Self::Error> {
        Ok(Connect {
            config: self.0.clone(),
            name: ServerName::try_from(host)?.to_owned(),
        })
    }
}

/// One connection's TLS handshake.
pub(crate) struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(Stream(connector.connect(self.name, stream).await?)) })
    }
}

/// A TLS connection to the server.
pub(crate) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM then authenticates without channel binding (as libpq's
        // `channel_binding=prefer` does with a server that offers none).
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::take_params;

    #[test]
    fn tls_settings_are_taken_out_of_both_connection_string_forms() {
        let (rest, got) = take_params(
            "host=db.example port=5432 sslmode=verify-full sslrootcert='/etc/a b.pem' user=t",
            &["sslmode", "sslrootcert"],
        )
        .unwrap();
        assert_eq!(rest, "host=db.example port=5432 user=t");
        assert_eq!(
            got,
            [Some("verify-full".into()), Some("/etc/a b.pem".into())]
        );
        let (rest, got) = take_params(
            "postgres://t@db.example/log?sslmode=require&application_name=g&sslrootcert=%2Fca.pem",
            &["sslmode", "sslrootcert"],
        )
        .unwrap();
        assert_eq!(rest, "postgres://t@db.example/log?application_name=g");
        assert_eq!(got, [Some("require".into()), Some("/ca.pem".into())]);
        let (rest, got) = take_params("host=h dbname=x", &["sslmode"]).unwrap();
        assert_eq!((rest.as_str(), got), ("host=h dbname=x", vec![None]));
        assert!(take_params("host=h sslmode", &["sslmode"]).is_err());
        assert!(super::settings("host=h sslmode=verify-full").is_err());
        assert!(super::settings("host=h sslmode=sometimes").is_err());
    }
}
