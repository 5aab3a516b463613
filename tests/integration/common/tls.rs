// SPDX-License-Identifier: MPL-2.0
//! Test certificates made at test time with rcgen: a self-signed CA and server certificates it
//! signs, as PEM, plus the [`TlsIdentity`] the test server takes.
//!
//! Used by the root crate's integration tests (`tests/integration/tls.rs`) and, through `#[path]`,
//! by the test server's own `test-server/tests/integration/tls.rs`, so it needs nothing but rcgen, the test
//! server and std.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use fireworks_test_server::TlsIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A private certificate authority (self-signed root).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA with a fresh key; `name` is its common name.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// The CA certificate, PEM: what a client adds to its trusted roots.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA, with its
    /// key. The chain holds the leaf only: the CA is the client's trust anchor.
    pub fn issue(&self, names: &[&str]) -> TlsIdentity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server parameters");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        TlsIdentity::new(cert.pem(), key.serialize_pem())
    }
}

/// A fresh CA and a server identity for `localhost` and `127.0.0.1` signed by it.
pub fn localhost_pki() -> (TestCa, TlsIdentity) {
    let ca = TestCa::new("fireworksstt test CA");
    let identity = ca.issue(&["localhost", "127.0.0.1"]);
    (ca, identity)
}

/// Writes `contents` to a new file in the temporary directory (a name unique to this process
/// and call, ending in `name`); returns its path. Callers remove it.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let unique = format!(
        "fw-tls-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(unique);
    std::fs::write(&path, contents).expect("write temporary file");
    path
}
