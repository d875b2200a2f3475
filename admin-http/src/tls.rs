//! TLS and mutual TLS on an admin listener (issue 20: "token or mTLS, configurable"; R-OPS-3).
//!
//! [`Tls::from_files`] builds the server side from PEM files: the certificate chain, its
//! private key (read under the rule of every credential file, `apitap-secret`: owner-only
//! mode) and, for **mutual TLS**, a CA bundle that client certificates must chain to. With a
//! client CA, the handshake itself refuses a client without a certificate or with one that
//! does not verify (RFC 8446 §4.3.2, §4.4.2.4: `certificate_required`), so no request of an
//! unauthenticated client is read; the verified subject reaches the handler as
//! [`crate::Request::client_certificate`].
//!
//! Versions and ciphers follow Mozilla's "intermediate" profile (TLS 1.2 and 1.3, forward
//! secrecy only) through OpenSSL, the library the analyzer already links for PostgreSQL.
//! The certificate files are read once, at start: rotating them means restarting the
//! analyzer (Kubernetes: a rollout when the Secret changes).

use std::path::{Path, PathBuf};

use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509Ref;

/// Why a TLS configuration could not be loaded; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file.
    #[error("certificate chain {path}: {source}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        source: openssl::error::ErrorStack,
    },
    /// The private key file could not be read or is readable by others.
    #[error("private key {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: apitap_secret::SecretFileError,
    },
    /// The private key is not PEM, or does not belong to the certificate.
    #[error("private key {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        source: openssl::error::ErrorStack,
    },
    /// The client CA bundle.
    #[error("client CA bundle {path}: {source}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        source: openssl::error::ErrorStack,
    },
    /// Setting up the OpenSSL context failed.
    #[error("TLS context: {0}")]
    Context(openssl::error::ErrorStack),
}

/// A listener's TLS server side.
pub struct Tls {
    acceptor: SslAcceptor,
    mutual: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with the chain in `cert` (PEM, leaf first) and the key in `key` (PEM, owner-only
    /// file); with `client_ca`, mutual TLS: every client must present a certificate that
    /// chains to one of its CAs.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, TlsError> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .map_err(TlsError::Context)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(TlsError::Context)?;
        b.set_certificate_chain_file(cert)
            .map_err(|source| TlsError::Certificate {
                path: cert.to_owned(),
                source,
            })?;
        let pem = apitap_secret::read_secret_file(key, 1).map_err(|source| TlsError::KeyFile {
            path: key.to_owned(),
            source,
        })?;
        let key_error = |source| TlsError::Key {
            path: key.to_owned(),
            source,
        };
        let pkey = PKey::private_key_from_pem(pem.expose()).map_err(key_error)?;
        b.set_private_key(&pkey).map_err(key_error)?;
        b.check_private_key().map_err(key_error)?;
        if let Some(ca) = client_ca {
            let ca_error = |source| TlsError::ClientCa {
                path: ca.to_owned(),
                source,
            };
            b.set_ca_file(ca).map_err(ca_error)?;
            // The CAs the server names in its CertificateRequest (RFC 8446 §4.2.4).
            let names = openssl::x509::X509Name::load_client_ca_file(ca).map_err(ca_error)?;
            b.set_client_ca_list(names);
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        Ok(Tls {
            acceptor: b.build(),
            mutual: client_ca.is_some(),
        })
    }

    /// Whether clients must present a verified certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    pub(crate) fn acceptor(&self) -> &SslAcceptor {
        &self.acceptor
    }
}

/// The name a verified client certificate gives its holder: the subject's common name, else
/// its first DNS or e-mail subject alternative name, else the whole subject line.
pub(crate) fn client_name(cert: &X509Ref) -> String {
    let subject = cert.subject_name();
    if let Some(cn) = subject
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
    {
        return cn;
    }
    if let Some(names) = cert.subject_alt_names() {
        for n in names.iter() {
            if let Some(s) = n.dnsname().or_else(|| n.email()) {
                return s.to_owned();
            }
        }
    }
    subject
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}
