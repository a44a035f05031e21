//! Whether a CustomResourceDefinition is acceptable, as
//! apiextensions-apiserver's validation and naming controller decide it.
//!
//! Pure functions over the CRD as JSON (any shape: a CRD is user input, so
//! every problem is a [`Cause`], never a panic). Field paths and messages
//! are Kubernetes' own (`spec.versions[0].schema.openAPIV3Schema.properties[spec].type`).

use std::cmp::Ordering;

use kaji_core::{validation, Cause};
use serde_json::{json, Value};

use crate::schema::structural;

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn required(field: impl Into<String>, detail: &str) -> Cause {
    let mut c = Cause::required(field);
    if !detail.is_empty() {
        c.message = format!("Required value: {detail}");
    }
    c
}

/// Checks a field that must be a string if present; returns it.
fn string_at<'a>(v: &'a Value, key: &str, path: &str, out: &mut Vec<Cause>) -> &'a str {
    match v.get(key) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(other) => {
            out.push(Cause::invalid(
                format!("{path}.{key}"),
                other,
                "must be a string",
            ));
            ""
        }
    }
}

fn bool_at(v: &Value, key: &str, path: &str, out: &mut Vec<Cause>) -> bool {
    match v.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            out.push(Cause::invalid(
                format!("{path}.{key}"),
                other,
                "must be a boolean",
            ));
            false
        }
    }
}

fn list_at<'a>(v: &'a Value, key: &str, path: &str, out: &mut Vec<Cause>) -> &'a [Value] {
    match v.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            out.push(Cause::invalid(
                format!("{path}.{key}"),
                other,
                "must be a list",
            ));
            &[]
        }
    }
}

fn dns1035(value: &str, field: String, out: &mut Vec<Cause>) {
    let errs = validation::is_dns1035_label(value);
    if !errs.is_empty() {
        out.push(Cause::invalid(field, &json!(value), errs.join(",")));
    }
}

/// Every reason `crd` (a whole CustomResourceDefinition as JSON) is
/// invalid, with Kubernetes' field paths and messages.
///
/// Covers `metadata.name` = `<plural>.<group>` (the rest of ObjectMeta is
/// the registry's), group, scope, names, versions (names, exactly one
/// storage version, a structural `openAPIV3Schema` for each, valid and
/// pruned defaults, list/map types, subresources, printer columns),
/// conversion (only `None` is supported by kaji) and, when present,
/// `status.storedVersions`.
///
/// # Caveats
/// Does not compile `x-kubernetes-validations` rules: the caller adds
/// `crate::rules::Rules::compile`'s causes (marked `CEL-RULES-HOOK` in the
/// schema checks). Expects `spec.names.singular`/`listKind` to have been
/// defaulted, as Kubernetes defaults them before validating.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let Some(spec) = crd.get("spec").filter(|v| v.is_object()) else {
        out.push(Cause::required("spec"));
        return out;
    };
    let group = string_at(spec, "group", "spec", &mut out);
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let plural = s(&names, "/plural");

    let name = s(crd, "/metadata/name");
    if !name.is_empty() && name != format!("{plural}.{group}") {
        out.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            r#"must be spec.names.plural+"."+spec.group"#,
        ));
    }

    if group.is_empty() {
        out.push(Cause::required("spec.group"));
    } else {
        let errs = validation::is_dns1123_subdomain(group);
        if !errs.is_empty() {
            out.push(Cause::invalid("spec.group", &json!(group), errs.join(",")));
        } else if !group.contains('.') {
            out.push(Cause::invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
    }

    match string_at(spec, "scope", "spec", &mut out) {
        "" => out.push(Cause::required("spec.scope")),
        "Cluster" | "Namespaced" => {}
        other => out.push(Cause::not_supported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
    }

    versions(spec, &mut out);
    validate_names(&names, "spec.names", true, &mut out);
    if let Some(accepted) = crd
        .pointer("/status/acceptedNames")
        .filter(|v| v.is_object())
    {
        validate_names(accepted, "status.acceptedNames", false, &mut out);
    }
    conversion(spec, &mut out);
    if spec.get("preserveUnknownFields") == Some(&json!(true)) {
        out.push(Cause::invalid(
            "spec.preserveUnknownFields",
            &json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    if let Some(stored) = crd.pointer("/status/storedVersions") {
        stored_versions(stored, spec, &mut out);
    }
    out
}

fn versions(spec: &Value, out: &mut Vec<Cause>) {
    let versions = list_at(spec, "versions", "spec", out);
    let all = spec.get("versions").cloned().unwrap_or(json!([]));
    let mut storage = 0;
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        if !v.is_object() {
            out.push(Cause::invalid(path, v, "must be an object"));
            continue;
        }
        let name = string_at(v, "name", &path, out);
        if seen.contains(&name) {
            unique = false;
        }
        seen.push(name);
        dns1035(name, format!("{path}.name"), out);
        bool_at(v, "served", &path, out);
        if bool_at(v, "storage", &path, out) {
            storage += 1;
        }
        if v.get("deprecationWarning").is_some_and(|w| !w.is_null())
            && !bool_at(v, "deprecated", &path, out)
        {
            out.push(Cause::invalid(
                format!("{path}.deprecationWarning"),
                &v["deprecationWarning"],
                "can only be set for deprecated versions",
            ));
        }
        let status_enabled = v
            .pointer("/subresources/status")
            .is_some_and(|s| !s.is_null());
        match v.pointer("/schema/openAPIV3Schema") {
            None | Some(Value::Null) => {
                out.push(Cause::required(format!("{path}.schema.openAPIV3Schema")))
            }
            Some(schema) => out.extend(structural::validate_crd_schema(
                schema,
                &format!("{path}.schema.openAPIV3Schema"),
                status_enabled,
            )),
        }
        if let Some(scale) = v.pointer("/subresources/scale").filter(|s| !s.is_null()) {
            scale_paths(scale, &format!("{path}.subresources"), out);
        }
        for (j, col) in list_at(v, "additionalPrinterColumns", &path, out)
            .iter()
            .enumerate()
        {
            column(col, &format!("{path}.additionalPrinterColumns[{j}]"), out);
        }
    }
    if !unique {
        out.push(Cause::invalid(
            "spec.versions",
            &all,
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        out.push(Cause::invalid(
            "spec.versions",
            &all,
            "must have exactly one version marked as storage version",
        ));
    }
}

/// A JSON path of the simple `.a.b` form scale and printer columns use.
fn simple_json_path(p: &str, field: &str, out: &mut Vec<Cause>) -> bool {
    let detail = if p.is_empty() {
        "must not be empty"
    } else if !p.starts_with('.') {
        "must be a simple json path starting with ."
    } else {
        return true;
    };
    out.push(Cause::invalid(field, &json!(p), detail));
    false
}

fn scale_paths(scale: &Value, path: &str, out: &mut Vec<Cause>) {
    for (key, prefix, under) in [
        ("specReplicasPath", ".spec.", ".spec"),
        ("statusReplicasPath", ".status.", ".status"),
    ] {
        let field = format!("{path}.scale.{key}");
        match scale.get(key).and_then(Value::as_str).unwrap_or("") {
            "" => out.push(Cause::required(field)),
            p => {
                if simple_json_path(p, &field, out) && !p.starts_with(prefix) {
                    out.push(Cause::invalid(
                        field,
                        &json!(p),
                        format!("should be a json path under {under}"),
                    ));
                }
            }
        }
    }
    let selector = scale
        .get("labelSelectorPath")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !selector.is_empty() {
        let field = format!("{path}.scale.labelSelectorPath");
        if simple_json_path(selector, &field, out)
            && !selector.starts_with(".spec.")
            && !selector.starts_with(".status.")
        {
            out.push(Cause::invalid(
                field,
                &json!(selector),
                "should be a json path under either .spec or .status",
            ));
        }
    }
}

fn column(col: &Value, path: &str, out: &mut Vec<Cause>) {
    const TYPES: &str = "boolean,date,integer,number,string";
    const FORMATS: &[&str] = &[
        "byte",
        "date",
        "date-time",
        "double",
        "float",
        "int32",
        "int64",
        "password",
    ];
    if s(col, "/name").is_empty() {
        out.push(Cause::required(format!("{path}.name")));
    }
    match s(col, "/type") {
        "" => out.push(required(
            format!("{path}.type"),
            &format!("must be one of {TYPES}"),
        )),
        "integer" | "number" | "string" | "boolean" | "date" => {}
        other => out.push(Cause::invalid(
            format!("{path}.type"),
            &json!(other),
            format!("must be one of {TYPES}"),
        )),
    }
    let format = s(col, "/format");
    if !format.is_empty() && !FORMATS.contains(&format) {
        out.push(Cause::invalid(
            format!("{path}.format"),
            &json!(format),
            format!("must be one of {}", FORMATS.join(",")),
        ));
    }
    let json_path = s(col, "/jsonPath");
    let field = format!("{path}.JSONPath");
    if json_path.is_empty() {
        out.push(Cause::required(field));
    } else {
        simple_json_path(json_path, &field, out);
    }
}

fn validate_names(names: &Value, path: &str, spec: bool, out: &mut Vec<Cause>) {
    if !names.is_object() {
        out.push(Cause::required(path));
        return;
    }
    let plural = string_at(names, "plural", path, out);
    let singular = string_at(names, "singular", path, out);
    let kind = string_at(names, "kind", path, out);
    let list_kind = string_at(names, "listKind", path, out);
    if spec {
        for (k, v) in [
            ("plural", plural),
            ("singular", singular),
            ("kind", kind),
            ("listKind", list_kind),
        ] {
            if v.is_empty() {
                out.push(Cause::required(format!("{path}.{k}")));
            }
        }
    }
    if !plural.is_empty() {
        dns1035(plural, format!("{path}.plural"), out);
    }
    if !singular.is_empty() {
        dns1035(singular, format!("{path}.singular"), out);
    }
    for (k, v) in [("kind", kind), ("listKind", list_kind)] {
        let errs = validation::is_dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !errs.is_empty() {
            out.push(Cause::invalid(
                format!("{path}.{k}"),
                &json!(v),
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                ),
            ));
        }
    }
    for (list, key) in [("shortNames", "shortNames"), ("categories", "categories")] {
        for (i, v) in list_at(names, list, path, out).iter().enumerate() {
            let field = format!("{path}.{key}[{i}]");
            match v.as_str() {
                Some(name) => dns1035(name, field, out),
                None => out.push(Cause::invalid(field, v, "must be a string")),
            }
        }
    }
    if !kind.is_empty() && kind == list_kind {
        out.push(Cause::invalid(
            format!("{path}.listKind"),
            &json!(list_kind),
            "kind and listKind may not be the same",
        ));
    }
}

fn conversion(spec: &Value, out: &mut Vec<Cause>) {
    let Some(conv) = spec.get("conversion").filter(|c| !c.is_null()) else {
        return;
    };
    match conv.get("strategy").and_then(Value::as_str).unwrap_or("") {
        "" => out.push(Cause::required("spec.conversion.strategy")),
        "None" => {
            if conv.get("webhook").is_some_and(|w| !w.is_null()) {
                out.push(Cause::forbidden(
                    "spec.conversion.webhookClientConfig",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => {
            let mut c =
                Cause::not_supported("spec.conversion.strategy", &json!("Webhook"), &["None"]);
            c.message
                .push_str(" (conversion webhooks are not supported by kaji)");
            out.push(c);
        }
        other => out.push(Cause::not_supported(
            "spec.conversion.strategy",
            &json!(other),
            &["None", "Webhook"],
        )),
    }
}

fn stored_versions(stored: &Value, spec: &Value, out: &mut Vec<Cause>) {
    let field = "status.storedVersions";
    let list: Vec<&str> = stored
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if list.is_empty() {
        out.push(Cause::invalid(
            field,
            stored,
            "must have at least one stored version",
        ));
        return;
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in &versions {
        let name = s(v, "/name");
        if v.get("storage") == Some(&json!(true)) && !list.contains(&name) {
            out.push(Cause::invalid(
                field,
                stored,
                format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, name) in list.iter().enumerate() {
        if !versions.iter().any(|v| s(v, "/name") == *name) {
            out.push(Cause::invalid(
                format!("{field}[{i}]"),
                &json!(name),
                format!("missing from spec.versions; {name} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {name} and removes {name} from status.storedVersions"),
            ));
        }
    }
}

/// The checks on an update beyond [`validate`] of the new object:
/// `spec.group` and `spec.names.plural` never change; `spec.scope` and
/// `spec.names.kind` do not change once the old CRD is Established.
pub fn validate_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut immutable = |pointer: &str, field: &str| {
        if new.pointer(pointer) != old.pointer(pointer) {
            out.push(Cause::immutable(field));
        }
    };
    immutable("/spec/group", "spec.group");
    immutable("/spec/names/plural", "spec.names.plural");
    let established = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| s(c, "/type") == "Established" && s(c, "/status") == "True")
        });
    if established {
        immutable("/spec/scope", "spec.scope");
        immutable("/spec/names/kind", "spec.names.kind");
    }
    out
}

/// The names a CRD claims: (resource names, kind names), from its accepted
/// names when it has them, else from its spec.
fn claimed(crd: &Value) -> (Vec<String>, Vec<String>) {
    let names = match crd.pointer("/status/acceptedNames") {
        Some(n) if !s(n, "/plural").is_empty() => n,
        _ => crd.pointer("/spec/names").unwrap_or(&Value::Null),
    };
    let mut resources: Vec<String> = ["/plural", "/singular"]
        .iter()
        .map(|p| s(names, p).to_string())
        .collect();
    if let Some(short) = names.get("shortNames").and_then(Value::as_array) {
        resources.extend(short.iter().filter_map(Value::as_str).map(String::from));
    }
    let kinds = ["/kind", "/listKind"]
        .iter()
        .map(|p| s(names, p).to_string())
        .collect();
    (resources, kinds)
}

/// Names of `crd` already claimed by `others` (the accepted CRDs; `crd`
/// itself is skipped by `metadata.name`) in the same group, as the naming
/// controller decides: plural, singular and short names against every
/// resource name, kind and listKind against every kind. A name `crd`
/// has itself already accepted is never a conflict. Each conflict is a
/// Cause on the field (`spec.names.plural`, `spec.names.shortNames[1]`, …)
/// whose message is the NamesAccepted condition's (`"widgets" is already in use`).
pub fn name_conflicts(crd: &Value, others: &[Value]) -> Vec<Cause> {
    let group = s(crd, "/spec/group");
    let me = s(crd, "/metadata/name");
    let (mut resources, mut kinds) = (Vec::new(), Vec::new());
    for other in others {
        if s(other, "/spec/group") != group || (!me.is_empty() && s(other, "/metadata/name") == me)
        {
            continue;
        }
        let (r, k) = claimed(other);
        resources.extend(r);
        kinds.extend(k);
    }
    let accepted = crd.pointer("/status/acceptedNames").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    let mut check = |field: String, requested: &str, accepted: &str, used: &[String]| {
        if requested.is_empty() || requested == accepted || !used.iter().any(|u| u == requested) {
            return;
        }
        out.push(Cause {
            reason: "FieldValueDuplicate",
            message: format!("{requested:?} is already in use"),
            field,
        });
    };
    for k in ["plural", "singular"] {
        let p = format!("/spec/names/{k}");
        check(
            format!("spec.names.{k}"),
            s(crd, &p),
            s(accepted, &format!("/{k}")),
            &resources,
        );
    }
    let accepted_short: Vec<&str> = accepted
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(short) = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
    {
        for (i, name) in short.iter().enumerate() {
            let name = name.as_str().unwrap_or("");
            let own = if accepted_short.contains(&name) {
                name
            } else {
                ""
            };
            check(format!("spec.names.shortNames[{i}]"), name, own, &resources);
        }
    }
    for k in ["kind", "listKind"] {
        let p = format!("/spec/names/{k}");
        check(
            format!("spec.names.{k}"),
            s(crd, &p),
            s(accepted, &format!("/{k}")),
            &kinds,
        );
    }
    out
}

/// A version string as Kubernetes ranks them: `v<major>[(alpha|beta)<minor>]`.
fn parse_kube_version(v: &str) -> Option<(u64, u8, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.starts_with('0') {
        return None;
    }
    let major: u64 = rest[..digits].parse().ok()?;
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((major, 2, 0));
    }
    let (stage, num) = if let Some(n) = tail.strip_prefix("alpha") {
        (0, n)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (1, n)
    } else {
        return None;
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.starts_with('0') {
        return None;
    }
    Some((major, stage, num.parse().ok()?))
}

/// Kubernetes' priority order of CRD versions (`Greater` = preferred):
/// GA before beta before alpha, higher numbers first within each, then
/// every non-Kubernetes-like version in alphabetical order
/// (v10 > v2 > v1 > v11beta2 > v10beta3 > v3beta1 > v12alpha1 > v11alpha2 > foo1 > foo10).
pub fn version_priority_cmp(a: &str, b: &str) -> Ordering {
    match (parse_kube_version(a), parse_kube_version(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sa.cmp(&sb).then(ma.cmp(&mb)).then(na.cmp(&nb)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => b.cmp(a),
    }
}

/// CRDs from the Kubernetes documentation and tutorials, for tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::Value;

    /// The MarkdownView CRD of the kubebuilder-style tutorial.
    pub const MARKDOWN_VIEW: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: markdownviews.view.zoetrope.github.io
spec:
  group: view.zoetrope.github.io
  names:
    kind: MarkdownView
    listKind: MarkdownViewList
    plural: markdownviews
    singular: markdownview
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - jsonPath: .spec.replicas
      name: Replicas
      type: integer
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion:
            type: string
          kind:
            type: string
          metadata:
            type: object
          spec:
            type: object
            properties:
              markdowns:
                type: object
                additionalProperties:
                  type: string
              replicas:
                type: integer
                format: int32
                minimum: 1
                maximum: 5
                default: 1
              viewerImage:
                type: string
                default: "peaceiris/mdbook:latest"
            required:
            - markdowns
          status:
            type: string
            enum: ["NotReady", "Available", "Healthy"]
"#;

    /// The CronTab CRD of the Kubernetes documentation.
    pub const CRON_TAB: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                cronSpec:
                  type: string
                  pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
                image:
                  type: string
                replicas:
                  type: integer
                  minimum: 1
                  maximum: 10
      subresources:
        scale:
          specReplicasPath: .spec.replicas
          statusReplicasPath: .status.replicas
          labelSelectorPath: .status.labelSelector
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    listKind: CronTabList
    shortNames:
    - ct
"#;

    /// A fixture as JSON.
    pub fn load(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    /// The `openAPIV3Schema` of a fixture's first version.
    pub fn schema_of(yaml: &str) -> Value {
        load(yaml)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn the_documented_crds_are_valid() {
        assert_eq!(validate(&load(MARKDOWN_VIEW)), vec![]);
        assert_eq!(validate(&load(CRON_TAB)), vec![]);
    }

    #[test]
    fn the_name_must_be_plural_dot_group() {
        let mut crd = load(CRON_TAB);
        crd["metadata"]["name"] = json!("crontab.stable.example.com");
        let causes = validate(&crd);
        assert_eq!(fields(&causes), ["metadata.name"]);
        assert!(causes[0]
            .message
            .ends_with(r#"must be spec.names.plural+"."+spec.group"#));
    }

    #[test]
    fn a_group_without_a_dot_is_rejected() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["group"] = json!("stable");
        crd["metadata"]["name"] = json!("crontabs.stable");
        let causes = validate(&crd);
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "stable": should be a domain with at least one dot"#
        );
    }

    #[test]
    fn scope_and_names_follow_kubernetes_rules() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["scope"] = json!("Global");
        crd["spec"]["names"]["shortNames"] = json!(["CT"]);
        crd["spec"]["names"]["listKind"] = json!("CronTab");
        let causes = validate(&crd);
        assert!(causes.iter().any(|c| c.field == "spec.scope"
            && c.message
                == r#"Unsupported value: "Global": supported values: "Cluster", "Namespaced""#));
        assert!(fields(&causes).contains(&"spec.names.shortNames[0]"));
        assert!(causes.iter().any(|c| c.field == "spec.names.listKind"
            && c.message.ends_with("kind and listKind may not be the same")));
    }

    #[test]
    fn exactly_one_storage_version_with_unique_names_is_required() {
        let mut crd = load(CRON_TAB);
        let v = crd["spec"]["versions"][0].clone();
        crd["spec"]["versions"] = json!([v.clone(), v]);
        let causes = validate(&crd);
        let messages: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
        assert!(messages
            .iter()
            .any(|m| m.ends_with("must contain unique version names")));
        assert!(messages
            .iter()
            .any(|m| m.ends_with("must have exactly one version marked as storage version")));
    }

    #[test]
    fn every_version_needs_a_schema() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        assert_eq!(
            fields(&validate(&crd)),
            ["spec.versions[0].schema.openAPIV3Schema"]
        );
    }

    #[test]
    fn a_field_without_a_type_is_not_structural() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("type");
        let causes = validate(&crd);
        assert_eq!(
            fields(&causes),
            ["spec.versions[0].schema.openAPIV3Schema.properties[spec].type"]
        );
        assert_eq!(
            causes[0].message,
            "Required value: must not be empty for specified object fields"
        );
    }

    #[test]
    fn an_unknown_type_is_not_supported() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["image"]["type"] = json!("text");
        let causes = validate(&crd);
        assert!(causes.iter().any(|c| c.field
            == "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[image].type"
            && c.reason == "FieldValueNotSupported"));
    }

    #[test]
    fn properties_and_additional_properties_are_exclusive() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["additionalProperties"] = json!({"type": "string"});
        let causes = validate(&crd);
        assert!(causes.iter().any(|c| c.field
            == "spec.versions[0].schema.openAPIV3Schema.properties[spec].additionalProperties"
            && c.message == "Forbidden: additionalProperties and properties are mutual exclusive"));
    }

    #[test]
    fn metadata_may_only_restrict_name() {
        let mut crd = load(MARKDOWN_VIEW);
        let root = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        root["properties"]["metadata"]["properties"] =
            json!({"name": {"type": "string", "maxLength": 10}});
        assert_eq!(validate(&crd), vec![]);
        let root = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        root["properties"]["metadata"]["properties"]["labels"] = json!({"type": "object"});
        let causes = validate(&crd);
        assert_eq!(
            fields(&causes),
            ["spec.versions[0].schema.openAPIV3Schema.properties[metadata]"]
        );
    }

    #[test]
    fn arrays_need_items() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["tags"] = json!({"type": "array"});
        let causes = validate(&crd);
        assert_eq!(
            fields(&causes),
            ["spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[tags].items"]
        );
    }

    #[test]
    fn a_default_must_satisfy_its_own_schema() {
        let mut crd = load(MARKDOWN_VIEW);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["replicas"]["default"] = json!(9);
        let causes = validate(&crd);
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].default"
        );
        assert!(causes[0]
            .message
            .contains("should be less than or equal to 5"));
    }

    #[test]
    fn a_default_in_top_level_metadata_is_forbidden() {
        let mut crd = load(MARKDOWN_VIEW);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]
            ["default"] = json!({});
        let causes = validate(&crd);
        assert!(causes.iter().any(|c| c.field
            == "spec.versions[0].schema.openAPIV3Schema.properties[metadata].default"
            && c.message == "Forbidden: must not be set in top-level metadata"));
    }

    #[test]
    fn list_map_keys_must_be_required_scalar_properties() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["ports"] = json!({
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["port", "proto"],
            "items": {"type": "object", "required": ["port"], "properties": {
                "port": {"type": "integer"}, "proto": {"type": "object"}}}
        });
        let causes = validate(&crd);
        let base = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[ports]";
        assert!(fields(&causes).contains(&format!("{base}.items.properties[proto].type").as_str()));
        assert!(
            fields(&causes).contains(&format!("{base}.items.properties[proto].default").as_str())
        );
        assert!(
            !fields(&causes).contains(&format!("{base}.items.properties[port].default").as_str())
        );
    }

    #[test]
    fn scale_paths_must_point_under_spec_and_status() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
            json!(".replicas");
        crd["spec"]["versions"][0]["subresources"]["scale"]["statusReplicasPath"] =
            json!("status.replicas");
        let causes = validate(&crd);
        assert_eq!(causes.len(), 2);
        assert!(causes[0]
            .message
            .ends_with("should be a json path under .spec"));
        assert!(causes[1]
            .message
            .ends_with("must be a simple json path starting with ."));
    }

    #[test]
    fn printer_columns_need_a_known_type_and_a_json_path() {
        let mut crd = load(MARKDOWN_VIEW);
        crd["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "X", "type": "float"}]);
        let causes = validate(&crd);
        assert_eq!(
            fields(&causes),
            [
                "spec.versions[0].additionalPrinterColumns[0].type",
                "spec.versions[0].additionalPrinterColumns[0].JSONPath"
            ]
        );
    }

    #[test]
    fn webhook_conversion_is_not_supported_by_kaji() {
        let mut crd = load(CRON_TAB);
        crd["spec"]["conversion"] = json!({"strategy": "Webhook"});
        let causes = validate(&crd);
        assert_eq!(fields(&causes), ["spec.conversion.strategy"]);
        assert_eq!(causes[0].reason, "FieldValueNotSupported");
    }

    #[test]
    fn stored_versions_must_keep_the_storage_version() {
        let mut crd = load(CRON_TAB);
        crd["status"] = json!({"storedVersions": ["v0"]});
        let causes = validate(&crd);
        assert!(causes[0]
            .message
            .ends_with("must have the storage version v1"));
        assert_eq!(causes[1].field, "status.storedVersions[0]");
    }

    #[test]
    fn any_json_shape_gives_causes_not_panics() {
        for bad in [
            json!(null),
            json!(42),
            json!({"spec": []}),
            json!({"spec": {"versions": 3, "names": "x"}}),
            json!({"spec": {"versions": [7, {"name": 1, "schema": {"openAPIV3Schema": []}}]}}),
            json!({"spec": {"versions": [{"name": "v1", "storage": true, "schema": {"openAPIV3Schema":
                {"type": 5, "properties": {"a": 1, "b": {"items": [], "type": "array"}}, "required": "a"}}}]}}),
        ] {
            assert!(!validate(&bad).is_empty(), "{bad}");
            let _ = validate_update(&bad, &json!(null));
            let _ = name_conflicts(&bad, std::slice::from_ref(&bad));
        }
    }

    #[test]
    fn group_and_plural_are_immutable_and_kind_once_established() {
        let old = load(CRON_TAB);
        let mut new = old.clone();
        new["spec"]["group"] = json!("other.example.com");
        new["spec"]["names"]["kind"] = json!("CronTable");
        assert_eq!(fields(&validate_update(&new, &old)), ["spec.group"]);
        let mut established = old.clone();
        established["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
        assert_eq!(
            fields(&validate_update(&new, &established)),
            ["spec.group", "spec.names.kind"]
        );
    }

    #[test]
    fn names_taken_in_the_same_group_conflict() {
        let existing = load(CRON_TAB);
        let mut crd = load(CRON_TAB);
        crd["metadata"]["name"] = json!("crontabs2.stable.example.com");
        crd["spec"]["names"]["plural"] = json!("crontabs2");
        crd["spec"]["names"]["shortNames"] = json!(["ct2", "crontab"]);
        let causes = name_conflicts(&crd, std::slice::from_ref(&existing));
        assert_eq!(
            fields(&causes),
            [
                "spec.names.singular",
                "spec.names.shortNames[1]",
                "spec.names.kind",
                "spec.names.listKind"
            ]
        );
        assert_eq!(causes[0].message, r#""crontab" is already in use"#);
        let mut elsewhere = existing;
        elsewhere["spec"]["group"] = json!("other.example.com");
        assert!(name_conflicts(&crd, &[elsewhere]).is_empty());
    }

    #[test]
    fn versions_are_ordered_as_kubernetes_prefers_them() {
        let mut versions = vec![
            "foo10",
            "v11alpha2",
            "v1",
            "v3beta1",
            "foo1",
            "v12alpha1",
            "v2",
            "v10beta3",
            "v10",
            "v11beta2",
        ];
        versions.sort_by(|a, b| version_priority_cmp(b, a));
        assert_eq!(
            versions,
            [
                "v10",
                "v2",
                "v1",
                "v11beta2",
                "v10beta3",
                "v3beta1",
                "v12alpha1",
                "v11alpha2",
                "foo1",
                "foo10"
            ]
        );
    }
}
