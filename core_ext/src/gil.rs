//! The one rule for releasing the GIL.
//!
//! Inputs are first copied into Rust-owned memory or borrowed from immutable
//! `bytes`/`str` objects, which no other thread can change. The GIL is then
//! released for crypto, parsing or serialising over at least `RELEASE_MIN_BYTES`.
//! Below that the work takes a few microseconds, less than handing the GIL to
//! another thread and waiting to get it back, so it runs with the GIL held.

use pyo3::marker::Ungil;
use pyo3::prelude::*;

/// Smallest input, in bytes, for which the GIL is released.
pub const RELEASE_MIN_BYTES: usize = 16 * 1024;

/// Runs `work` without the GIL when `input_len` reaches `RELEASE_MIN_BYTES`.
pub fn run_sized<T, F>(py: Python<'_>, input_len: usize, work: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    if input_len >= RELEASE_MIN_BYTES {
        py.allow_threads(work)
    } else {
        work()
    }
}
