//! Values the API server hands out on an object's behalf and must keep
//! unique across the cluster: Service cluster IPs and node ports.
//!
//! The generic registry knows only the [`Allocator`] hook a strategy may
//! expose: it calls [`Allocator::allocate`] before validating a create or an
//! update, then [`Allocator::commit`] once the write lands or
//! [`Allocator::revert`] if it does not, and [`Allocator::release`] once an
//! object is gone. [`ServiceAllocator`] is the Service implementation: one
//! store key per reserved value (see `pool`), created if absent, so several
//! API servers on one store never hand out a value twice; and
//! [`ServiceAllocator::repair`], which frees what crashed or cancelled
//! writes leaked and re-reserves what services hold without a key.
//! It must not know HTTP, and it reads and writes only its own keys.

use async_trait::async_trait;
use kaji_core::ApiError;
use serde_json::Value;

mod fields;
mod pool;
mod range;
mod repair;
mod service;

pub use pool::{Owner, NODE_PORTS_PREFIX, SERVICE_IPS_PREFIX};
pub use range::{PortRange, RangeError, ServiceCidr, ServiceRanges};
pub use repair::{RepairError, RepairReport, DEFAULT_REPAIR_GRACE, DEFAULT_REPAIR_INTERVAL};
pub use service::ServiceAllocator;

/// What one write reserved, settled once the write's fate is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// The uid of the object the reservations belong to.
    pub owner: String,
    /// Keys reserved for the new object: freed if the write fails.
    pub reserved: Vec<String>,
    /// Keys the old object held and the new one no longer needs: freed once
    /// the write lands (and kept if it fails).
    pub superseded: Vec<String>,
}

/// Reserves and frees values an object holds, around the registry's writes.
///
/// # Guarantees
/// The registry calls `commit` or `revert` exactly once for every
/// allocation it received, unless the request itself is dropped mid-way;
/// what that leaks is for the allocator's own repair to find.
#[async_trait]
pub trait Allocator: Send + Sync {
    /// Fills in and reserves what `new` needs: a create when `old` is
    /// `None`, else an update from `old`. A dry run fills in values but
    /// reserves nothing.
    ///
    /// # Errors
    /// 422 for a value that is malformed, out of range or taken; 500 when
    /// the range is full or the store fails. Nothing stays reserved then.
    async fn allocate(
        &self,
        new: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Allocation, ApiError>;

    /// The write landed: frees what it superseded.
    async fn commit(&self, allocation: Allocation);

    /// The write failed: frees what [`Allocator::allocate`] reserved.
    async fn revert(&self, allocation: Allocation);

    /// The object is gone from the store: frees everything it held.
    async fn release(&self, obj: &Value);
}
