// SPDX-License-Identifier: MPL-2.0
//! How `wss://` servers are verified, and TLS failures in words.
//!
//! Certificates are always verified: against the public web roots, plus the certificates of
//! `tls-ca-file` as trust anchors. A certificate listed in `tls-ca-file` is also trusted as the
//! server's own certificate when the server presents exactly it, even when it is marked as a CA
//! (as `openssl req -x509` marks the self-signed certificates it makes); curl and libsoup trust
//! such a certificate given as their CA file, and so does this client.

use std::path::PathBuf;
use std::sync::Arc;

use once_cell::sync::Lazy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How `wss://` servers are verified. Certificates are always verified; a private CA or a
/// self-signed server certificate can be added on top of the public web roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file with one or more extra certificates to trust: CA certificates, or the server's
    /// own self-signed certificate.
    pub extra_ca_file: Option<PathBuf>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn web_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS set-up failed: {err}"))
}

/// Built once: every session with default settings shares it.
static DEFAULT_CONFIG: Lazy<Result<Arc<rustls::ClientConfig>, String>> = Lazy::new(|| {
    Ok(Arc::new(
        builder()?
            .with_root_certificates(web_roots())
            .with_no_client_auth(),
    ))
});

impl TlsSettings {
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let Some(path) = &self.extra_ca_file else {
            return DEFAULT_CONFIG.clone();
        };
        let mut roots = web_roots();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|err| {
                format!(
                    "tls-ca-file {}: cannot read PEM: {} (give the path of a readable PEM file)",
                    path.display(),
                    pem_error_text(&err)
                )
            })?
            .collect::<Result<_, _>>()
            .map_err(|err| {
                format!(
                    "tls-ca-file {}: invalid PEM: {} (the file must hold \"-----BEGIN \
                     CERTIFICATE-----\" blocks)",
                    path.display(),
                    pem_error_text(&err)
                )
            })?;
        if certs.is_empty() {
            return Err(format!(
                "tls-ca-file {}: no CERTIFICATE block found (the file must hold the CA \
                 certificate or the server's certificate, in PEM)",
                path.display()
            ));
        }
        for cert in &certs {
            roots.add(cert.clone()).map_err(|err| {
                format!(
                    "tls-ca-file {}: unusable certificate: {} (the file must hold X.509 \
                     certificates in PEM)",
                    path.display(),
                    explain(&err)
                )
            })?;
        }
        let provider = provider();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| format!("tls-ca-file {}: {err}", path.display()))?;
        let verifier = ListedOrSigned {
            webpki,
            listed: certs,
        };
        Ok(Arc::new(
            builder()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth(),
        ))
    }
}

fn pem_error_text(err: &rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// webpki's verdict, except that a server certificate listed in `tls-ca-file` byte for byte is
/// accepted although it is marked as a CA. Everything else about it is still checked: its
/// validity period (webpki checks it before the CA mark, so `CaUsedAsEndEntity` comes only for a
/// certificate that is in its validity period; tests/integration/tls.rs has an expired one), the
/// server name, and the handshake signature made with its key.
#[derive(Debug)]
struct ListedOrSigned {
    webpki: Arc<WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

fn is_ca_used_as_end_entity(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for ListedOrSigned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(err)
                if is_ca_used_as_end_entity(&err)
                    && self
                        .listed
                        .iter()
                        .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A TLS failure in words, with what to do about it. `tls-ca-file` is suggested only where it
/// can help (not, for example, for a certificate made out for another host).
pub fn explain(err: &rustls::Error) -> String {
    use rustls::Error as E;
    const CA_FILE: &str = "if the server uses a private CA or a self-signed certificate, set \
                           tls-ca-file to a PEM file holding that CA's certificate or the \
                           server's own certificate";
    match err {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed by a trusted certificate authority \
                 ({CA_FILE})"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let names = match cert {
                    CertificateError::NotValidForNameContext { presented, .. }
                        if !presented.is_empty() =>
                    {
                        format!(" (it is made out for {})", presented.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "the server's certificate does not match the host of base-url{names}: use \
                     the host name the certificate was made for in base-url, or have the \
                     server use a certificate made out for this host"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired (renew it on the server, or check this \
                 machine's clock)"
                    .into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check this machine's clock)".into()
            }
            CertificateError::Revoked => {
                "the server's certificate has been revoked by its authority".into()
            }
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                "the server's certificate is signed with a signature that cannot be verified or \
                 an algorithm that is not supported (RSA, ECDSA or Ed25519 with SHA-256 or \
                 better are)"
                    .into()
            }
            CertificateError::BadEncoding => {
                "the server's certificate is malformed (not valid X.509 DER)".into()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the server's certificate is not made out for TLS servers (its extended key \
                 usage lacks serverAuth)"
                    .into()
            }
            CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
                Some(webpki::Error::CaUsedAsEndEntity) => format!(
                    "the server presents a CA certificate as its own certificate; this is \
                     trusted only when tls-ca-file holds exactly that certificate ({CA_FILE})"
                ),
                Some(webpki::Error::EndEntityUsedAsCa) => {
                    "the server's certificate chain uses a non-CA certificate as an \
                     authority: the certificate in tls-ca-file (or an intermediate) is not a \
                     CA certificate; give the CA's certificate, or the server's own"
                        .into()
                }
                Some(webpki::Error::UnsupportedCriticalExtension) => {
                    "the server's certificate has a critical extension that cannot be checked"
                        .into()
                }
                Some(webpki::Error::PathLenConstraintViolated)
                | Some(webpki::Error::MaximumPathDepthExceeded)
                | Some(webpki::Error::MaximumPathBuildCallsExceeded) => {
                    "the server's certificate chain is too long or breaks its own path length \
                     limits"
                        .into()
                }
                _ => format!(
                    "the server's certificate cannot be verified ({}; {CA_FILE}, and check the \
                     certificate with `openssl x509 -text`)",
                    in_words(&format!("{:?}", other.0))
                ),
            },
            other => format!(
                "the server's certificate was refused ({}; {CA_FILE}, and check the certificate \
                 with `openssl x509 -text`)",
                in_words(&format!("{other:?}"))
            ),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "the server did not answer in TLS: if it is a plain ws:// server, use ws:// in \
             base-url instead of wss://"
                .into()
        }
        E::AlertReceived(alert) => format!(
            "the server ended the TLS handshake ({}): it accepts none of the TLS versions (1.2, \
             1.3) and cipher suites this client offers, or wants a client certificate, which \
             this element does not send",
            in_words(&format!("{alert:?}"))
        ),
        E::NoCertificatesPresented => "the server sent no certificate".into(),
        E::PeerIncompatible(why) => format!(
            "the server's TLS is not compatible with this client ({}): it must offer TLS 1.2 or \
             1.3 with current cipher suites",
            in_words(&format!("{why:?}"))
        ),
        E::PeerMisbehaved(why) => format!(
            "the server broke the TLS protocol ({})",
            in_words(&format!("{why:?}"))
        ),
        E::General(text) => format!("TLS failed: {text}"),
        other => format!("TLS failed ({})", in_words(&format!("{other:?}"))),
    }
}

/// An I/O error during the TLS handshake in words, when it says something about TLS: a server
/// that closes the connection on a TLS greeting is most often a plain `ws://` server. `None` for
/// other I/O errors.
pub fn explain_io(err: &std::io::Error) -> Option<String> {
    (err.kind() == std::io::ErrorKind::UnexpectedEof && err.to_string().contains("tls handshake"))
        .then(|| {
            "the server closed the connection during the TLS handshake: if it is a plain ws:// \
             server, use ws:// in base-url instead of wss://"
                .to_string()
        })
}

/// A Debug-formatted error code as words: `NoCipherSuitesInCommon(..)` → "no cipher suites in
/// common". Only the leading identifier is kept; the payload, where there is one, is dropped.
fn in_words(debug: &str) -> String {
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut words = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    if words.is_empty() {
        "unknown reason".into()
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words only: no Rust type or variant names leak into what a user reads.
    #[test]
    fn explanations_name_no_rust_types() {
        let cases = [
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::InvalidCertificate(CertificateError::Expired),
            rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(webpki::Error::CaUsedAsEndEntity),
            ))),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ];
        for err in cases {
            let text = explain(&err);
            for word in [
                "UnknownIssuer",
                "NotValidForName",
                "CaUsedAsEndEntity",
                "OtherError",
                "Other(",
                "InvalidContentType",
                "BadEncoding",
            ] {
                assert!(!text.contains(word), "{word} in {text:?}");
            }
        }
    }

    #[test]
    fn only_errors_tls_ca_file_can_fix_suggest_it() {
        let unknown = explain(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(unknown.contains("tls-ca-file"), "{unknown}");
        let ca = explain(&rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity)),
        )));
        assert!(ca.contains("tls-ca-file"), "{ca}");
        let name = explain(&rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert!(!name.contains("tls-ca-file"), "{name}");
        assert!(name.contains("does not match the host"), "{name}");
    }
}
