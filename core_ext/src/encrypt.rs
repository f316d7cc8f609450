//! Encrypted click URLs: the `d` blob, AES-256-GCM (NIST SP 800-38D).
//!
//! `d` is `[<key_prefix>.]<blob>` where the blob is unpadded base64url (RFC 4648
//! section 5) of `u8 version || u8 key_id || nonce (12) || ciphertext || tag (16)`.
//! The associated data binds the key prefix, version and key id, so none of them
//! can be swapped without failing the tag.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

use crate::errors::{echo, CoreError};
use crate::gil;
use crate::prefix::{is_valid_key_prefix, KEY_PREFIX_FORM};
use crate::sign::checked_expiry;
use crate::text::utf8_argument;

pub const BLOB_VERSION: u8 = 1;
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_DOMAIN: &[u8] = b"tracker-d-v1";
/// Version, key id, nonce, tag and the smallest plaintext (expiry and param count).
const MIN_BLOB_LEN: usize = 2 + NONCE_LEN + TAG_LEN + 8 + 2;
/// Longest accepted `d` value in characters; browsers and servers cap URLs near 8 KiB.
pub const MAX_D_LEN: usize = 16 * 1024;

/// Plaintext of a `d` blob together with its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub destination: String,
    pub params: Vec<(String, String)>,
    pub expires_at: u64,
    pub key_prefix: Option<String>,
    pub key_id: u8,
}

fn associated_data(key_prefix: Option<&str>, key_id: u8) -> Vec<u8> {
    let prefix = key_prefix.unwrap_or("").as_bytes();
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 1 + prefix.len() + 2);
    aad.extend_from_slice(AAD_DOMAIN);
    // Prefixes are at most 32 bytes, checked before this is called.
    aad.push(prefix.len() as u8);
    aad.extend_from_slice(prefix);
    aad.push(BLOB_VERSION);
    aad.push(key_id);
    aad
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, CoreError> {
    if key.len() != KEY_LEN {
        return Err(CoreError::InvalidArgument(format!(
            "key must be {KEY_LEN} bytes, got {} bytes",
            key.len()
        )));
    }
    Aes256Gcm::new_from_slice(key)
        .map_err(|_| CoreError::InvalidArgument(format!("key must be {KEY_LEN} bytes")))
}

/// Encrypts `plaintext` and returns the ciphertext followed by the 16-byte tag.
pub fn gcm_seal(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CoreError> {
    cipher(key)?
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CoreError::Codec("AES-GCM encryption failed".to_owned()))
}

/// Checks the tag of `sealed` (ciphertext then tag) and returns the plaintext.
pub fn gcm_open(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CoreError> {
    cipher(key)?
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| {
            CoreError::Decryption(
                "d failed authentication: wrong key, key id or prefix, or altered bytes".to_owned(),
            )
        })
}

fn push_u16_len(plaintext: &mut Vec<u8>, field_name: &str, bytes: &[u8]) -> Result<(), CoreError> {
    let len = u16::try_from(bytes.len()).map_err(|_| {
        CoreError::Codec(format!(
            "{field_name} is {} bytes, the maximum is 65535",
            bytes.len()
        ))
    })?;
    plaintext.extend_from_slice(&len.to_be_bytes());
    plaintext.extend_from_slice(bytes);
    Ok(())
}

fn build_plaintext(
    destination: &str,
    params: &[(String, String)],
    expires_at: u64,
) -> Result<Vec<u8>, CoreError> {
    let count = u16::try_from(params.len()).map_err(|_| {
        CoreError::Codec(format!(
            "{} params given, the maximum is 65535",
            params.len()
        ))
    })?;
    for (index, (name, _)) in params.iter().enumerate() {
        if name.is_empty() {
            return Err(CoreError::Codec("param names must not be empty".to_owned()));
        }
        if params[..index].iter().any(|(earlier, _)| earlier == name) {
            return Err(CoreError::Codec(format!(
                "param '{}' is given twice",
                echo(name)
            )));
        }
    }

    let mut plaintext = Vec::with_capacity(10 + destination.len() + params.len() * 16);
    plaintext.extend_from_slice(&expires_at.to_be_bytes());
    plaintext.extend_from_slice(&count.to_be_bytes());
    for (name, value) in params {
        push_u16_len(&mut plaintext, "param name", name.as_bytes())?;
        push_u16_len(&mut plaintext, "param value", value.as_bytes())?;
    }
    plaintext.extend_from_slice(destination.as_bytes());
    Ok(plaintext)
}

/// Encrypts a destination and returns the `d` value.
pub fn seal(
    key: &[u8],
    key_id: u8,
    destination: &str,
    key_prefix: Option<&str>,
    params: &[(String, String)],
    expires_at: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<String, CoreError> {
    if let Some(prefix) = key_prefix {
        if !is_valid_key_prefix(prefix) {
            return Err(CoreError::Codec(format!(
                "key_prefix must be {KEY_PREFIX_FORM}, got '{}'",
                echo(prefix)
            )));
        }
    }
    let plaintext = build_plaintext(destination, params, expires_at)?;
    let aad = associated_data(key_prefix, key_id);
    let sealed = gcm_seal(key, &nonce, &aad, &plaintext)?;

    let mut blob = Vec::with_capacity(2 + NONCE_LEN + sealed.len());
    blob.push(BLOB_VERSION);
    blob.push(key_id);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    let encoded = URL_SAFE_NO_PAD.encode(&blob);
    let d = match key_prefix {
        Some(prefix) => format!("{prefix}.{encoded}"),
        None => encoded,
    };
    if d.len() > MAX_D_LEN {
        return Err(CoreError::Codec(format!(
            "the d value would be {} characters, the maximum is {MAX_D_LEN}",
            d.len()
        )));
    }
    Ok(d)
}

/// Splits `d` into its key prefix and decoded blob, checking everything that can
/// be checked without the key.
fn parse_d(d: &str) -> Result<(Option<&str>, Vec<u8>), CoreError> {
    if d.len() > MAX_D_LEN {
        return Err(CoreError::Decryption(format!(
            "d is {} characters, the maximum is {MAX_D_LEN}",
            d.len()
        )));
    }
    let (prefix, encoded) = match d.split_once('.') {
        Some((prefix, encoded)) => {
            if !is_valid_key_prefix(prefix) {
                return Err(CoreError::Decryption(format!(
                    "d must start with a key prefix of {KEY_PREFIX_FORM} and '.', got '{}'",
                    echo(d)
                )));
            }
            (Some(prefix), encoded)
        }
        None => (None, d),
    };
    // The engine rejects padding and stray bits in the last character.
    let blob = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| {
        CoreError::Decryption(format!(
            "d is not canonical unpadded base64url, got '{}'",
            echo(d)
        ))
    })?;
    if blob.len() < MIN_BLOB_LEN {
        return Err(CoreError::Decryption(format!(
            "d blob is {} bytes, the minimum is {MIN_BLOB_LEN}",
            blob.len()
        )));
    }
    if blob[0] != BLOB_VERSION {
        return Err(CoreError::Decryption(format!(
            "d blob version is {}, the supported version is {BLOB_VERSION}",
            blob[0]
        )));
    }
    Ok((prefix, blob))
}

/// Returns the key prefix and key id of a `d` value without decrypting it.
pub fn header(d: &str) -> Result<(Option<&str>, u8), CoreError> {
    let (prefix, blob) = parse_d(d)?;
    Ok((prefix, blob[1]))
}

struct PlaintextReader<'a> {
    rest: &'a [u8],
}

impl<'a> PlaintextReader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.rest.len() < len {
            return None;
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

struct Plaintext {
    expires_at: u64,
    params: Vec<(String, String)>,
    destination: String,
}

fn parse_plaintext(plaintext: &[u8]) -> Option<Plaintext> {
    let mut reader = PlaintextReader { rest: plaintext };
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(reader.take(8)?);
    let count = reader.u16()?;
    let mut params = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let name = reader.string()?;
        let value = reader.string()?;
        params.push((name, value));
    }
    let destination = String::from_utf8(reader.rest.to_vec()).ok()?;
    Some(Plaintext {
        expires_at: u64::from_be_bytes(expiry),
        params,
        destination,
    })
}

/// Authenticates and decrypts a `d` value. The tag is checked before any
/// plaintext is parsed; expiry is checked last.
pub fn open(key: &[u8], d: &str, now: i64) -> Result<Opened, CoreError> {
    let (prefix, blob) = parse_d(d)?;
    let key_id = blob[1];
    let aad = associated_data(prefix, key_id);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[2..2 + NONCE_LEN]);
    let plaintext = gcm_open(key, &nonce, &aad, &blob[2 + NONCE_LEN..])?;

    let Plaintext {
        expires_at,
        params,
        destination,
    } = parse_plaintext(&plaintext).ok_or_else(|| {
        CoreError::Decryption("d plaintext is malformed after a valid tag".to_owned())
    })?;
    if expires_at != 0 && i128::from(now) > i128::from(expires_at) {
        return Err(CoreError::Expired(format!(
            "link expired at {expires_at}, now is {now} (Unix seconds)"
        )));
    }
    Ok(Opened {
        destination,
        params,
        expires_at,
        key_prefix: prefix.map(str::to_owned),
        key_id,
    })
}

/// Result of `decrypt_destination`.
#[pyclass(frozen, module = "tracker._core")]
pub struct Decrypted {
    #[pyo3(get)]
    destination: String,
    #[pyo3(get)]
    params: Vec<(String, String)>,
    #[pyo3(get)]
    expires_at: Option<u64>,
    #[pyo3(get)]
    key_prefix: Option<String>,
    #[pyo3(get)]
    key_id: u8,
}

#[pymethods]
impl Decrypted {
    fn __repr__(&self) -> String {
        // The destination and params are plaintext and stay out of the repr.
        format!(
            "Decrypted(key_prefix={:?}, key_id={}, expires_at={:?}, params={})",
            self.key_prefix.as_deref().unwrap_or(""),
            self.key_id,
            self.expires_at,
            self.params.len()
        )
    }
}

fn checked_key_id(key_id: i64) -> Result<u8, CoreError> {
    u8::try_from(key_id).map_err(|_| {
        CoreError::InvalidArgument(format!("key_id must be between 0 and 255, got {key_id}"))
    })
}

#[pyfunction]
#[pyo3(signature = (
    key, key_id, destination, *, key_prefix = None, params = Vec::new(), expires_at = None,
    nonce = None
))]
#[allow(clippy::too_many_arguments)]
pub fn encrypt_destination(
    py: Python<'_>,
    key: PyBackedBytes,
    key_id: i64,
    destination: String,
    key_prefix: Option<String>,
    params: Vec<(String, String)>,
    expires_at: Option<i64>,
    nonce: Option<PyBackedBytes>,
) -> PyResult<String> {
    let key_id = checked_key_id(key_id)?;
    let expiry = checked_expiry(expires_at).map_err(|err| CoreError::Codec(err.to_string()))?;
    let mut nonce_bytes = [0u8; NONCE_LEN];
    match nonce {
        Some(given) if given.len() == NONCE_LEN => nonce_bytes.copy_from_slice(&given),
        Some(given) => {
            return Err(CoreError::InvalidArgument(format!(
                "nonce must be {NONCE_LEN} bytes, got {} bytes",
                given.len()
            ))
            .into())
        }
        None => getrandom::getrandom(&mut nonce_bytes)
            .map_err(|_| CoreError::Codec("the system random source failed".to_owned()))?,
    }
    let size = destination.len() + params.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    let d = gil::run_sized(py, size, || {
        seal(
            &key,
            key_id,
            &destination,
            key_prefix.as_deref(),
            &params,
            expiry,
            nonce_bytes,
        )
    })?;
    Ok(d)
}

#[pyfunction]
pub fn blob_header(d: &Bound<'_, PyAny>) -> PyResult<(Option<String>, u8)> {
    let d = utf8_argument(d, "d", CoreError::Decryption)?;
    let (prefix, key_id) = header(&d)?;
    Ok((prefix.map(str::to_owned), key_id))
}

#[pyfunction]
#[pyo3(signature = (key, d, *, now))]
pub fn decrypt_destination(
    py: Python<'_>,
    key: PyBackedBytes,
    d: &Bound<'_, PyAny>,
    now: i64,
) -> PyResult<Decrypted> {
    let d = utf8_argument(d, "d", CoreError::Decryption)?;
    let opened = gil::run_sized(py, d.len(), || open(&key, &d, now))?;
    Ok(Decrypted {
        destination: opened.destination,
        params: opened.params,
        expires_at: (opened.expires_at != 0).then_some(opened.expires_at),
        key_prefix: opened.key_prefix,
        key_id: opened.key_id,
    })
}
