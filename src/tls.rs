//! TLS material from PEM files: the listener's certificate, served through a
//! resolver that a SIGHUP reload swaps in place (no new process, no dropped
//! connection), and the CA files a provider's upstream is verified against.

use arc_swap::ArcSwap;
use pingora_core::listeners::ALPN;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::tls::CaType;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use pingora_core::utils::tls::{WrappedX509, parse_x509};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate chain and its key, loaded and checked to belong together.
pub struct ServerCert {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate (hex), to tell certificates apart in logs.
    pub fingerprint: String,
    /// Subject, serial and expiry of the leaf, for the log.
    pub about: String,
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} '{path}': {e}"))
}

fn parse_cert<'a>(der: &'a [u8], path: &str) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("'{path}' holds a certificate that does not parse: {e}"))
}

/// Every certificate in a PEM file, in file order; an error when there is none.
fn certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} '{path}' is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} '{path}' holds no PEM certificate"));
    }
    for c in &certs {
        parse_cert(c, path)?;
    }
    Ok(certs)
}

/// Load `cert_file` (leaf first, then intermediates) and `key_file` (PKCS#8,
/// PKCS#1 or SEC1), and check that the key is the certificate's.
pub fn load_server_cert(cert_file: &str, key_file: &str) -> Result<ServerCert, String> {
    let chain = certs(cert_file, "cert_file")?;
    let key_pem = read(key_file, "key_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("key_file '{key_file}' holds no PEM private key"),
        e => format!("key_file '{key_file}' is not a valid PEM private key: {e}"),
    })?;
    pingora_core::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider installed".to_string())?;
    let leaf = chain[0].clone();
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!("key_file '{key_file}' does not go with cert_file '{cert_file}': {e}")
    })?;
    let parsed = parse_cert(&leaf, cert_file)?;
    let about = format!(
        "subject '{}', serial {}, valid until {}",
        parsed.subject(),
        parsed.raw_serial_as_string(),
        parsed.validity().not_after
    );
    if !parsed.validity().is_valid() {
        log::warn!("certificate in '{cert_file}' is not valid now ({about})");
    }
    Ok(ServerCert {
        key: Arc::new(key),
        fingerprint: hex::encode(Sha256::digest(&leaf)),
        about,
    })
}

/// The listener's certificate, read at every handshake; a reload stores a new one.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertResolver")
    }
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(CertResolver {
            current: ArcSwap::new(key),
        })
    }

    /// New handshakes present `key`; established connections keep theirs.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Pingora TLS settings for one listener: the shared resolver, and ALPN
/// offering HTTP/2 first when `http2` (else HTTP/1.1 only).
pub fn listener_settings(resolver: Arc<CertResolver>, http2: bool) -> TlsSettings {
    // The paths are unused: a resolver takes their place (TlsSettings::build).
    let mut s = TlsSettings::intermediate("", "").expect("never fails");
    s.set_cert_resolver(resolver);
    if http2 {
        s.enable_h2();
    } else {
        s.set_alpn(ALPN::H1);
    }
    s
}

/// A provider's `ca_file`: the certificates its upstream must chain to.
pub struct UpstreamCa {
    pub certs: Arc<CaType>,
    /// Keeps pooled connections verified against another CA (an older file,
    /// another provider on the same address) from being reused.
    pub pool_key: u64,
}

/// Load a PEM file of one or more CA certificates.
pub fn load_ca_file(path: &str) -> Result<UpstreamCa, String> {
    let certs = certs(path, "ca_file")?;
    let mut h = Sha256::new();
    for c in &certs {
        h.update(c.as_ref());
    }
    let digest = h.finalize();
    let pool_key = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // Parsed above: `parse_x509` (which panics on bad DER) is safe here.
    let wrapped: Vec<WrappedX509> = certs
        .iter()
        .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
        .collect();
    Ok(UpstreamCa {
        certs: Arc::from(wrapped.into_boxed_slice()),
        pool_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 CA, a leaf for 127.0.0.1 it signed, the leaf's key, and an
    // unrelated key (made with openssl for these tests only).
    const LEAF: &str = include_str!("../tests/data/tls/leaf.pem");
    const LEAF_KEY: &str = include_str!("../tests/data/tls/leaf.key");
    const CA: &str = include_str!("../tests/data/tls/ca.pem");
    const OTHER_KEY: &str = include_str!("../tests/data/tls/other.key");

    fn files(name: &str, parts: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("aigate-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (f, text) in parts {
            std::fs::write(dir.join(f), text).unwrap();
        }
        dir
    }

    fn p(dir: &std::path::Path, f: &str) -> String {
        dir.join(f).to_string_lossy().into_owned()
    }

    #[test]
    fn loads_a_matching_pair() {
        let d = files(
            "ok",
            &[("chain.pem", &format!("{LEAF}{CA}")), ("k.pem", LEAF_KEY)],
        );
        let c = load_server_cert(&p(&d, "chain.pem"), &p(&d, "k.pem")).unwrap();
        assert_eq!(c.key.cert.len(), 2, "leaf and intermediate both served");
        assert_eq!(c.fingerprint.len(), 64);
        assert!(c.about.contains("serial"), "{}", c.about);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rejects_what_cannot_serve() {
        let d = files(
            "bad",
            &[
                ("leaf.pem", LEAF),
                ("k.pem", LEAF_KEY),
                ("other.pem", OTHER_KEY),
                ("junk.pem", "not pem at all\n"),
            ],
        );
        let err = |c: &str, k: &str| load_server_cert(&p(&d, c), &p(&d, k)).err().unwrap();
        assert!(err("leaf.pem", "other.pem").contains("does not go with"));
        assert!(err("missing.pem", "k.pem").contains("cannot read cert_file"));
        assert!(err("leaf.pem", "missing.pem").contains("cannot read key_file"));
        assert!(err("junk.pem", "k.pem").contains("no PEM certificate"));
        assert!(err("leaf.pem", "junk.pem").contains("no PEM private key"));
        // Cert and key swapped by mistake.
        assert!(err("k.pem", "leaf.pem").contains("no PEM certificate"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ca_files() {
        let d = files(
            "ca",
            &[
                ("ca.pem", CA),
                ("two.pem", &format!("{CA}{LEAF}")),
                ("key.pem", LEAF_KEY),
            ],
        );
        let one = load_ca_file(&p(&d, "ca.pem")).unwrap();
        let two = load_ca_file(&p(&d, "two.pem")).unwrap();
        assert_eq!((one.certs.len(), two.certs.len()), (1, 2));
        assert_ne!(one.pool_key, two.pool_key);
        assert!(
            load_ca_file(&p(&d, "key.pem"))
                .err()
                .unwrap()
                .contains("no PEM certificate")
        );
        assert!(load_ca_file(&p(&d, "nope.pem")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn resolver_swaps() {
        let d = files("swap", &[("leaf.pem", LEAF), ("k.pem", LEAF_KEY)]);
        let a = load_server_cert(&p(&d, "leaf.pem"), &p(&d, "k.pem")).unwrap();
        let b = load_server_cert(&p(&d, "leaf.pem"), &p(&d, "k.pem")).unwrap();
        let r = CertResolver::new(a.key.clone());
        assert!(Arc::ptr_eq(&r.current.load_full(), &a.key));
        r.set(b.key.clone());
        assert!(Arc::ptr_eq(&r.current.load_full(), &b.key));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
