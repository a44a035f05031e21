//! The `MarkdownView` custom resource: its spec, its status, and the
//! CustomResourceDefinition derived from them.

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of `MarkdownView`.
pub const GROUP: &str = "view.kaji.dev";

/// The image recorded for viewer containers when the spec names none. kaji's
/// process runtime only records it; the viewer's command is `python3`.
pub const DEFAULT_VIEWER_IMAGE: &str = "python:3.12-slim";

/// How many viewer pods a `MarkdownView` runs when the spec says nothing.
pub const DEFAULT_REPLICAS: i32 = 1;

/// A set of markdown files served as HTML by a small Deployment.
///
/// The operator keeps, for each `MarkdownView` named `N`: a ConfigMap
/// `N-markdowns` holding the files, a Deployment `N-viewer` serving them on
/// port 3000, and a Service `N-viewer` on port 80 in front of it.
// Several `printcolumn(...)` share keys such as `type_`, which clippy takes
// for repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "view.kaji.dev",
    version = "v1",
    kind = "MarkdownView",
    namespaced,
    shortname = "mdv",
    status = "MarkdownViewStatus",
    derive = "PartialEq",
    doc = "MarkdownView serves a set of markdown files as HTML pages.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.availableReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Viewer pods wanted"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Viewer pods serving"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MarkdownViewSpec {
    /// The files to serve: file name (a ConfigMap key: letters, digits,
    /// `-`, `_`, `.`) → markdown text.
    pub markdowns: BTreeMap<String, String>,
    /// How many viewer pods to run.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// The image recorded for the viewer container.
    #[serde(default = "default_viewer_image")]
    pub viewer_image: String,
}

fn default_replicas() -> i32 {
    DEFAULT_REPLICAS
}

fn default_viewer_image() -> String {
    DEFAULT_VIEWER_IMAGE.to_string()
}

/// What the operator last saw of a `MarkdownView`'s viewer.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkdownViewStatus {
    /// Viewer pods available (from the Deployment's status).
    #[serde(default)]
    pub available_replicas: i32,
    /// The label selector of the viewer pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available`: whether every wanted viewer pod serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One condition, shaped like `metav1.Condition`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's name, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word saying why.
    pub reason: String,
    /// A sentence for humans.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The spec generation this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CustomResourceDefinition as YAML, ready for `kubectl apply -f -`.
///
/// # Errors
/// Only if serialising fails, which a derived CRD never does.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&MarkdownView::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_json() -> serde_json::Value {
        serde_json::to_value(MarkdownView::crd()).unwrap()
    }

    #[test]
    fn crd_should_be_namespaced_with_status_and_scale_subresources() {
        let crd = crd_json();
        assert_eq!(crd["metadata"]["name"], "markdownviews.view.kaji.dev");
        assert_eq!(crd["spec"]["group"], GROUP);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["kind"], "MarkdownView");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "mdv");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1");
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        assert!(version["subresources"]["status"].is_object());
        assert_eq!(
            version["subresources"]["scale"]["specReplicasPath"],
            ".spec.replicas"
        );
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Replicas", "Available", "Ready", "Age"]);
    }

    #[test]
    fn crd_schema_should_require_markdowns_and_default_and_bound_replicas() {
        let crd = crd_json();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["markdowns"]));
        let replicas = &spec["properties"]["replicas"];
        assert_eq!(replicas["default"], 1);
        assert_eq!(replicas["minimum"].as_f64(), Some(1.0));
        assert_eq!(replicas["maximum"].as_f64(), Some(5.0));
        assert_eq!(
            spec["properties"]["viewerImage"]["default"],
            DEFAULT_VIEWER_IMAGE
        );
        assert_eq!(
            spec["properties"]["markdowns"]["additionalProperties"]["type"],
            "string"
        );
    }

    #[test]
    fn crd_yaml_should_round_trip_to_the_same_definition() {
        let yaml = crd_yaml().unwrap();
        let back: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, crd_json());
    }

    #[test]
    fn a_spec_without_replicas_or_image_should_take_the_defaults() {
        let spec: MarkdownViewSpec =
            serde_json::from_value(serde_json::json!({"markdowns": {"a.md": "# A"}})).unwrap();
        assert_eq!(spec.replicas, DEFAULT_REPLICAS);
        assert_eq!(spec.viewer_image, DEFAULT_VIEWER_IMAGE);
    }
}
