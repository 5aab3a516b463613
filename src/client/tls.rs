use std::path::PathBuf;
use std::sync::Arc;

use once_cell::sync::Lazy;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// How `wss://` servers are verified. Certificates are always verified; a private CA can be
/// added on top of the public web roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file with one or more extra CA certificates to trust.
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

fn build(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS set-up failed: {err}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Built once: every session with default settings shares it.
static DEFAULT_CONFIG: Lazy<Result<Arc<rustls::ClientConfig>, String>> =
    Lazy::new(|| build(web_roots()));

impl TlsSettings {
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let Some(path) = &self.extra_ca_file else {
            return DEFAULT_CONFIG.clone();
        };
        let mut roots = web_roots();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|err| format!("tls-ca-file {}: cannot read PEM: {err}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|err| format!("tls-ca-file {}: invalid PEM: {err}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls-ca-file {}: no CERTIFICATE block found",
                path.display()
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|err| {
                format!(
                    "tls-ca-file {}: unusable certificate: {err}",
                    path.display()
                )
            })?;
        }
        build(roots)
    }
}
