//! Service cluster IPs and node ports, allocated as kube-apiserver's service
//! REST storage does: on create, on type changes, and for values an update
//! leaves out (resubmitting the YAML that created a Service keeps its IP).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use kaji_core::{ApiError, Cause};
use kaji_store::Store;
use serde_json::{json, Value};

use super::fields::{
    allocates_node_ports, drop_type_dependent_fields, fill_defaults, held_ip, held_ports,
    needs_cluster_ip, needs_health_check, needs_node_ports, node_port, patch_allocated_values,
    spec, spec_mut, spec_str, svc_type,
};
use super::pool::{self, Owner, Pool, PoolError};
use super::range::ServiceRanges;
use super::{Allocation, Allocator};

/// The [`Allocator`] of Services: cluster IPs from the service CIDR, node
/// ports (and health-check node ports) from the node port range.
pub struct ServiceAllocator {
    pub(super) store: Arc<dyn Store>,
    pub(super) ranges: ServiceRanges,
    pub(super) ips: Pool,
    pub(super) ports: Pool,
}

impl ServiceAllocator {
    /// An allocator handing out `ranges`, reserving in `store`.
    pub fn new(store: Arc<dyn Store>, ranges: ServiceRanges) -> Self {
        ServiceAllocator {
            store,
            ranges,
            ips: Pool::ips(ranges.cluster_ips),
            ports: Pool::ports(ranges.node_ports),
        }
    }

    /// The ranges handed out.
    pub fn ranges(&self) -> &ServiceRanges {
        &self.ranges
    }

    /// The reservation keys `svc` holds (as stored, whoever reserved them).
    pub(super) fn keys_of(&self, svc: &Value) -> Vec<String> {
        let ip = held_ip(svc).map(|ip| self.ips.key(ip));
        let ports = held_ports(svc)
            .into_iter()
            .map(|p| self.ports.key(&p.to_string()));
        ip.into_iter().chain(ports).collect()
    }

    async fn free(&self, keys: &[String], uid: &str, why: &str) {
        for key in keys {
            if let Err(e) = pool::release(self.store.as_ref(), key, uid).await {
                // Repair frees it later.
                tracing::warn!(%key, error = %e, "could not free a {why} reservation");
            }
        }
    }

    async fn cluster_ip(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        owner: &Owner,
        allocation: &mut Allocation,
    ) -> Result<(), ApiError> {
        let name = owner.name.as_str();
        let old_ip = old.and_then(held_ip).map(str::to_string);
        let ip = spec_str(svc, "clusterIP").to_string();
        let ips: Vec<String> = spec(svc)
            .and_then(|s| s.get("clusterIPs"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if !needs_cluster_ip(svc) {
            if !ip.is_empty() || !ips.is_empty() {
                return Err(invalid(
                    name,
                    Cause::forbidden(
                        "spec.clusterIPs",
                        "may not be set for ExternalName services",
                    ),
                ));
            }
            let spec = spec_mut(svc);
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            allocation
                .superseded
                .extend(old_ip.map(|ip| self.ips.key(&ip)));
            return Ok(());
        }
        if !ip.is_empty() && ips.first().is_some_and(|first| *first != ip) {
            return Err(invalid(
                name,
                invalid_list(
                    "spec.clusterIPs",
                    &ips,
                    "first value must match `clusterIP`",
                ),
            ));
        }
        let requested = if ip.is_empty() {
            ips.first().cloned().unwrap_or_default()
        } else {
            ip
        };
        if requested != "None" {
            self.check_families(svc, &ips, name)?;
        }
        let value = if requested == "None" || old_ip.is_some() {
            // Headless, or an update keeping an IP: immutability is
            // validation's business and nothing needs reserving.
            requested
        } else if requested.is_empty() {
            if dry_run {
                self.ips.candidate()
            } else {
                match self.ips.reserve_next(self.store.as_ref(), owner).await {
                    Ok((ip, key)) => {
                        allocation.reserved.push(key);
                        ip
                    }
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "failed to allocate a serviceIP: {e}"
                        )))
                    }
                }
            }
        } else {
            self.reserve_ip(&requested, &ips, dry_run, owner, allocation)
                .await?;
            requested
        };
        let spec = spec_mut(svc);
        spec.insert("clusterIP".into(), json!(value));
        spec.insert("clusterIPs".into(), json!([value]));
        Ok(())
    }

    async fn reserve_ip(
        &self,
        ip: &str,
        ips: &[String],
        dry_run: bool,
        owner: &Owner,
        allocation: &mut Allocation,
    ) -> Result<(), ApiError> {
        let name = owner.name.as_str();
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                name,
                Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!(ip),
                    "must be a valid IP address",
                ),
            ));
        }
        let shown = if ips.is_empty() {
            vec![ip.to_string()]
        } else {
            ips.to_vec()
        };
        let failed = |why: String| {
            invalid(
                name,
                invalid_list(
                    "spec.clusterIPs",
                    &shown,
                    format!("failed to allocate IP {ip}: {why}"),
                ),
            )
        };
        if self.ips.offset_of(ip).is_none() {
            return Err(failed(format!(
                "provided IP is not in the valid range. The range of valid IPs is {}",
                self.ranges.cluster_ips
            )));
        }
        if dry_run {
            return Ok(());
        }
        match self.ips.reserve(self.store.as_ref(), ip, owner).await {
            Ok(key) => {
                allocation.reserved.push(key);
                Ok(())
            }
            Err(PoolError::Taken) => Err(failed("provided IP is already allocated".into())),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// A single-stack cluster: one family, and it must be the range's.
    fn check_families(&self, svc: &Value, ips: &[String], name: &str) -> Result<(), ApiError> {
        let family = self.ranges.cluster_ips.family();
        let policy = match spec_str(svc, "ipFamilyPolicy") {
            "" => "SingleStack",
            p => p,
        };
        if policy == "RequireDualStack" {
            return Err(invalid(
                name,
                Cause::invalid(
                    "spec.ipFamilyPolicy",
                    &json!(policy),
                    "this cluster is not configured for dual-stack services",
                ),
            ));
        }
        let families: Vec<&str> = spec(svc)
            .and_then(|s| s.get("ipFamilies"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if policy == "SingleStack" && (ips.len() > 1 || families.len() > 1) {
            let what = if ips.len() > 1 {
                "cluster IPs"
            } else {
                "IP families"
            };
            return Err(invalid(
                name,
                Cause::invalid(
                    "spec.ipFamilyPolicy",
                    &json!(policy),
                    format!(
                        "must be 'RequireDualStack' or 'PreferDualStack' when multiple {what} are specified"
                    ),
                ),
            ));
        }
        if ips.len() > 1 {
            let other = if family == "IPv4" { "IPv6" } else { "IPv4" };
            return Err(invalid(
                name,
                invalid_list(
                    "spec.clusterIPs[1]",
                    ips,
                    format!("{other} is not configured on this cluster"),
                ),
            ));
        }
        if let Some(i) = families.iter().position(|f| *f != family) {
            return Err(invalid(
                name,
                Cause::invalid(
                    format!("spec.ipFamilies[{i}]"),
                    &json!(families[i]),
                    "not configured on this cluster",
                ),
            ));
        }
        Ok(())
    }

    async fn node_ports(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        owner: &Owner,
        allocation: &mut Allocation,
    ) -> Result<(), ApiError> {
        let held = old.map(held_ports).unwrap_or_default();
        let mut claims = Claims {
            alloc: self,
            owner,
            dry_run,
            held: &held,
            mine: HashMap::new(),
            reserved: &mut allocation.reserved,
        };
        let ty = svc_type(svc).to_string();
        let mut ports: Vec<Value> = spec(svc)
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !needs_node_ports(svc) {
            if let Some(i) = ports.iter().position(|p| node_port(p) != 0) {
                return Err(invalid(
                    &owner.name,
                    Cause::forbidden(
                        format!("spec.ports[{i}].nodePort"),
                        format!("may not be used when `type` is '{ty}'"),
                    ),
                ));
            }
        } else {
            let allocate_new = allocates_node_ports(svc);
            let numbers: Vec<i64> = ports
                .iter()
                .map(|p| p.get("port").and_then(Value::as_i64).unwrap_or(0))
                .collect();
            for i in 0..ports.len() {
                let field = format!("spec.ports[{i}].nodePort");
                let mut np = node_port(&ports[i]);
                if np == 0 {
                    // Entries of one port number (TCP and UDP 53, say) share a node port.
                    let shared = claims
                        .mine
                        .iter()
                        .find(|(_, &n)| n == numbers[i])
                        .map(|(&p, _)| p)
                        .or_else(|| {
                            (0..ports.len())
                                .filter(|&j| numbers[j] == numbers[i])
                                .map(|j| node_port(&ports[j]))
                                .find(|&n| n != 0)
                        });
                    np = match shared {
                        Some(p) => p,
                        None if allocate_new => claims.next(numbers[i]).await?,
                        None => continue,
                    };
                    ports[i]["nodePort"] = json!(np);
                }
                claims.claim(np, numbers[i], &field).await?;
            }
            if !ports.is_empty() {
                spec_mut(svc).insert("ports".into(), Value::Array(ports));
            }
        }
        let hc = spec(svc)
            .and_then(|s| s.get("healthCheckNodePort"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if needs_health_check(svc) {
            // -1: no service port number, so never shared with a port entry.
            if hc == 0 {
                let port = claims.next(-1).await?;
                spec_mut(svc).insert("healthCheckNodePort".into(), json!(port));
            } else {
                claims.claim(hc, -1, "spec.healthCheckNodePort").await?;
            }
        } else if hc != 0 {
            return Err(invalid(
                &owner.name,
                Cause::forbidden(
                    "spec.healthCheckNodePort",
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                ),
            ));
        }
        let mine = claims.mine;
        allocation.superseded.extend(
            held.iter()
                .filter(|p| !mine.contains_key(p))
                .map(|p| self.ports.key(&p.to_string())),
        );
        Ok(())
    }
}

/// The node ports one allocation has claimed so far.
struct Claims<'a> {
    alloc: &'a ServiceAllocator,
    owner: &'a Owner,
    dry_run: bool,
    /// What the old object holds: already ours.
    held: &'a BTreeSet<i64>,
    /// Node port -> the service port number using it.
    mine: HashMap<i64, i64>,
    reserved: &'a mut Vec<String>,
}

impl Claims<'_> {
    /// A free node port for service port `number`.
    async fn next(&mut self, number: i64) -> Result<i64, ApiError> {
        let pool = &self.alloc.ports;
        let port = if self.dry_run {
            pool.candidate()
        } else {
            let (port, key) = pool
                .reserve_next(self.alloc.store.as_ref(), self.owner)
                .await
                .map_err(|e| ApiError::internal(format!("failed to allocate a nodePort: {e}")))?;
            self.reserved.push(key);
            port
        };
        let port: i64 = port.parse().expect("pools hand out numbers");
        self.mine.insert(port, number);
        Ok(port)
    }

    /// Claims the requested node port `np` for service port `number`.
    async fn claim(&mut self, np: i64, number: i64, field: &str) -> Result<(), ApiError> {
        let taken =
            |detail: String| invalid(&self.owner.name, Cause::invalid(field, &json!(np), detail));
        if let Some(&user) = self.mine.get(&np) {
            return if user == number && number >= 0 {
                Ok(())
            } else {
                Err(taken("provided port is already allocated".into()))
            };
        }
        if self.held.contains(&np) {
            self.mine.insert(np, number);
            return Ok(());
        }
        let pool = &self.alloc.ports;
        if pool.offset_of(&np.to_string()).is_none() {
            return Err(taken(format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                self.alloc.ranges.node_ports
            )));
        }
        if !self.dry_run {
            match pool
                .reserve(self.alloc.store.as_ref(), &np.to_string(), self.owner)
                .await
            {
                Ok(key) => self.reserved.push(key),
                Err(PoolError::Taken) => {
                    return Err(taken("provided port is already allocated".into()))
                }
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        self.mine.insert(np, number);
        Ok(())
    }
}

#[async_trait]
impl Allocator for ServiceAllocator {
    async fn allocate(
        &self,
        new: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Allocation, ApiError> {
        let owner = Owner::of_service(new);
        let mut allocation = Allocation {
            owner: owner.uid.clone(),
            ..Allocation::default()
        };
        if let Some(old) = old {
            patch_allocated_values(new, old);
            drop_type_dependent_fields(new, old);
        }
        fill_defaults(new, self.ranges.cluster_ips.family());
        let result = async {
            self.cluster_ip(new, old, dry_run, &owner, &mut allocation)
                .await?;
            self.node_ports(new, old, dry_run, &owner, &mut allocation)
                .await
        }
        .await;
        match result {
            Ok(()) => Ok(allocation),
            Err(e) => {
                self.revert(allocation).await;
                Err(e)
            }
        }
    }

    async fn commit(&self, allocation: Allocation) {
        self.free(&allocation.superseded, &allocation.owner, "superseded")
            .await;
    }

    async fn revert(&self, allocation: Allocation) {
        self.free(&allocation.reserved, &allocation.owner, "reverted")
            .await;
    }

    async fn release(&self, obj: &Value) {
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.free(&self.keys_of(obj), uid, "deleted service's")
            .await;
    }
}

fn invalid(name: &str, cause: Cause) -> ApiError {
    ApiError::invalid("", "Service", name, vec![cause])
}

/// An invalid string list, shown as Go's `%#v` shows it: `[]string{"10.0.0.1"}`.
fn invalid_list(field: &str, list: &[String], detail: impl AsRef<str>) -> Cause {
    let items: Vec<String> = list.iter().map(|i| format!("{i:?}")).collect();
    Cause {
        reason: "FieldValueInvalid",
        message: format!(
            "Invalid value: []string{{{}}}: {}",
            items.join(", "),
            detail.as_ref()
        ),
        field: field.into(),
    }
}
