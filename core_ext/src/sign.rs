//! Signed click URLs: the covered message and HMAC-SHA256 (RFC 2104) signatures.
//!
//! The message is `"tracker-click-v1"`, then length-prefixed key prefix and
//! destination, the expiry as u64 (0 when absent), and the covered params sorted
//! by the UTF-8 bytes of their names, all integers big-endian.

use hmac::{Hmac, Mac};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use sha2::Sha256;

use crate::errors::{echo, CoreError};
use crate::gil;
use crate::prefix::{is_valid_key_prefix, KEY_PREFIX_FORM};
use crate::text::utf8_argument;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEX_LEN: usize = 64;
const DOMAIN: &[u8] = b"tracker-click-v1";
/// URL parameters that carry the signature itself and so can never be covered.
const RESERVED_PARAMS: [&str; 4] = ["url", "sig", "exp", "sp"];

/// Returns the HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], CoreError> {
    let mut mac = new_mac(key)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

fn new_mac(key: &[u8]) -> Result<HmacSha256, CoreError> {
    // HMAC hashes long keys and pads short ones, so no length fails in practice.
    HmacSha256::new_from_slice(key)
        .map_err(|_| CoreError::InvalidArgument("HMAC key length is not supported".to_owned()))
}

/// Checks an expiry given by a caller: absent, or Unix seconds of at least 1,
/// because 0 encodes "no expiry" and would let anyone strip `exp=0` from a link.
pub fn checked_expiry(expires_at: Option<i64>) -> Result<u64, CoreError> {
    match expires_at {
        None => Ok(0),
        Some(seconds) if seconds >= 1 => Ok(seconds as u64),
        Some(seconds) => Err(CoreError::Signature(format!(
            "expires_at must be Unix seconds of at least 1, got {seconds}"
        ))),
    }
}

fn push_u32_len(message: &mut Vec<u8>, bytes: &[u8]) -> Result<(), CoreError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| CoreError::Signature("a signed value is longer than 4 GiB".to_owned()))?;
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(bytes);
    Ok(())
}

/// Builds the exact bytes a click signature covers.
pub fn signature_message(
    destination: &str,
    key_prefix: Option<&str>,
    params: &[(String, String)],
    expires_at: u64,
) -> Result<Vec<u8>, CoreError> {
    if let Some(prefix) = key_prefix {
        if !is_valid_key_prefix(prefix) {
            return Err(CoreError::Signature(format!(
                "key_prefix must be {KEY_PREFIX_FORM}, got '{}'",
                echo(prefix)
            )));
        }
    }

    let mut covered: Vec<&(String, String)> = params.iter().collect();
    covered.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (index, (name, _)) in covered.iter().enumerate() {
        let name = name.as_str();
        if name.is_empty() || name.contains(',') {
            return Err(CoreError::Signature(format!(
                "covered param name '{}' must be non-empty and contain no comma",
                echo(name)
            )));
        }
        if RESERVED_PARAMS.contains(&name) {
            return Err(CoreError::Signature(format!(
                "param '{name}' cannot be covered by a signature"
            )));
        }
        if index > 0 && covered[index - 1].0 == name {
            return Err(CoreError::Signature(format!(
                "covered param '{}' is given twice",
                echo(name)
            )));
        }
    }

    let body_len: usize = destination.len()
        + covered
            .iter()
            .map(|(name, value)| name.len() + value.len() + 8)
            .sum::<usize>();
    let mut message = Vec::with_capacity(DOMAIN.len() + 4 + MAX_PREFIX + 4 + 8 + 4 + body_len);
    message.extend_from_slice(DOMAIN);
    push_u32_len(&mut message, key_prefix.unwrap_or("").as_bytes())?;
    push_u32_len(&mut message, destination.as_bytes())?;
    message.extend_from_slice(&expires_at.to_be_bytes());
    let count = u32::try_from(covered.len())
        .map_err(|_| CoreError::Signature("too many covered params".to_owned()))?;
    message.extend_from_slice(&count.to_be_bytes());
    for (name, value) in covered {
        push_u32_len(&mut message, name.as_bytes())?;
        push_u32_len(&mut message, value.as_bytes())?;
    }
    Ok(message)
}

const MAX_PREFIX: usize = crate::prefix::MAX_KEY_PREFIX_LEN;

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

fn decode_lower_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() != SIGNATURE_HEX_LEN {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        digest[index] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(digest)
}

fn malformed_sig(sig: &str) -> CoreError {
    CoreError::Signature(format!(
        "sig must be 64 lowercase hex digits, optionally after '<key_prefix>_', got '{}'",
        echo(sig)
    ))
}

/// Splits a `sig` value into its key prefix (if any) and 32-byte digest.
pub fn split(sig: &str) -> Result<(Option<&str>, [u8; 32]), CoreError> {
    let (prefix, hex) = match sig.split_once('_') {
        Some((prefix, hex)) => {
            if !is_valid_key_prefix(prefix) {
                return Err(malformed_sig(sig));
            }
            (Some(prefix), hex)
        }
        None => (None, sig),
    };
    let digest = decode_lower_hex(hex).ok_or_else(|| malformed_sig(sig))?;
    Ok((prefix, digest))
}

/// Returns the `sig` value for a click.
pub fn sign(
    secret: &[u8],
    destination: &str,
    key_prefix: Option<&str>,
    params: &[(String, String)],
    expires_at: u64,
) -> Result<String, CoreError> {
    if secret.is_empty() {
        return Err(CoreError::InvalidArgument(
            "secret must not be empty".to_owned(),
        ));
    }
    let message = signature_message(destination, key_prefix, params, expires_at)?;
    let hex = lower_hex(&hmac_sha256(secret, &message)?);
    Ok(match key_prefix {
        Some(prefix) => format!("{prefix}_{hex}"),
        None => hex,
    })
}

/// Verifies `sig` against every secret in constant time and returns the index of
/// the first secret that matches. Expiry is checked only after a match, so an
/// expired link never reveals whether a forged signature would have matched.
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    destination: &str,
    sig: &str,
    params: &[(String, String)],
    expires_at: u64,
    now: i64,
) -> Result<usize, CoreError> {
    let (prefix, digest) = split(sig)?;
    let message = signature_message(destination, prefix, params, expires_at)?;

    // Every secret is tried even after a match, so timing does not reveal which one matched.
    let mut matched: Option<usize> = None;
    for (index, secret) in secrets.iter().enumerate() {
        let secret = secret.as_ref();
        if secret.is_empty() {
            continue;
        }
        let mut mac = new_mac(secret)?;
        mac.update(&message);
        if mac.verify_slice(&digest).is_ok() && matched.is_none() {
            matched = Some(index);
        }
    }

    let Some(index) = matched else {
        return Err(CoreError::Signature(
            "sig does not match the destination, covered params and expiry".to_owned(),
        ));
    };
    if expires_at != 0 && i128::from(now) > i128::from(expires_at) {
        return Err(CoreError::Expired(format!(
            "link expired at {expires_at}, now is {now} (Unix seconds)"
        )));
    }
    Ok(index)
}

#[pyfunction]
#[pyo3(signature = (destination, *, key_prefix = None, params = Vec::new(), expires_at = None))]
pub fn click_signature_message<'py>(
    py: Python<'py>,
    destination: &str,
    key_prefix: Option<&str>,
    params: Vec<(String, String)>,
    expires_at: Option<i64>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let expiry = checked_expiry(expires_at)?;
    let message = signature_message(destination, key_prefix, &params, expiry)?;
    Ok(pyo3::types::PyBytes::new(py, &message))
}

#[pyfunction]
#[pyo3(signature = (secret, destination, *, key_prefix = None, params = Vec::new(), expires_at = None))]
pub fn sign_click(
    py: Python<'_>,
    secret: PyBackedBytes,
    destination: String,
    key_prefix: Option<String>,
    params: Vec<(String, String)>,
    expires_at: Option<i64>,
) -> PyResult<String> {
    let expiry = checked_expiry(expires_at)?;
    let size = destination.len() + params.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    let sig = gil::run_sized(py, size, || {
        sign(
            &secret,
            &destination,
            key_prefix.as_deref(),
            &params,
            expiry,
        )
    })?;
    Ok(sig)
}

#[pyfunction]
pub fn split_signature(sig: &Bound<'_, PyAny>) -> PyResult<(Option<String>, String)> {
    let sig = utf8_argument(sig, "sig", CoreError::Signature)?;
    let (prefix, digest) = split(&sig)?;
    Ok((prefix.map(str::to_owned), lower_hex(&digest)))
}

#[pyfunction]
#[pyo3(signature = (secrets, destination, sig, *, params = Vec::new(), expires_at = None, now))]
pub fn verify_click(
    py: Python<'_>,
    secrets: Vec<PyBackedBytes>,
    destination: &Bound<'_, PyAny>,
    sig: &Bound<'_, PyAny>,
    params: Vec<(String, String)>,
    expires_at: Option<i64>,
    now: i64,
) -> PyResult<usize> {
    let destination = utf8_argument(destination, "destination", CoreError::Signature)?;
    let sig = utf8_argument(sig, "sig", CoreError::Signature)?;
    let expiry = checked_expiry(expires_at)?;
    if secrets.is_empty() {
        return Err(
            CoreError::Signature("no active secret to verify sig against".to_owned()).into(),
        );
    }
    let size = (destination.len() + params.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>())
        * secrets.len();
    let index = gil::run_sized(py, size, || {
        verify(&secrets, &destination, &sig, &params, expiry, now)
    })?;
    Ok(index)
}
