//! TLS certificates of HTTPS listeners: a Secret of type `kubernetes.io/tls` → a rustls
//! [`CertifiedKey`].
//!
//! Kubernetes "TLS secrets": "The `kubernetes.io/tls` Secret type is for storing a certificate
//! and its associated key", with "the `tls.key` and the `tls.crt` key in the `data` (or
//! `stringData`) field". Both are PEM: `tls.crt` the certificate chain, leaf first; `tls.key`
//! one private key, PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
//! (`EC PRIVATE KEY`); RSA, ECDSA P-256/P-384 and Ed25519 keys are supported (ring).

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::ObjectRef;

/// The Secret type of TLS certificates.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The key of the certificate chain in a TLS Secret.
pub const CERT_KEY: &str = "tls.crt";
/// The key of the private key in a TLS Secret.
pub const PRIVATE_KEY_KEY: &str = "tls.key";

/// Why a listener's certificateRef gives no certificate. Each variant maps to the listener's
/// `ResolvedRefs` reason ([`CertificateError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// An HTTPS listener without `tls.certificateRefs` (GatewayTLSConfig.certificateRefs: "This
    /// field is required to have at least one element when the mode is set to "Terminate"").
    #[error("no tls.certificateRefs")]
    NoCertificateRefs,
    /// A reference to something else than a core Secret.
    #[error("certificateRef to {kind} in group {group:?}: only core Secrets are supported")]
    UnsupportedKind {
        /// The referent's group.
        group: String,
        /// The referent's kind.
        kind: String,
    },
    /// A cross-namespace reference no ReferenceGrant allows.
    #[error("{secret} is in another namespace and no ReferenceGrant there allows the reference")]
    RefNotPermitted {
        /// The Secret.
        secret: ObjectRef,
    },
    /// No such Secret in the configuration.
    #[error("{secret} does not exist")]
    NotFound {
        /// The Secret.
        secret: ObjectRef,
    },
    /// The Secret is not of type `kubernetes.io/tls`.
    #[error("{secret} is of type {type_:?}, not \"kubernetes.io/tls\"")]
    WrongType {
        /// The Secret.
        secret: ObjectRef,
        /// Its type (`Opaque` when unset).
        type_: String,
    },
    /// The Secret lacks `tls.crt` or `tls.key`.
    #[error("{secret} has no {key}")]
    MissingKey {
        /// The Secret.
        secret: ObjectRef,
        /// The missing key.
        key: &'static str,
    },
    /// `tls.crt` or `tls.key` is not valid PEM.
    #[error("{secret}: {key} is not valid PEM")]
    Pem {
        /// The Secret.
        secret: ObjectRef,
        /// The key.
        key: &'static str,
        /// The parser's error.
        #[source]
        source: pem::Error,
    },
    /// `tls.crt` has no `CERTIFICATE` block, or `tls.key` no private key block.
    #[error("{secret}: {key} has no {what} PEM block")]
    NoPemBlock {
        /// The Secret.
        secret: ObjectRef,
        /// The key.
        key: &'static str,
        /// `CERTIFICATE` or `private key`.
        what: &'static str,
    },
    /// The private key is of an unsupported type, or malformed.
    #[error("{secret}: unsupported or malformed private key")]
    PrivateKey {
        /// The Secret.
        secret: ObjectRef,
        /// rustls' error.
        #[source]
        source: Box<rustls::Error>,
    },
    /// The certificate cannot be parsed, or its public key is not the private key's.
    #[error("{secret}: the private key does not match the certificate")]
    KeyMismatch {
        /// The Secret.
        secret: ObjectRef,
        /// rustls' error.
        #[source]
        source: Box<rustls::Error>,
    },
}

impl CertificateError {
    /// The listener `ResolvedRefs` condition reason: ListenerReasonRefNotPermitted for a
    /// reference no ReferenceGrant allows ("If the reference is not allowed, the reason
    /// RefNotPermitted must be used instead"), else ListenerReasonInvalidCertificateRef ("A
    /// CertificateRef is considered invalid when it refers to a nonexistent or unsupported
    /// resource or kind, or when the data within that resource is malformed").
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RefNotPermitted { .. } => "RefNotPermitted",
            _ => "InvalidCertificateRef",
        }
    }
}

/// Parses the TLS Secret `secret` (identified by `id` in messages) into a certificate and key
/// rustls can serve, checking that the key belongs to the leaf certificate. `stringData`
/// entries override `data` ones, as the API server merges them on write.
pub fn certified_key(id: &ObjectRef, secret: &Secret) -> Result<CertifiedKey, CertificateError> {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != TLS_SECRET_TYPE {
        return Err(CertificateError::WrongType {
            secret: id.clone(),
            type_: type_.to_owned(),
        });
    }
    let value = |key: &'static str| -> Result<&[u8], CertificateError> {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(String::as_bytes)
            .or_else(|| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.as_slice())
            })
            .ok_or_else(|| CertificateError::MissingKey {
                secret: id.clone(),
                key,
            })
    };
    let pem_error = |key: &'static str| {
        move |source: pem::Error| match source {
            pem::Error::NoItemsFound => CertificateError::NoPemBlock {
                secret: id.clone(),
                key,
                what: if key == CERT_KEY {
                    "CERTIFICATE"
                } else {
                    "private key"
                },
            },
            source => CertificateError::Pem {
                secret: id.clone(),
                key,
                source,
            },
        }
    };

    let chain = CertificateDer::pem_slice_iter(value(CERT_KEY)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(CERT_KEY))?;
    if chain.is_empty() {
        return Err(pem_error(CERT_KEY)(pem::Error::NoItemsFound));
    }
    let key = PrivateKeyDer::from_pem_slice(value(PRIVATE_KEY_KEY)?)
        .map_err(pem_error(PRIVATE_KEY_KEY))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
        CertificateError::PrivateKey {
            secret: id.clone(),
            source: Box::new(source),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(source) => Err(CertificateError::KeyMismatch {
            secret: id.clone(),
            source: Box::new(source),
        }),
    }
}
