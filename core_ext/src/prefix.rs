//! Tenant key prefixes: 1 to 32 characters of `[a-z0-9]`.

pub const MAX_KEY_PREFIX_LEN: usize = 32;

/// Returns whether `prefix` is a well-formed tenant key prefix.
pub fn is_valid_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_KEY_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub const KEY_PREFIX_FORM: &str = "1 to 32 characters of [a-z0-9]";
