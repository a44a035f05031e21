//! Fuzz entry points for every parser the API server exposes.
//!
//! Owns only the entry points: one `pub fn <target>(data: &[u8])` per
//! target, each feeding the bytes to the same functions the server uses
//! (body decoding, the four patch types, label and field selectors,
//! quantities, resource paths and query parameters, and a whole request
//! through the in-process router). The cargo-fuzz project in `fuzz/` and the
//! mutation tests in `tests/` both call them. It must not contain product
//! logic: a crash found here is fixed in the crate that owns the parser.
//!
//! Every entry point treats errors as fine; only panics, aborts, hangs and
//! broken invariants (asserted where they really hold) are bugs.

mod parsers;
mod patches;
mod request;

pub use parsers::{body, field_selector, label_selector, quantity, resource_path};
pub use patches::{apply, json_patch, merge_patch, strategic_merge_patch};
pub use request::request;

/// An entry point: takes arbitrary bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and the seed
/// corpora in `fuzz/corpus/<name>/` are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("body", body),
    ("json_patch", json_patch),
    ("merge_patch", merge_patch),
    ("strategic_merge_patch", strategic_merge_patch),
    ("apply", apply),
    ("label_selector", label_selector),
    ("field_selector", field_selector),
    ("quantity", quantity),
    ("resource_path", resource_path),
    ("request", request),
];

/// Splits two-part inputs (an original object and a patch) at the first NUL
/// byte; without one, at the middle.
pub fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => data.split_at(data.len() / 2),
    }
}
