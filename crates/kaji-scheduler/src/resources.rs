//! Resource quantities as the scheduler counts them: CPU in millicores,
//! memory and ephemeral storage in bytes, the pod count, and extended
//! resources by name; and a pod's effective request, as Kubernetes'
//! `resourcehelper.PodRequests` computes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The CPU a container without a CPU request counts as when scoring
/// (`schedutil.DefaultMilliCPURequest`): 0.1 core.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts as when scoring
/// (`schedutil.DefaultMemoryRequest`): 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A list of resource amounts: what a node offers or what pods request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// How many pods fit (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources, hugepages and attachable volumes, sorted by name.
    pub scalars: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list (`status.allocatable`, `resources.requests`).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    /// Sets one named amount from a quantity.
    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = milli_value(q),
            "memory" => self.memory = value(q),
            "ephemeral-storage" => self.ephemeral_storage = value(q),
            "pods" => self.pods = value(q),
            _ if is_scalar(name) => self.set_scalar(name, value(q)),
            _ => {}
        }
    }

    /// The amount of an extended resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalars[i].1)
    }

    fn set_scalar(&mut self, name: &str, amount: i64) {
        match self.scalars.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalars[i].1 = amount,
            Err(i) => self.scalars.insert(i, (name.to_string(), amount)),
        }
    }

    /// Adds `other` to `self`, amount by amount.
    pub fn add(&mut self, other: &Resources) {
        self.combine(other, |a, b| a.saturating_add(b));
    }

    /// Subtracts `other` from `self`, amount by amount.
    pub fn sub(&mut self, other: &Resources) {
        self.combine(other, |a, b| a.saturating_sub(b));
    }

    /// Raises each amount of `self` to `other`'s where that is larger.
    pub fn max_with(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        self.pods = f(self.pods, other.pods);
        for (name, amount) in &other.scalars {
            let combined = f(self.scalar(name), *amount);
            self.set_scalar(name, combined);
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalars.iter().all(|(_, a)| *a == 0)
    }
}

/// Whether a resource name is counted as a scalar resource: extended
/// resources (`example.com/gpu`), prefixed native ones, hugepages and
/// attachable volumes (`schedutil.IsScalarResourceName`).
fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// What a pod asks of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The effective request the fit check uses.
    pub requests: Resources,
    /// CPU for scoring: containers without a CPU request count
    /// [`DEFAULT_MILLI_CPU_REQUEST`].
    pub non_zero_milli_cpu: i64,
    /// Memory for scoring: containers without a memory request count
    /// [`DEFAULT_MEMORY_REQUEST`].
    pub non_zero_memory: i64,
}

/// The pod's effective request: the larger of the long-running containers
/// (app containers plus restartable init containers, i.e. sidecars) and the
/// peak of any init container (plus the sidecars started before it), plus
/// the pod overhead.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let actual = effective(spec, false);
    let non_zero = effective(spec, true);
    PodRequests {
        requests: actual,
        non_zero_milli_cpu: non_zero.milli_cpu,
        non_zero_memory: non_zero.memory,
    }
}

fn effective(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut request = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            // Sidecars run for the pod's whole life.
            total.add(&request);
            sidecars.add(&request);
            request = sidecars.clone();
        } else {
            request.add(&sidecars);
        }
        init_peak.max_with(&request);
    }
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

/// One container's requests; a resource with a limit but no request is
/// requested at its limit (the API's defaulting). With `non_zero`, missing
/// CPU and memory requests count at the scoring defaults.
fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let resources = c.resources.as_ref();
    let mut list: BTreeMap<String, Quantity> =
        resources.and_then(|r| r.limits.clone()).unwrap_or_default();
    if let Some(requests) = resources.and_then(|r| r.requests.as_ref()) {
        list.extend(requests.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut r = Resources::from_list(&list);
    if non_zero {
        if !list.contains_key("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !list.contains_key("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// A quantity in thousandths, rounded up (`Quantity.MilliValue`); 0 if it
/// does not parse.
pub fn milli_value(q: &Quantity) -> i64 {
    parse_scaled(&q.0, 3).unwrap_or(0)
}

/// A quantity in whole units, rounded up (`Quantity.Value`); 0 if it does
/// not parse.
pub fn value(q: &Quantity) -> i64 {
    parse_scaled(&q.0, 0).unwrap_or(0)
}

/// Parses a Kubernetes quantity (`<sign><digits>[.<digits>]<suffix>`, the
/// suffix binary `Ki`..`Ei`, decimal `n`..`E`, or an exponent `e<n>`) and
/// returns it times `10^scale`, rounded up and saturated to `i64`.
fn parse_scaled(s: &str, scale: i32) -> Option<i64> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let (binary_power, decimal_exponent): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse().ok()?),
        _ => return None,
    };
    // Digits beyond what an i128 holds cannot change a saturated i64.
    let digits: String = whole.chars().chain(fraction.chars()).take(36).collect();
    let dropped = i32::try_from((whole.len() + fraction.len()).saturating_sub(36)).ok()?;
    let mut mantissa: i128 = digits.parse().ok()?;
    let exponent = decimal_exponent
        .saturating_add(scale)
        .saturating_sub(i32::try_from(fraction.len()).unwrap_or(i32::MAX))
        .saturating_add(dropped);
    mantissa = mantissa.saturating_mul(1024i128.pow(binary_power));
    if exponent > 0 {
        let factor = 10i128
            .checked_pow(exponent.unsigned_abs())
            .unwrap_or(i128::MAX);
        mantissa = mantissa.saturating_mul(factor);
    } else if exponent < 0 {
        let divisor = 10i128
            .checked_pow(exponent.unsigned_abs())
            .unwrap_or(i128::MAX);
        let rounded_up = mantissa % divisor != 0;
        mantissa = mantissa / divisor + i128::from(rounded_up && !negative);
    }
    let signed = if negative { -mantissa } else { mantissa };
    Some(i64::try_from(signed).unwrap_or(if negative { i64::MIN } else { i64::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn quantities_parse_in_every_suffix() {
        assert_eq!(milli_value(&q("1")), 1000);
        assert_eq!(milli_value(&q("100m")), 100);
        assert_eq!(milli_value(&q("0.5")), 500);
        assert_eq!(milli_value(&q("1.5k")), 1_500_000);
        assert_eq!(value(&q("1Ki")), 1024);
        assert_eq!(value(&q("2Gi")), 2 * 1024 * 1024 * 1024);
        assert_eq!(value(&q("1.5Mi")), 1_572_864);
        assert_eq!(value(&q("1e3")), 1000);
        assert_eq!(value(&q("1E3")), 1000);
        assert_eq!(value(&q("128974848")), 128_974_848);
        assert_eq!(value(&q("129M")), 129_000_000);
        assert_eq!(value(&q("junk")), 0);
    }

    #[test]
    fn quantities_round_up_like_kubernetes() {
        assert_eq!(milli_value(&q("1u")), 1);
        assert_eq!(value(&q("100m")), 1);
        assert_eq!(value(&q("1n")), 1);
        assert_eq!(value(&q("0")), 0);
        assert_eq!(value(&q("-100m")), 0);
    }

    #[test]
    fn huge_quantities_saturate() {
        assert_eq!(value(&q("99999999999999999999999Ei")), i64::MAX);
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), q(v)))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn pod_requests_take_the_larger_of_containers_and_init_containers_plus_overhead() {
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "200m"), ("memory", "1Gi")], &[]),
                container(&[("cpu", "300m")], &[]),
            ],
            init_containers: Some(vec![container(&[("cpu", "1"), ("memory", "512Mi")], &[])]),
            overhead: Some([("cpu".to_string(), q("10m"))].into()),
            ..PodSpec::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.requests.milli_cpu, 1010);
        assert_eq!(r.requests.memory, 1 << 30);
        // The second container has no memory request: 200 MiB when scoring.
        assert_eq!(r.non_zero_memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn sidecars_add_to_the_long_running_total_and_to_later_init_containers() {
        let mut sidecar = container(&[("cpu", "100m")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "200m")], &[])],
            init_containers: Some(vec![sidecar, container(&[("cpu", "250m")], &[])]),
            ..PodSpec::default()
        };
        // max(200 + 100, 250 + 100)
        assert_eq!(pod_requests(&spec).requests.milli_cpu, 350);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_extended_resources_count() {
        let spec = PodSpec {
            containers: vec![container(
                &[("memory", "1Mi")],
                &[("cpu", "2"), ("example.com/gpu", "1")],
            )],
            ..PodSpec::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.requests.milli_cpu, 2000);
        assert_eq!(r.requests.scalar("example.com/gpu"), 1);
        assert_eq!(r.non_zero_milli_cpu, 2000);
    }

    #[test]
    fn an_explicit_zero_request_is_not_defaulted_for_scoring() {
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "0"), ("memory", "0")], &[])],
            ..PodSpec::default()
        };
        let r = pod_requests(&spec);
        assert_eq!((r.non_zero_milli_cpu, r.non_zero_memory), (0, 0));
        assert!(r.requests.is_zero());
        let empty = PodSpec {
            containers: vec![Container::default()],
            ..PodSpec::default()
        };
        let r = pod_requests(&empty);
        assert_eq!(
            (r.non_zero_milli_cpu, r.non_zero_memory),
            (DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
        );
    }
}
