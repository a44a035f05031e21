//! Kubernetes API machinery that does no IO.
//!
//! Owns the catalogue of built-in resources (group, version, kind, plural,
//! scope, short names, verbs), the [`ApiError`] type that becomes a
//! `meta/v1 Status`, label and field selectors, and name/label validation.
//! Everything here is pure data and functions; it must not touch the store,
//! the network or the clock-driven parts of the server.

pub mod catalogue;
pub mod error;
pub mod selector;
pub mod validation;

pub use catalogue::{OwnedResourceInfo, ResourceInfo, Scope};
pub use error::{ApiError, Cause};
