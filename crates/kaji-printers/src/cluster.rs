//! Printers for EndpointSlice and Lease, and the two defaults: the
//! apiserver's default table convertor (`Name`, `Created At`) for kinds of
//! Kubernetes' own groups without a printer, such as
//! CustomResourceDefinition, and the custom-resource default (`Name`, `Age`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::duration::{age, created_at};
use crate::fields::{arr_at, name, str_at};
use crate::{col, Printer, AGE, CREATION_DOC, NAME};

pub(crate) const ENDPOINT_SLICE: Printer = Printer::new(
    &[
        NAME,
        col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation."),
        col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
        col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints."),
        AGE,
    ],
    endpoint_slice_cells,
);

const MAXIMUM: usize = 3;

/// `listWithMoreString`: the first entries, `+ N more...` past three, and
/// `<unset>` for none.
fn list_with_more(list: &[String], count: usize) -> String {
    let joined = list.join(",");
    if count > MAXIMUM {
        format!("{joined} + {} more...", count - MAXIMUM)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

fn endpoint_slice_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports_all = arr_at(obj, "/ports");
    let ports: Vec<String> = ports_all
        .iter()
        .take(MAXIMUM)
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(port) => port.to_string(),
            None => p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        })
        .collect();
    let addresses: Vec<&Value> = arr_at(obj, "/endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "/addresses"))
        .collect();
    let endpoints: Vec<String> = addresses
        .iter()
        .take(MAXIMUM)
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect();
    vec![
        name(obj),
        Value::from(str_at(obj, "/addressType")),
        Value::from(list_with_more(&ports, ports_all.len())),
        Value::from(list_with_more(&endpoints, addresses.len())),
        age(obj, now),
    ]
}

pub(crate) const LEASE: Printer = Printer::new(
    &[
        NAME,
        col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
        AGE,
    ],
    lease_cells,
);

fn lease_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/holderIdentity")),
        age(obj, now),
    ]
}

/// The apiserver's default table convertor, used for CustomResourceDefinition
/// and every other kind of a Kubernetes group that has no printer.
pub(crate) const DEFAULT_CONVERTOR: Printer = Printer::new(
    &[NAME, col("Created At", "date", CREATION_DOC)],
    default_convertor_cells,
);

fn default_convertor_cells(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), created_at(obj)]
}

/// What a CustomResourceDefinition without `additionalPrinterColumns` serves:
/// the name and a `date` column over `.metadata.creationTimestamp`, which the
/// apiserver renders as an age.
pub(crate) const CUSTOM_RESOURCE: Printer = Printer::new(
    &[
        NAME,
        col(
            "Age",
            "date",
            "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp",
        ),
    ],
    custom_resource_cells,
);

fn custom_resource_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

/// Kubernetes' own API groups, served by the kube-apiserver rather than by
/// CRDs. Kinds of these groups without a printer get the default convertor.
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Whether `group` is one of Kubernetes' own API groups.
pub(crate) fn is_built_in_group(group: &str) -> bool {
    BUILT_IN_GROUPS.contains(&group)
}

#[cfg(test)]
mod tests {
    use crate::{cells, columns};
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn names(api_version: &str, kind: &str) -> Vec<(&'static str, &'static str)> {
        columns(api_version, kind)
            .iter()
            .map(|c| (c.name, c.type_))
            .collect()
    }

    #[test]
    fn endpoint_slice_should_print_ports_and_addresses_with_overflow() {
        assert_eq!(
            names("discovery.k8s.io/v1", "EndpointSlice"),
            [
                ("Name", "string"),
                ("AddressType", "string"),
                ("Ports", "string"),
                ("Endpoints", "string"),
                ("Age", "string")
            ]
        );
        let slice = json!({
            "metadata": {"name": "web-abc12", "creationTimestamp": "2024-05-01T11:59:58Z"},
            "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 9000}],
            "endpoints": [
                {"addresses": ["10.0.0.1", "10.0.0.2"]},
                {"addresses": ["10.0.0.3"]},
                {"addresses": ["10.0.0.4"]}
            ]
        });
        assert_eq!(
            cells("discovery.k8s.io/v1", "EndpointSlice", &slice, now()),
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("80,metrics,* + 1 more..."),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                json!("2s")
            ]
        );
    }

    #[test]
    fn empty_endpoint_slice_should_print_unset() {
        let row = cells(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            &json!({"addressType": "IPv6"}),
            now(),
        );
        assert_eq!(
            row[1..4],
            [json!("IPv6"), json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn lease_should_print_its_holder() {
        assert_eq!(
            names("coordination.k8s.io/v1", "Lease"),
            [("Name", "string"), ("Holder", "string"), ("Age", "string")]
        );
        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "kaji-0_1234"}});
        assert_eq!(
            cells("coordination.k8s.io/v1", "Lease", &lease, now())[..2],
            [json!("kube-scheduler"), json!("kaji-0_1234")]
        );
        assert_eq!(
            cells("coordination.k8s.io/v1", "Lease", &json!({}), now())[1],
            json!("")
        );
    }

    #[test]
    fn custom_resource_definition_should_print_name_and_created_at() {
        assert_eq!(
            names("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            [("Name", "string"), ("Created At", "date")]
        );
        let crd = json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-04-30T08:15:00Z"}});
        assert_eq!(
            cells(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                &crd,
                now()
            ),
            [json!("widgets.example.com"), json!("2024-04-30T08:15:00Z")]
        );
    }

    #[test]
    fn built_in_kinds_without_a_printer_should_get_the_default_convertor() {
        assert_eq!(
            names("rbac.authorization.k8s.io/v1", "ClusterRole"),
            [("Name", "string"), ("Created At", "date")]
        );
    }

    #[test]
    fn custom_resources_should_print_name_and_age() {
        assert_eq!(
            names("example.com/v1", "Widget"),
            [("Name", "string"), ("Age", "date")]
        );
        assert_eq!(
            names("gateway.networking.k8s.io/v1", "Gateway"),
            [("Name", "string"), ("Age", "date")]
        );
        let w = json!({"metadata": {"name": "w1", "creationTimestamp": "2024-05-01T11:59:00Z"}});
        assert_eq!(
            cells("example.com/v1", "Widget", &w, now()),
            [json!("w1"), json!("60s")]
        );
        assert_eq!(
            cells("example.com/v1", "Widget", &json!({}), now()),
            [json!(""), json!("<unknown>")]
        );
    }
}
