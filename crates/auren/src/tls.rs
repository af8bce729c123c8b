//! TLS material shared by the API listener and the Redis client: one crypto provider, PEM files
//! read with errors that name the file, and the listener's certificate reloaded when its files
//! change.
//!
//! One provider (ring) for every rustls user in the process: sqlx and redis are built with it,
//! as reqwest's rustls is, so no second C crypto library (aws-lc) is compiled, and crates that
//! build their config from the process default (redis) find one. PostgreSQL's TLS is sqlx's own (configured
//! from the URL in `store/`); Kafka's is librdkafka's OpenSSL (configured in `log/kafka/`).
//!
//! The listener offers TLS 1.3 and 1.2 (1.3 preferred, as rustls orders them); older versions
//! are not implemented by rustls at all.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("the certificate {} does not go with the key {}: {source}", cert.display(), key.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS configuration")]
    Config(#[from] rustls::Error),
}

/// The process's crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process default, for the clients that build their TLS config from it
/// (redis). Idempotent; a default installed earlier is kept.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (a chain: the leaf first).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: path.to_path_buf(),
    })
}

/// The bytes of a CA file, checked to hold at least one certificate, for clients that take PEM.
pub fn read_ca_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    read_certs(path)?;
    read(path)
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let der = read_key(key)?;
    CertifiedKey::from_der(chain, der, &provider())
        .map(Arc::new)
        .map_err(|source| TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The listener's certificate, swapped in place when its files change: connections already
/// open keep the certificate they were made with, new handshakes get the new one.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCert {
    /// Loads the pair; an unreadable or mismatched pair is an error (the service refuses to start).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let seen = (mtime(cert), mtime(key));
        Ok(Arc::new(Self {
            current: RwLock::new(certified_key(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            seen: Mutex::new(seen),
        }))
    }

    /// Reloads when either file's modification time changed since the last look. A pair that
    /// does not load (a half-written swap: new certificate, old key) keeps the one in force; the
    /// next change of either file tries again.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = (mtime(&self.cert), mtime(&self.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return None;
            }
            *seen = now;
        }
        Some(certified_key(&self.cert, &self.key).map(|k| {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = k;
        }))
    }

    /// The server config for the listener: TLS 1.3 and 1.2, HTTP/1.1 over ALPN.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
