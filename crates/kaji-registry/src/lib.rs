//! The generic registry: every API verb (create, get, list, watch, update,
//! patch, delete, deletecollection, and the status and scale subresources)
//! implemented once over the [`kaji_store::Store`] seam, with a small
//! [`Strategy`] per resource for defaulting, validation and selectable fields.
//!
//! It owns object metadata semantics (uid, generation, resourceVersion from
//! the store revision, finalizers and deletionTimestamp) and maps store errors
//! to API errors. It must not know HTTP: no headers, paths or encodings.
//! Values that must be unique across the cluster (Service cluster IPs and
//! node ports) are reserved through a strategy's [`Allocator`] ([`allocate`]).

pub mod admission;
pub mod allocate;
mod defaults;
mod list;
mod registry;
mod strategy;
pub mod typed;
mod validate;
mod watch;

pub use admission::{Admission, Attributes, Operation};
pub use allocate::{Allocation, Allocator, ServiceAllocator, ServiceRanges};
pub use list::{ListOptions, WatchOptions};
pub use registry::{DeleteOptions, FieldValidation, Outcome, Part, Registry, WriteOptions};
pub use strategy::{common_field, BuiltinStrategy, ScalePaths, Strategy};
pub use watch::{WatchEventStream, WatchItem, WatchKind};
