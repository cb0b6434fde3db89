//! TLS Secrets → certified keys, with certificates generated at test time.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use super::*;
use crate::gateway::tls::CertificateError;

/// A self-signed certificate for `name` and its private key, both PEM.
pub(super) fn self_signed(name: &str, alg: &'static SignatureAlgorithm) -> (String, String) {
    let key = KeyPair::generate_for(alg).expect("key generation");
    let cert = CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

/// A `kubernetes.io/tls` Secret as YAML, with the PEM in `stringData`.
pub(super) fn secret_yaml(namespace: &str, name: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {}\n  tls.key: {}\n",
        serde_json::to_string(cert).expect("JSON string"),
        serde_json::to_string(key).expect("JSON string"),
    )
}

fn secret(type_: Option<&str>, entries: &[(&str, &[u8])]) -> Secret {
    Secret {
        type_: type_.map(str::to_owned),
        data: Some(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

fn tls_secret(cert: &str, key: &str) -> Secret {
    secret(
        Some("kubernetes.io/tls"),
        &[("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())],
    )
}

fn id() -> ObjectRef {
    ObjectRef::new("Secret", "infra", "tls")
}

#[test]
fn ecdsa_and_ed25519_pkcs8_keys_load() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let (cert, key) = self_signed("example.test", alg);
        let certified = certified_key(&id(), &tls_secret(&cert, &key))
            .unwrap_or_else(|e| panic!("{alg:?}: {}", crate::config::error_chain(&e)));
        assert_eq!(certified.cert.len(), 1);
        assert!(certified.keys_match().is_ok());
    }
}

#[test]
fn sec1_ec_private_keys_load() {
    // The SEC1 ECPrivateKey is the OCTET STRING inside the PKCS#8 PrivateKeyInfo (RFC 5915
    // §3, RFC 5208 §5); re-wrapped as `EC PRIVATE KEY` PEM it is what OpenSSL writes.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = CertificateParams::new(vec!["example.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let sec1 = pkcs8_private_key(key.serialized_der());
    let pem = pem_block("EC PRIVATE KEY", sec1);
    assert!(matches!(
        PrivateKeyDer::from_pem_slice(pem.as_bytes()),
        Ok(PrivateKeyDer::Sec1(_))
    ));
    certified_key(&id(), &tls_secret(&cert.pem(), &pem)).expect("SEC1 key");
}

#[test]
fn chains_keep_the_leaf_first() {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let leaf = CertificateParams::new(vec!["example.test".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    let certified =
        certified_key(&id(), &tls_secret(&chain, &leaf_key.serialize_pem())).expect("chain");
    assert_eq!(certified.cert.len(), 2);
    assert_eq!(certified.cert[0].as_ref(), leaf.der().as_ref());
}

#[test]
fn a_key_of_another_certificate_is_rejected() {
    let (cert, _) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, other_key) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let err = certified_key(&id(), &tls_secret(&cert, &other_key)).expect_err("mismatch");
    assert!(
        matches!(err, CertificateError::KeyMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), "InvalidCertificateRef");
}

#[test]
fn malformed_secrets_say_what_is_wrong() {
    let (cert, key) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let message = |s: Secret| match certified_key(&id(), &s) {
        Ok(_) => panic!("accepted"),
        Err(e) => crate::config::error_chain(&e),
    };
    assert_eq!(
        message(secret(None, &[])),
        "Secret infra/tls is of type \"Opaque\", not \"kubernetes.io/tls\""
    );
    assert_eq!(
        message(secret(
            Some("kubernetes.io/tls"),
            &[("tls.crt", cert.as_bytes())]
        )),
        "Secret infra/tls has no tls.key"
    );
    assert_eq!(
        message(tls_secret("not PEM at all", &key)),
        "Secret infra/tls: tls.crt has no CERTIFICATE PEM block"
    );
    // The certificate where the key should be.
    assert_eq!(
        message(tls_secret(&cert, &cert)),
        "Secret infra/tls: tls.key has no private key PEM block"
    );
    assert!(
        message(tls_secret(&cert, &key.replace("-----END", "-----BROKEN")))
            .starts_with("Secret infra/tls: tls.key is not valid PEM: ")
    );
    // A PKCS#1 block is recognized as an RSA key, then rejected as malformed.
    let rsa = pem_block("RSA PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
    assert!(
        message(tls_secret(&cert, &rsa))
            .starts_with("Secret infra/tls: unsupported or malformed private key: ")
    );
}

#[test]
fn string_data_overrides_data() {
    // Secret.stringData: "All keys and values are merged into the data field on write,
    // overwriting any existing values."
    let (cert, key) = self_signed("example.test", &rcgen::PKCS_ECDSA_P256_SHA256);
    let mut s = tls_secret(&cert, "garbage");
    s.string_data = Some(BTreeMap::from([("tls.key".to_owned(), key)]));
    certified_key(&id(), &s).expect("stringData key");
}

/// The content of the OCTET STRING `privateKey` of a DER PrivateKeyInfo.
fn pkcs8_private_key(der: &[u8]) -> &[u8] {
    // SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }
    let (_, body) = tlv(der);
    let (rest, _version) = next(body);
    let (rest, _algorithm) = next(rest);
    let (_, private_key) = next(rest);
    tlv(private_key).1
}

/// Splits the first TLV of `der`: (everything after it, the whole TLV).
fn next(der: &[u8]) -> (&[u8], &[u8]) {
    let (header, len) = length(der);
    let (first, rest) = der.split_at(header + len);
    (rest, first)
}

/// The header length and content of the TLV at the start of `der`, as (rest, content).
fn tlv(der: &[u8]) -> (&[u8], &[u8]) {
    let (header, len) = length(der);
    let (content, rest) = der[header..].split_at(len);
    (rest, content)
}

/// (header length, content length) of a DER TLV (definite lengths only).
fn length(der: &[u8]) -> (usize, usize) {
    let first = der[1];
    if first < 0x80 {
        return (2, usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    let len = der[2..2 + n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    (2 + n, len)
}

/// `bytes` as a PEM block with `label`.
fn pem_block(label: &str, bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
