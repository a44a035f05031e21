//! Server-side `meta.k8s.io/v1 Table` output, so `kubectl get` prints exactly
//! the columns Kubernetes prints.
//!
//! Owns the column definitions and cell computations of Kubernetes' printers
//! (`pkg/printers/internalversion`) for the built-in kinds kaji serves, the
//! default table convertor for the rest, and `duration.HumanDuration`. Objects
//! come in as plain stored JSON and every missing field is tolerated: a printer
//! never panics, it prints `<none>`, `<unknown>` or Go's zero value as
//! Kubernetes would.
//!
//! This crate is pure: it must not touch the store, the network, or the clock
//! (callers pass `now`), and it does not negotiate content types or apply
//! `includeObject`; the API server does that around [`table`].

mod admission;
mod apps;
mod cluster;
mod core;
mod custom;
mod duration;
mod fields;
mod pod;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub use custom::{custom_columns, custom_table, CustomColumn};
pub use duration::human_duration;

/// One `meta.k8s.io/v1 TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Human-readable name; kubectl upper-cases it for the header.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `boolean`, `date`, …
    pub type_: &'static str,
    /// OpenAPI format hint; `name` marks the column holding the object's name.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 is shown by default, 1 only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as `TableColumnDefinition` JSON; every field is always present.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A default column (priority 0) without a format.
pub(crate) const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A `-o wide` column (priority 1) without a format.
pub(crate) const fn wide(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

/// `ObjectMeta.name`'s documentation.
pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s documentation.
pub(crate) const CREATION_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The `Name` column every printer starts with.
pub(crate) const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};

/// The `Age` column of the built-in printers.
pub(crate) const AGE: Column = col("Age", "string", CREATION_DOC);

/// The wide `Containers` column of workload printers.
pub(crate) const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);

/// The wide `Images` column of workload printers.
pub(crate) const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Computes one row's cells, one per column.
type CellsFn = fn(&Value, DateTime<Utc>) -> Vec<Value>;

/// A kind's printer: its columns, its cells and, for pods, row conditions.
pub(crate) struct Printer {
    pub(crate) columns: &'static [Column],
    pub(crate) cells: CellsFn,
    pub(crate) conditions: Option<fn(&Value) -> Option<Value>>,
}

impl Printer {
    pub(crate) const fn new(columns: &'static [Column], cells: CellsFn) -> Self {
        Self {
            columns,
            cells,
            conditions: None,
        }
    }
}

/// The API group of an `apiVersion` (`"apps/v1"` → `"apps"`, `"v1"` → `""`).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Picks the printer for a kind. Built-in printers apply only in their own
/// group, so a custom resource that happens to be called `Pod` is not
/// printed as a pod.
fn printer(api_version: &str, kind: &str) -> Printer {
    match (group_of(api_version), kind) {
        ("", "Namespace") => core::NAMESPACE,
        ("", "Pod") => pod::POD,
        ("", "Service") => core::SERVICE,
        ("", "Endpoints") => core::ENDPOINTS,
        ("", "ConfigMap") => core::CONFIG_MAP,
        ("", "Secret") => core::SECRET,
        ("", "ServiceAccount") => core::SERVICE_ACCOUNT,
        ("", "Node") => core::NODE,
        ("", "Event") => core::EVENT,
        ("events.k8s.io", "Event") => core::EVENTS_K8S_IO_EVENT,
        ("apps" | "extensions", "Deployment") => apps::DEPLOYMENT,
        ("apps" | "extensions", "ReplicaSet") => apps::REPLICA_SET,
        ("apps" | "extensions", "DaemonSet") => apps::DAEMON_SET,
        ("apps", "StatefulSet") => apps::STATEFUL_SET,
        ("batch", "Job") => apps::JOB,
        ("batch", "CronJob") => apps::CRON_JOB,
        ("discovery.k8s.io", "EndpointSlice") => cluster::ENDPOINT_SLICE,
        ("coordination.k8s.io", "Lease") => cluster::LEASE,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            admission::MUTATING_WEBHOOK_CONFIGURATION
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            admission::VALIDATING_WEBHOOK_CONFIGURATION
        }
        (group, _) if cluster::is_built_in_group(group) => cluster::DEFAULT_CONVERTOR,
        _ => cluster::CUSTOM_RESOURCE,
    }
}

/// The column definitions Kubernetes serves for `kind`.
///
/// Kinds without a printer get the default: for kinds of Kubernetes' own API
/// groups (e.g. `CustomResourceDefinition`, `ClusterRole`) the apiserver's
/// default table convertor, `Name` and `Created At`; for any other group
/// (custom resources) `Name` and `Age`, as a CRD without
/// `additionalPrinterColumns` prints.
pub fn columns(api_version: &str, kind: &str) -> Vec<Column> {
    printer(api_version, kind).columns.to_vec()
}

/// The cells of one object's row, one per entry of [`columns`], with ages
/// computed relative to `now`.
pub fn cells(api_version: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    (printer(api_version, kind).cells)(obj, now)
}

/// A whole `meta.k8s.io/v1 Table` for `objs`: `columnDefinitions`, and one row
/// per object with its `cells` and the object itself under `object`. Rows of
/// finished pods also carry Kubernetes' `Completed` row condition.
///
/// `metadata` is left empty for the caller to fill in (`resourceVersion`,
/// `continue`).
pub fn table(api_version: &str, kind: &str, objs: &[Value], now: DateTime<Utc>) -> Value {
    let printer = printer(api_version, kind);
    let columns: Vec<Value> = printer.columns.iter().map(Column::to_json).collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": (printer.cells)(obj, now) });
            if let Some(conditions) = printer.conditions.and_then(|f| f(obj)) {
                row["conditions"] = conditions;
            }
            row["object"] = obj.clone();
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn table_should_wrap_columns_rows_and_objects() {
        let objs = [
            json!({"metadata": {"name": "a", "creationTimestamp": "2024-05-01T11:55:00Z"}, "data": {"k": "v"}}),
            json!({"metadata": {"name": "b"}}),
        ];
        let t = table("v1", "ConfigMap", &objs, now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
        );
        assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "5m"]));
        assert_eq!(t["rows"][0]["object"], objs[0]);
        assert_eq!(t["rows"][1]["cells"], json!(["b", 0, "<unknown>"]));
        assert!(t["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn table_should_mark_finished_pods_completed() {
        let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}});
        let t = table("v1", "Pod", &[pod], now());
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
        );
    }

    #[test]
    fn table_of_no_objects_should_still_define_columns() {
        let t = table("apps/v1", "Deployment", &[], now());
        assert_eq!(t["rows"], json!([]));
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(8));
    }

    #[test]
    fn every_printer_should_return_one_cell_per_column_even_for_empty_objects() {
        let kinds = [
            ("v1", "Namespace"),
            ("v1", "Pod"),
            ("v1", "Service"),
            ("v1", "Endpoints"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "Node"),
            ("v1", "Event"),
            ("events.k8s.io/v1", "Event"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("coordination.k8s.io/v1", "Lease"),
            (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
            ),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
            ),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("example.com/v1", "Widget"),
        ];
        for (api_version, kind) in kinds {
            for obj in [
                json!({}),
                json!(null),
                json!({"metadata": 7, "spec": "x", "status": []}),
            ] {
                let cells = cells(api_version, kind, &obj, now());
                assert_eq!(
                    cells.len(),
                    columns(api_version, kind).len(),
                    "{api_version} {kind} {obj}"
                );
            }
        }
    }

    #[test]
    fn every_printer_should_start_with_one_name_column() {
        for (api_version, kind) in [("v1", "Pod"), ("apps/v1", "Deployment"), ("x.io/v1", "Y")] {
            let cols = columns(api_version, kind);
            assert_eq!(cols[0], NAME);
            assert_eq!(cols.iter().filter(|c| c.format == "name").count(), 1);
        }
    }

    #[test]
    fn built_in_printers_should_not_apply_to_custom_resources_of_the_same_kind() {
        let names: Vec<_> = columns("example.com/v1", "Pod")
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Name", "Age"]);
        let names: Vec<_> = columns("v1", "Pod").iter().map(|c| c.name).collect();
        assert_eq!(names[..3], ["Name", "Ready", "Status"]);
    }

    #[test]
    fn group_of_should_split_api_versions() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of(""), "");
    }
}
