//! The server's TLS configuration: certificate and key from PEM files, or a self-signed pair
//! generated into those paths on first start. TLS 1.2 and 1.3 only (rustls supports nothing
//! older), aws-lc-rs as the only provider.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration could not be built; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found ({reason})")]
    Certificate { path: PathBuf, reason: String },
    #[error("{path}: no PEM private key found ({reason})")]
    Key { path: PathBuf, reason: String },
    #[error(
        "{missing}: missing, while {present} exists: provide both, or neither to have a self-signed pair generated"
    )]
    HalfPair { missing: PathBuf, present: PathBuf },
    #[error("certificate {cert} and key {key} do not form a usable pair: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// What `load_or_generate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateSource {
    Loaded,
    Generated,
}

/// Loads the pair, or generates a self-signed one for `hostnames` when both files are absent.
pub fn load_or_generate(
    cert_path: &Path,
    key_path: &Path,
    hostnames: &[String],
) -> Result<(Arc<ServerConfig>, CertificateSource), TlsError> {
    let source = match (cert_path.exists(), key_path.exists()) {
        (true, true) => CertificateSource::Loaded,
        (false, false) => {
            generate(cert_path, key_path, hostnames)?;
            CertificateSource::Generated
        }
        (true, false) => {
            return Err(TlsError::HalfPair {
                missing: key_path.into(),
                present: cert_path.into(),
            });
        }
        (false, true) => {
            return Err(TlsError::HalfPair {
                missing: cert_path.into(),
                present: key_path.into(),
            });
        }
    };
    Ok((Arc::new(load(cert_path, key_path)?), source))
}

/// `load`, asking clients for a certificate verified against the CA certificates in `ca_path`
/// (PEM). A client without one is still served: it is then identified some other way or not.
pub fn load_with_client_ca(
    cert_path: &Path,
    key_path: &Path,
    ca_path: &Path,
) -> Result<ServerConfig, TlsError> {
    let bad_ca = |reason: String| TlsError::Certificate {
        path: ca_path.into(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_path).map_err(|e| bad_ca(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad_ca(e.to_string()))?)
            .map_err(|e| bad_ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad_ca("the file holds no CERTIFICATE block".into()));
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad_ca(e.to_string()))?;
    let (chain, key) = read_pair(cert_path, key_path)?;
    ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair {
            cert: cert_path.into(),
            key: key_path.into(),
            reason: e.to_string(),
        })
}

/// Builds the rustls configuration from PEM files.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let (chain, key) = read_pair(cert_path, key_path)?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair {
            cert: cert_path.into(),
            key: key_path.into(),
            reason: e.to_string(),
        })?;
    with_tickets(config)
}

/// Offers clients session resumption with stateless tickets (RFC 5077 / TLS 1.3 tickets):
/// an MTA that reconnects for each message skips the full handshake (benches/README.md). The
/// ticket keys live in memory only and rotate (rustls's `Ticketer`: every 6 hours); they are
/// never written anywhere. Not used with client certificates: a resumed session would carry
/// the certificate identity of a past handshake.
fn with_tickets(mut config: ServerConfig) -> Result<ServerConfig, TlsError> {
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(config)
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<Pair, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert_path.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_path.into(),
            reason: "the file holds no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.into(),
        reason: e.to_string(),
    })?;
    Ok((chain, key))
}

/// A self-signed certificate for `hostnames` (the first is the subject's common name; IP
/// addresses become IP SANs), valid from yesterday for a year at most, and its key.
fn self_signed_pair(hostnames: &[String]) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, TlsError> {
    let error = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(hostnames.to_vec()).map_err(error)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        hostnames.first().map_or("localhost", String::as_str),
    );
    subject.push(rcgen::DnType::OrganizationName, "sesgate self-signed");
    params.distinguished_name = subject;
    let date = |days: i64| {
        let day = jiff::tz::Offset::UTC
            .to_datetime(jiff::Timestamp::now())
            .date()
            .checked_add(jiff::Span::new().days(days))
            .unwrap_or_default();
        rcgen::date_time_ymd(day.year().into(), day.month() as u8, day.day() as u8)
    };
    // Yesterday: a client whose clock is a little behind still accepts it.
    params.not_before = date(-1);
    params.not_after = date(364);
    let signing_key = rcgen::KeyPair::generate().map_err(error)?;
    let cert = params.self_signed(&signing_key).map_err(error)?;
    Ok(rcgen::CertifiedKey { cert, signing_key })
}

/// The server configuration of a fresh self-signed certificate, kept in memory only (`check`
/// uses it to test what `serve` would generate, without writing).
pub fn self_signed(hostnames: &[String]) -> Result<ServerConfig, TlsError> {
    let pair = self_signed_pair(hostnames)?;
    let key = PrivateKeyDer::try_from(pair.signing_key.serialize_der())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pair.cert.der().clone()], key)
        .map_err(|e| TlsError::Generate(e.to_string()))
}

fn generate(cert_path: &Path, key_path: &Path, hostnames: &[String]) -> Result<(), TlsError> {
    let pair = self_signed_pair(hostnames)?;
    for path in [cert_path, key_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| TlsError::Io {
                path: dir.into(),
                source,
            })?;
        }
    }
    write_private(key_path, pair.signing_key.serialize_pem().as_bytes())?;
    fs::write(cert_path, pair.cert.pem()).map_err(|source| TlsError::Io {
        path: cert_path.into(),
        source,
    })
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.into(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads() {
        let dir = std::env::temp_dir().join(format!("sesgate-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (cert, key) = (dir.join("certs/a.crt"), dir.join("certs/a.key"));
        let names = vec!["localhost".to_owned()];
        assert_eq!(
            load_or_generate(&cert, &key, &names).unwrap().1,
            CertificateSource::Generated
        );
        assert_eq!(
            load_or_generate(&cert, &key, &names).unwrap().1,
            CertificateSource::Loaded
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        fs::remove_file(&key).unwrap();
        let err = load_or_generate(&cert, &key, &names)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.key: missing"), "{err}");
        fs::write(&key, "not a key").unwrap();
        let err = load_or_generate(&cert, &key, &names)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.key: no PEM private key"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
