//! CustomResourceDefinitions (apiextensions.k8s.io/v1).
//!
//! Owns what a CRD means: whether a CRD is acceptable ([`crd`]), the
//! structural schema of each version and what it does to an object —
//! validation, defaulting and pruning ([`schema`]) and `x-kubernetes-validations`
//! CEL rules ([`rules`]) — and the [`strategy`] that lets the generic registry
//! serve a custom resource like a built-in. It must not know HTTP or touch the
//! store: the API server installs the registries this crate describes.

pub mod crd;
pub mod rules;
pub mod schema;
pub mod strategy;
