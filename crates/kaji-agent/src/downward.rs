//! The downward API: a pod's own fields (`fieldRef`) and its containers'
//! resources (`resourceFieldRef`) as strings, for environment variables and
//! `downwardAPI` volume files, resolved as kubelet resolves them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a downward API reference cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardError {
    /// The field path is not one the downward API offers.
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    /// The resource name is not one the downward API offers.
    #[error("unsupported container resource: {0}")]
    UnsupportedResource(String),
    /// A quantity (a divisor or a request) does not parse.
    #[error("invalid quantity {0:?}")]
    InvalidQuantity(String),
    /// `resourceFieldRef` names a container the pod lacks.
    #[error("container {0} not found in pod")]
    NoSuchContainer(String),
}

/// What the downward API can see of a pod beyond its object: addresses the
/// agent assigned and the node's allocatable resources (the default limits).
#[derive(Debug, Clone, Copy)]
pub struct PodContext<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The node's addresses (`status.hostIPs`).
    pub host_ips: &'a [String],
    /// The pod's addresses (`status.podIPs`), empty before its sandbox runs.
    pub pod_ips: &'a [String],
    /// The node's `status.allocatable`.
    pub allocatable: &'a BTreeMap<String, Quantity>,
}

impl PodContext<'_> {
    /// The value of a `fieldRef`. `metadata.labels` and
    /// `metadata.annotations` (whole maps) are only valid in volumes.
    ///
    /// # Errors
    /// [`DownwardError::UnsupportedField`].
    pub fn field(&self, selector: &ObjectFieldSelector) -> Result<String, DownwardError> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.as_ref();
        let path = selector.field_path.as_str();
        let map_entry = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
            let key = path
                .strip_prefix(prefix)?
                .strip_prefix("['")?
                .strip_suffix("']")?;
            Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
        };
        if let Some(v) = map_entry("metadata.labels", meta.labels.as_ref()) {
            return Ok(v);
        }
        if let Some(v) = map_entry("metadata.annotations", meta.annotations.as_ref()) {
            return Ok(v);
        }
        let value = match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "metadata.labels" => format_map(meta.labels.as_ref()),
            "metadata.annotations" => format_map(meta.annotations.as_ref()),
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            "spec.serviceAccountName" => spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            "status.hostIP" => self.host_ips.first().cloned().unwrap_or_default(),
            "status.hostIPs" => self.host_ips.join(","),
            "status.podIP" => self.pod_ips.first().cloned().unwrap_or_default(),
            "status.podIPs" => self.pod_ips.join(","),
            other => return Err(DownwardError::UnsupportedField(other.to_string())),
        };
        Ok(value)
    }

    /// The value of a `resourceFieldRef` for `default_container` (the
    /// container being started, when the selector names none): the request
    /// or limit divided by the divisor, rounded up. A limit the container
    /// does not set is the node's allocatable amount, as kubelet's.
    ///
    /// # Errors
    /// Unknown resource or container, or a quantity that does not parse.
    pub fn resource(
        &self,
        selector: &ResourceFieldSelector,
        default_container: &str,
    ) -> Result<String, DownwardError> {
        let name = selector
            .container_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(default_container);
        let spec = self.pod.spec.as_ref();
        let container = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| DownwardError::NoSuchContainer(name.to_string()))?;
        let (kind, resource) = selector
            .resource
            .split_once('.')
            .ok_or_else(|| DownwardError::UnsupportedResource(selector.resource.clone()))?;
        if !matches!(resource, "cpu" | "memory" | "ephemeral-storage")
            && !resource.starts_with("hugepages-")
        {
            return Err(DownwardError::UnsupportedResource(
                selector.resource.clone(),
            ));
        }
        let resources = container.resources.as_ref();
        let limits = resources.and_then(|r| r.limits.as_ref());
        let requests = resources.and_then(|r| r.requests.as_ref());
        let quantity = match kind {
            "limits" => limits
                .and_then(|l| l.get(resource))
                .or_else(|| self.allocatable.get(resource)),
            "requests" => requests
                .and_then(|r| r.get(resource))
                .or_else(|| limits.and_then(|l| l.get(resource))),
            _ => {
                return Err(DownwardError::UnsupportedResource(
                    selector.resource.clone(),
                ))
            }
        };
        let value = match quantity {
            Some(q) => parse_quantity(&q.0)?,
            None => 0,
        };
        let divisor = match selector.divisor.as_ref().map(|d| d.0.as_str()) {
            None | Some("") | Some("0") => NANO,
            Some(d) => parse_quantity(d)?,
        };
        if divisor <= 0 {
            return Err(DownwardError::InvalidQuantity(format!("{divisor}")));
        }
        // Ceiling division on non-negative values.
        let result = (value.max(0) + divisor - 1) / divisor;
        Ok(result.to_string())
    }
}

/// One unit in the fixed-point representation [`parse_quantity`] returns.
pub const NANO: i128 = 1_000_000_000;

/// Parses a Kubernetes quantity (`100m`, `1.5Gi`, `2e3`, `128974848`) into
/// billionths of its unit, rounding up anything finer.
///
/// # Errors
/// [`DownwardError::InvalidQuantity`].
pub fn parse_quantity(s: &str) -> Result<i128, DownwardError> {
    let invalid = || DownwardError::InvalidQuantity(s.to_string());
    let t = s.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let number_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(number_end);
    if number.is_empty() || number == "." {
        return Err(invalid());
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{frac}");
    let mantissa: i128 = digits.parse().map_err(|_| invalid())?;
    // value = mantissa * 10^(exp10 - frac.len()) * 2^exp2
    let frac_len = i32::try_from(frac.len()).map_err(|_| invalid())?;
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().map_err(|_| invalid())?, 0),
        _ => return Err(invalid()),
    };
    let scale = exp10 - frac_len + 9;
    let mut value = mantissa.checked_mul(1i128 << exp2).ok_or_else(invalid)?;
    if scale >= 0 {
        let factor = 10i128
            .checked_pow(scale.unsigned_abs())
            .ok_or_else(invalid)?;
        value = value.checked_mul(factor).ok_or_else(invalid)?;
    } else {
        let factor = 10i128
            .checked_pow(scale.unsigned_abs())
            .ok_or_else(invalid)?;
        value = (value + factor - 1) / factor;
    }
    Ok(if negative { -value } else { value })
}

/// A map as the downward API writes it to a file: sorted `key="value"`
/// lines, values quoted as Go's `%q`.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn quantities_parse_in_every_notation() {
        assert_eq!(parse_quantity("1").unwrap(), NANO);
        assert_eq!(parse_quantity("100m").unwrap(), NANO / 10);
        assert_eq!(parse_quantity("0.5").unwrap(), NANO / 2);
        assert_eq!(parse_quantity("1Ki").unwrap(), 1024 * NANO);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 1_610_612_736 * NANO);
        assert_eq!(parse_quantity("2e3").unwrap(), 2000 * NANO);
        assert_eq!(parse_quantity("1k").unwrap(), 1000 * NANO);
        assert_eq!(parse_quantity("1n").unwrap(), 1);
        assert!(parse_quantity("1Q").is_err());
        assert!(parse_quantity("").is_err());
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u-1".into()),
                labels: Some([("b".into(), "2".into()), ("a".into(), "x\"y".into())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some([("memory".into(), Quantity("64Mi".into()))].into()),
                        requests: Some([("cpu".into(), Quantity("250m".into()))].into()),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn field(ctx: &PodContext, path: &str) -> Result<String, DownwardError> {
        ctx.field(&ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        })
    }

    #[test]
    fn field_refs_read_the_pod_and_its_addresses() {
        let pod = pod();
        let alloc = BTreeMap::new();
        let hosts = ["10.0.0.1".to_string()];
        let ips = ["10.1.0.5".to_string(), "fd00::5".to_string()];
        let ctx = PodContext {
            pod: &pod,
            host_ips: &hosts,
            pod_ips: &ips,
            allocatable: &alloc,
        };
        assert_eq!(field(&ctx, "metadata.name").unwrap(), "web");
        assert_eq!(field(&ctx, "metadata.uid").unwrap(), "u-1");
        assert_eq!(field(&ctx, "metadata.labels['b']").unwrap(), "2");
        assert_eq!(field(&ctx, "metadata.labels['zz']").unwrap(), "");
        assert_eq!(
            field(&ctx, "metadata.labels").unwrap(),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(field(&ctx, "spec.nodeName").unwrap(), "node-a");
        assert_eq!(field(&ctx, "status.hostIP").unwrap(), "10.0.0.1");
        assert_eq!(field(&ctx, "status.podIPs").unwrap(), "10.1.0.5,fd00::5");
        assert!(field(&ctx, "spec.bogus").is_err());
    }

    #[test]
    fn resource_refs_divide_rounding_up_and_default_limits_to_allocatable() {
        let pod = pod();
        let alloc = BTreeMap::from([("cpu".to_string(), Quantity("4".into()))]);
        let ctx = PodContext {
            pod: &pod,
            host_ips: &[],
            pod_ips: &[],
            allocatable: &alloc,
        };
        let get = |resource: &str, divisor: Option<&str>| {
            ctx.resource(
                &ResourceFieldSelector {
                    resource: resource.into(),
                    divisor: divisor.map(|d| Quantity(d.into())),
                    container_name: None,
                },
                "app",
            )
            .unwrap()
        };
        assert_eq!(get("requests.cpu", None), "1");
        assert_eq!(get("requests.cpu", Some("1m")), "250");
        assert_eq!(get("limits.cpu", None), "4");
        assert_eq!(get("limits.memory", None), "67108864");
        assert_eq!(get("limits.memory", Some("1Mi")), "64");
    }
}
