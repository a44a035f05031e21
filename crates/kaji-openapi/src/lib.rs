//! The OpenAPI documents kaji serves so kubectl can validate, explain and
//! apply the built-in kinds.
//!
//! Owns `/openapi/v2` (swagger 2.0, as JSON and as the gnostic protobuf
//! kubectl asks for), the `/openapi/v3` index and the per-group-version
//! OpenAPI 3.0 documents. Schemas are generated from `k8s-openapi` through
//! `schemars` and corrected into Kubernetes' shape (see the `schemas` module); paths
//! come from [`kaji_core::catalogue::builtin`]. Everything here is pure and
//! built once; serving (content negotiation, ETags, hashes) belongs to the API
//! server, which must not need to know the documents' shape.
//!
//! # What kubectl 1.32 needs from these documents
//!
//! - `kubectl apply` (default `--validate=strict`) reads `/openapi/v3`, then
//!   the group version's `serverRelativeURL`, and asks whether the `PATCH`
//!   operation whose `x-kubernetes-group-version-kind` names the kind lists
//!   the `fieldValidation` query parameter; if so it sends
//!   `fieldValidation=Strict` and leaves validation to the server. Only when
//!   v3 is unavailable does it fall back to `/openapi/v2`.
//! - `/openapi/v2` is always requested with
//!   `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and
//!   the body is unmarshalled as protobuf unconditionally (v2 fallbacks,
//!   `kubectl explain --output=plaintext-openapiv2`): serve [`v2_protobuf`]
//!   with content type [`V2_PROTOBUF_CONTENT_TYPE`] (the `@` form fails Go's
//!   MIME parser) and [`v2`] to clients asking for JSON.
//! - Client-side apply computes its strategic merge patch from the v3 schema
//!   when the kind's `PATCH` accepts `application/strategic-merge-patch+json`,
//!   reading `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy`.
//! - `kubectl explain` reads `/openapi/v3`, then the group version's
//!   `serverRelativeURL`, and finds the kind by the component schema's
//!   `x-kubernetes-group-version-kind`; it follows `$ref` and `allOf`.
//!
//! # Custom resources
//!
//! The `*_with` functions take the custom resources served now (see
//! [`CustomResource`]) and publish them beside the built-in kinds, as
//! apiextensions-apiserver does (see the `custom` module for the shapes):
//! `kubectl explain` and server-side field validation then work for them
//! as for built-ins. Without custom resources they return the built-in
//! documents. They render on every call; callers cache.

mod custom;
mod paths;
mod proto;
mod render;
mod schemas;

use std::sync::OnceLock;

use kaji_core::catalogue::ResourceInfo;
use serde_json::Value;

use crate::paths::PathItem;
use crate::schemas::Definitions;

/// A served custom resource version: what it serves (kind, plural, scope,
/// subresources) and its CRD version's `schema.openAPIV3Schema` (`null`
/// when it has none).
pub type CustomResource = (&'static ResourceInfo, Value);

/// Content type to send with [`v2_protobuf`]. Kubernetes answers with this
/// dotted form because Go's `mime.ParseMediaType` rejects the `@` form
/// kubectl puts in its `Accept` header.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

struct Model {
    schemas: schemas::Schemas,
    paths: Vec<paths::PathItem>,
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let schemas = schemas::build();
        let paths = paths::build(&schemas);
        Model { schemas, paths }
    })
}

fn v2_cached() -> &'static Value {
    static V2: OnceLock<Value> = OnceLock::new();
    V2.get_or_init(|| {
        let m = model();
        let items: Vec<&PathItem> = m.paths.iter().collect();
        render::v2(&Definitions::builtin(&m.schemas), &items)
    })
}

/// The swagger 2.0 document for every group version, as served at
/// `/openapi/v2` to clients that accept JSON.
pub fn v2() -> Value {
    v2_cached().clone()
}

/// [`v2`] encoded as a gnostic `openapi.v2.Document` protobuf, as served at
/// `/openapi/v2` to clients whose `Accept` names
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (kubectl).
pub fn v2_protobuf() -> &'static [u8] {
    static PB: OnceLock<Vec<u8>> = OnceLock::new();
    PB.get_or_init(|| proto::encode_document(v2_cached()))
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=..."}, "apis/apps/v1": ...}}`.
///
/// `base_hash` receives each index key (`api/v1`, `apis/apps/v1`) and returns
/// the hash to put in its URL, typically a digest of the serialized
/// [`v3_group_version`] document so clients may cache it.
pub fn v3_index(base_hash: impl Fn(&str) -> String) -> Value {
    let items: Vec<&PathItem> = model().paths.iter().collect();
    render::v3_index(&items, base_hash)
}

/// The OpenAPI 3.0 document for one group version (`""` for core), as served
/// at `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`; `None`
/// if kaji serves nothing there.
pub fn v3_group_version(group: &str, version: &str) -> Option<Value> {
    static DOCS: OnceLock<Vec<(String, String, Value)>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        let m = model();
        let defs = Definitions::builtin(&m.schemas);
        let items: Vec<&PathItem> = m.paths.iter().collect();
        paths::group_versions(&m.paths)
            .into_iter()
            .filter_map(|(g, v)| {
                let doc = render::v3(&defs, &items, g, v)?;
                Some((g.to_string(), v.to_string(), doc))
            })
            .collect()
    });
    docs.iter()
        .find(|(g, v, _)| g == group && v == version)
        .map(|(_, _, doc)| doc.clone())
}

/// [`v2`] with the paths and schemas of `custom` merged in.
pub fn v2_with(custom: &[CustomResource]) -> Value {
    if custom.is_empty() {
        return v2();
    }
    let m = model();
    let extra = custom::paths(custom, &m.schemas);
    let defs = Definitions {
        builtin: &m.schemas.definitions,
        custom: custom::definitions(custom, custom::Flavor::V2),
    };
    let items: Vec<&PathItem> = m.paths.iter().chain(&extra).collect();
    render::v2(&defs, &items)
}

/// [`v2_with`] encoded as [`v2_protobuf`] is.
pub fn v2_protobuf_with(custom: &[CustomResource]) -> Vec<u8> {
    if custom.is_empty() {
        return v2_protobuf().to_vec();
    }
    proto::encode_document(&v2_with(custom))
}

/// [`v3_index`] listing the group versions of `custom` too (after the
/// built-in ones).
pub fn v3_index_with(custom: &[CustomResource], base_hash: impl Fn(&str) -> String) -> Value {
    let m = model();
    let extra = custom::paths(custom, &m.schemas);
    let items: Vec<&PathItem> = m.paths.iter().chain(&extra).collect();
    render::v3_index(&items, base_hash)
}

/// [`v3_group_version`] with the custom resources of `custom` in that group
/// version merged in: `None` only if neither kaji nor a custom resource
/// serves anything there.
pub fn v3_group_version_with(
    group: &str,
    version: &str,
    custom: &[CustomResource],
) -> Option<Value> {
    let custom: Vec<CustomResource> = custom
        .iter()
        .filter(|(info, _)| info.group == group && info.version == version)
        .cloned()
        .collect();
    if custom.is_empty() {
        return v3_group_version(group, version);
    }
    let m = model();
    let extra = custom::paths(&custom, &m.schemas);
    let defs = Definitions {
        builtin: &m.schemas.definitions,
        custom: custom::definitions(&custom, custom::Flavor::V3),
    };
    let items: Vec<&PathItem> = m
        .paths
        .iter()
        .filter(|i| i.group == group && i.version == version)
        .chain(&extra)
        .collect();
    render::v3(&defs, &items, group, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaji_core::catalogue;
    use serde_json::json;

    fn group_versions() -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        for r in catalogue::builtin() {
            if !out.contains(&(r.group, r.version)) {
                out.push((r.group, r.version));
            }
        }
        out
    }

    fn v3(group: &str, version: &str) -> Value {
        v3_group_version(group, version)
            .unwrap_or_else(|| panic!("no v3 document for {group}/{version}"))
    }

    fn has_gvk(schema: &Value, group: &str, version: &str, kind: &str) -> bool {
        schema[schemas::GVK_EXTENSION]
            .as_array()
            .is_some_and(|l| l.contains(&json!({"group": group, "version": version, "kind": kind})))
    }

    #[test]
    fn every_catalogue_kind_has_a_schema_with_its_gvk_extension() {
        let v2 = v2();
        for r in catalogue::builtin() {
            let doc = v3(r.group, r.version);
            let components = doc["components"]["schemas"].as_object().unwrap();
            for kind in [r.kind.to_string(), format!("{}List", r.kind)] {
                let found = components
                    .values()
                    .filter(|s| has_gvk(s, r.group, r.version, &kind))
                    .count();
                assert_eq!(found, 1, "v3 schema for {}/{kind}", r.api_version());
                let found = v2["definitions"]
                    .as_object()
                    .unwrap()
                    .values()
                    .filter(|s| has_gvk(s, r.group, r.version, &kind))
                    .count();
                assert_eq!(found, 1, "v2 schema for {}/{kind}", r.api_version());
            }
        }
    }

    #[test]
    fn kind_schemas_carry_their_doc_comments_as_descriptions() {
        let doc = v3("apps", "v1");
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert!(deployment["description"]
            .as_str()
            .unwrap()
            .contains("declarative updates"));
        let spec = &deployment["properties"]["spec"];
        assert_eq!(
            spec["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}])
        );
        assert!(spec["description"].is_string());
    }

    #[test]
    fn pod_containers_carry_the_merge_key_extensions() {
        let v2 = v2();
        let core = v3("", "v1");
        for containers in [
            &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]
                ["containers"],
            &v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"],
        ] {
            assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
            assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(containers["x-kubernetes-list-type"], "map");
            assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        }
        let ports =
            &core["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    }

    #[test]
    fn required_lists_follow_kubernetes_not_rust_optionality() {
        let core = v3("", "v1");
        let schemas = &core["components"]["schemas"];
        assert!(schemas["io.k8s.api.core.v1.Pod"].get("required").is_none());
        assert_eq!(
            schemas["io.k8s.api.core.v1.SecretKeySelector"]["required"],
            json!(["key"])
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
            "int-or-string"
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
    }

    #[test]
    fn v3_index_lists_each_group_version() {
        let index = v3_index(|key| format!("h-{}", key.len()));
        let paths = index["paths"].as_object().unwrap();
        for (group, version) in group_versions() {
            let key = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
            assert_eq!(url, format!("/openapi/v3/{key}?hash=h-{}", key.len()));
        }
        assert_eq!(paths.len(), group_versions().len());
    }

    #[test]
    fn unknown_group_versions_have_no_document() {
        assert!(v3_group_version("apps", "v1beta1").is_none());
        assert!(v3_group_version("nope.example.com", "v1").is_none());
    }

    /// Mirrors kubectl's `supportsQueryParamV3` and `gvkSupportsPatchOpenAPIV3`:
    /// every PATCH whose GVK names the kind must list `fieldValidation` and
    /// accept strategic merge patch (Go picks any one of them).
    #[test]
    fn every_patch_operation_supports_field_validation_and_strategic_merge() {
        for r in catalogue::builtin() {
            let doc = v3(r.group, r.version);
            let mut matched = 0;
            for item in doc["paths"].as_object().unwrap().values() {
                let Some(patch) = item.get("patch") else {
                    continue;
                };
                let names: Vec<&str> = patch["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                for wanted in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                    assert!(
                        names.contains(&wanted),
                        "{wanted} on {}",
                        patch["operationId"]
                    );
                }
                assert!(patch["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_some());
                if patch[schemas::GVK_EXTENSION]
                    == json!({"group": r.group, "version": r.version, "kind": r.kind})
                {
                    matched += 1;
                }
            }
            assert!(matched >= 1, "no PATCH for {}/{}", r.api_version(), r.kind);
            for item in doc["paths"].as_object().unwrap().values() {
                for method in ["post", "put"] {
                    if let Some(op) = item.get(method) {
                        let has = op["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == "fieldValidation");
                        assert!(has, "fieldValidation on {}", op["operationId"]);
                    }
                }
            }
        }
    }

    #[test]
    fn namespaced_and_cluster_paths_follow_kubernetes_layout() {
        let core = v3("", "v1");
        let paths = core["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/status"));
        assert!(paths.contains_key("/api/v1/pods"));
        assert!(paths.contains_key("/api/v1/nodes/{name}"));
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"],
            "listCoreV1NamespacedPod"
        );
        let apps = v3("apps", "v1");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
            ["patch"];
        assert_eq!(
            scale[schemas::GVK_EXTENSION],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match child {
                        Value::String(target) if key == "$ref" => out.push(target.clone()),
                        _ => collect_refs(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_within_its_document() {
        let mut docs = vec![("#/definitions/", "definitions", v2())];
        for (group, version) in group_versions() {
            docs.push(("#/components/schemas/", "components", v3(group, version)));
        }
        for (prefix, section, doc) in docs {
            let defs = if section == "definitions" {
                &doc["definitions"]
            } else {
                &doc["components"]["schemas"]
            };
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            assert!(!refs.is_empty());
            for target in refs {
                let name = target
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("foreign ref {target}"));
                assert!(defs.get(name).is_some(), "dangling ref {target}");
            }
        }
    }

    fn check_no_ref_siblings(value: &Value) {
        match value {
            Value::Object(map) => {
                if matches!(map.get("$ref"), Some(Value::String(_))) {
                    assert_eq!(map.len(), 1, "{value}");
                }
                map.values().for_each(check_no_ref_siblings);
            }
            Value::Array(items) => items.iter().for_each(check_no_ref_siblings),
            _ => {}
        }
    }

    #[test]
    fn v3_refs_never_have_siblings() {
        check_no_ref_siblings(&v3("", "v1"));
    }

    #[test]
    fn v2_protobuf_is_built_once_from_the_json_document() {
        let pb = v2_protobuf();
        assert!(pb.len() > 100_000);
        assert!(std::ptr::eq(pb, v2_protobuf()));
        assert_eq!(&pb[..5], &[0x0a, 3, b'2', b'.', b'0']);
    }

    fn crontab(scope: catalogue::Scope, subresources: &[&str]) -> CustomResource {
        let info = catalogue::intern(catalogue::OwnedResourceInfo {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            singular: "crontab".into(),
            short_names: vec!["ct".into()],
            scope,
            categories: vec![],
            subresources: subresources.iter().map(|s| s.to_string()).collect(),
            has_status: subresources.contains(&"status"),
        });
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "description": "CronTabSpec is what the user asks for.",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": {"type": "string", "description": "When to run, in cron format."},
                        "replicas": {"type": "integer", "nullable": true},
                    },
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            },
        });
        (info, schema)
    }

    fn crontab_v3() -> Value {
        let custom = [crontab(catalogue::Scope::Namespaced, &["status", "scale"])];
        v3_group_version_with("stable.example.com", "v1", &custom).expect("a document")
    }

    #[test]
    fn a_custom_kind_is_published_under_its_kubernetes_name_with_type_and_object_meta() {
        let doc = crontab_v3();
        let schemas = &doc["components"]["schemas"];
        let kind = &schemas["com.example.stable.v1.CronTab"];
        assert!(has_gvk(kind, "stable.example.com", "v1", "CronTab"));
        assert_eq!(
            kind["properties"]["spec"]["properties"]["cronSpec"]["description"],
            "When to run, in cron format."
        );
        assert_eq!(kind["properties"]["apiVersion"]["type"], "string");
        assert_eq!(kind["properties"]["kind"]["type"], "string");
        assert_eq!(
            kind["properties"]["metadata"]["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}])
        );
        let list = &schemas["com.example.stable.v1.CronTabList"];
        assert!(has_gvk(list, "stable.example.com", "v1", "CronTabList"));
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/com.example.stable.v1.CronTab"
        );
        assert!(schemas
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .is_some());
        assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none());
    }

    /// kubectl sends `fieldValidation=Strict` only if the kind's PATCH lists
    /// it; client-side apply must pick JSON merge patch for custom kinds.
    #[test]
    fn custom_operations_take_field_validation_but_not_strategic_merge_patch() {
        let doc = crontab_v3();
        let paths = doc["paths"].as_object().unwrap();
        let base = "/apis/stable.example.com/v1";
        for path in [
            format!("{base}/namespaces/{{namespace}}/crontabs"),
            format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}"),
            format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}/status"),
            format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}/scale"),
            format!("{base}/crontabs"),
        ] {
            assert!(paths.contains_key(&path), "{path}");
        }
        let item = &paths[&format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}")];
        let patch = &item["patch"];
        assert_eq!(
            patch["operationId"],
            "patchStableExampleComV1NamespacedCronTab"
        );
        assert_eq!(patch["tags"], json!(["stableExampleCom_v1"]));
        assert_eq!(
            patch[schemas::GVK_EXTENSION],
            json!({"group": "stable.example.com", "version": "v1", "kind": "CronTab"})
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for wanted in ["fieldValidation", "dryRun", "fieldManager", "force"] {
            assert!(names.contains(&wanted), "{wanted}");
        }
        let content = patch["requestBody"]["content"].as_object().unwrap();
        assert!(content.contains_key("application/merge-patch+json"));
        assert!(content.contains_key("application/apply-patch+yaml"));
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        for op in [
            &item["put"],
            &paths[&format!("{base}/namespaces/{{namespace}}/crontabs")]["post"],
        ] {
            assert!(op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation"));
        }
        assert_eq!(
            item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn cluster_scoped_custom_resources_have_no_namespace_paths() {
        let custom = [crontab(catalogue::Scope::Cluster, &[])];
        let doc = v3_group_version_with("stable.example.com", "v1", &custom).unwrap();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/apis/stable.example.com/v1/crontabs",
                "/apis/stable.example.com/v1/crontabs/{name}"
            ]
        );
        assert_eq!(
            doc["paths"]["/apis/stable.example.com/v1/crontabs"]["get"]["operationId"],
            "listStableExampleComV1CronTab"
        );
    }

    #[test]
    fn custom_documents_are_self_contained_and_v3_shaped() {
        let custom = [crontab(catalogue::Scope::Namespaced, &["status", "scale"])];
        let v2 = v2_with(&custom);
        let v3 = crontab_v3();
        for (prefix, defs, doc) in [
            ("#/definitions/", &v2["definitions"], &v2),
            ("#/components/schemas/", &v3["components"]["schemas"], &v3),
        ] {
            let mut refs = Vec::new();
            collect_refs(doc, &mut refs);
            for target in refs {
                let name = target.strip_prefix(prefix).unwrap();
                assert!(defs.get(name).is_some(), "dangling ref {target}");
            }
        }
        check_no_ref_siblings(&v3);
    }

    #[test]
    fn v2_merges_custom_kinds_reduced_for_kubectl() {
        let custom = [crontab(catalogue::Scope::Namespaced, &["status"])];
        let v2 = v2_with(&custom);
        let kind = &v2["definitions"]["com.example.stable.v1.CronTab"];
        assert!(has_gvk(kind, "stable.example.com", "v1", "CronTab"));
        assert_eq!(
            kind["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        // nullable values lose their type in v2, preserved objects their properties.
        assert!(kind["properties"]["spec"]["properties"]["replicas"]
            .get("type")
            .is_none());
        let patch = &v2["paths"]
            ["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"];
        let consumes = patch["consumes"].as_array().unwrap();
        assert!(!consumes.contains(&json!("application/strategic-merge-patch+json")));
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        // Built-ins are all still there.
        assert!(v2["definitions"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_some());
        assert_eq!(v2_with(&[]), super::v2());
        let pb = v2_protobuf_with(&custom);
        assert!(pb.len() > v2_protobuf().len());
    }

    #[test]
    fn the_v3_index_lists_custom_group_versions_after_built_in_ones() {
        let custom = [crontab(catalogue::Scope::Namespaced, &[])];
        let index = v3_index_with(&custom, |key| format!("h-{}", key.len()));
        let paths = index["paths"].as_object().unwrap();
        assert_eq!(
            paths["apis/stable.example.com/v1"]["serverRelativeURL"],
            "/openapi/v3/apis/stable.example.com/v1?hash=h-26"
        );
        assert_eq!(paths.len(), group_versions().len() + 1);
        assert_eq!(
            v3_index_with(&[], |_| String::new()),
            v3_index(|_| String::new())
        );
    }

    #[test]
    fn custom_resources_elsewhere_leave_a_group_version_built_in() {
        let custom = [crontab(catalogue::Scope::Namespaced, &[])];
        assert_eq!(
            v3_group_version_with("apps", "v1", &custom),
            v3_group_version("apps", "v1")
        );
        assert!(v3_group_version_with("stable.example.com", "v2", &custom).is_none());
    }
}
