//! Name, label, annotation, object-metadata and quantity validation as Kubernetes does it.
//!
//! Two layers, as in `k8s.io/apimachinery`: `is_*` functions return bare
//! messages (`Vec<String>`, empty when valid) and the others wrap them into
//! [`Cause`]s at a given field path, with Kubernetes' wording so that
//! `kubectl` prints the same text. Patterns are matched by small hand-written
//! parsers; the regexes quoted in the messages are the ones Kubernetes quotes.
//! Nothing here generates names or touches the clock: the caller supplies the
//! random characters for `generateName`.

use serde_json::{Map, Value};

use crate::error::Cause;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1123 / DNS-1035 label, qualified-name name part and label value.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Largest total size of an object's annotations (keys plus values), in bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Longest `generateName` prefix kept before the random suffix is appended.
pub const MAX_GENERATE_NAME_PREFIX: usize = 58;
/// Number of random characters appended to a `generateName` prefix.
pub const GENERATED_SUFFIX_LENGTH: usize = 5;
/// The characters Kubernetes draws generated-name suffixes from (no vowels,
/// no confusable digits).
pub const GENERATED_SUFFIX_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes' `MaxLenError`.
fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Kubernetes' `RegexError`, including its double space before "or".
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(e);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// Dot-separated DNS-1123 labels.
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Messages for a value that is not a DNS-1123 subdomain (object names, most resources).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Messages for a value that is not a DNS-1123 label (namespace names).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Messages for a value that is not a DNS-1035 label (service names).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !(matches_dns1123_label(value) && value.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Messages for a value that is not a qualified name: an optional DNS
/// subdomain prefix and `/`, then a name of at most 63 characters (label
/// and annotation keys, finalizers).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(DNS1123_LABEL_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Messages for a value that is not a label value (at most 63 characters,
/// may be empty).
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn causes(path: &str, value: &str, msgs: Vec<String>) -> Vec<Cause> {
    let shown = Value::String(value.to_string());
    msgs.into_iter()
        .map(|m| Cause::invalid(path, &shown, m))
        .collect()
}

/// `value` must be a DNS-1123 subdomain.
pub fn dns1123_subdomain(value: &str, path: &str) -> Vec<Cause> {
    causes(path, value, is_dns1123_subdomain(value))
}

/// `value` must be a DNS-1123 label.
pub fn dns1123_label(value: &str, path: &str) -> Vec<Cause> {
    causes(path, value, is_dns1123_label(value))
}

/// `value` must be a DNS-1035 label.
pub fn dns1035_label(value: &str, path: &str) -> Vec<Cause> {
    causes(path, value, is_dns1035_label(value))
}

/// `value` must be a qualified name.
pub fn qualified_name(value: &str, path: &str) -> Vec<Cause> {
    causes(path, value, is_qualified_name(value))
}

/// `value` must be a label value.
pub fn label_value(value: &str, path: &str) -> Vec<Cause> {
    causes(path, value, is_label_value(value))
}

// ---------------------------------------------------------------------------
// Object names
// ---------------------------------------------------------------------------

/// Replaces a trailing `-` of a `generateName` prefix, since random
/// characters will follow it.
///
/// # Caveats
/// Kubernetes' `maskTrailingDash` drops two characters before appending
/// `a`; we replace only the dash, which is what its comment intends. The
/// generated name is validated in full anyway.
fn mask_trailing_dash(name: &str, prefix: bool) -> std::borrow::Cow<'_, str> {
    match name.strip_suffix('-') {
        Some(head) if prefix && name.len() > 1 => format!("{head}a").into(),
        _ => name.into(),
    }
}

/// Names that are DNS-1123 subdomains (most resources). `prefix` is true for
/// a `generateName`. Usable as the name validator of [`object_meta`].
pub fn name_is_dns1123_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&mask_trailing_dash(name, prefix))
}

/// Names that are DNS-1123 labels (namespaces, nodes-like resources).
pub fn name_is_dns1123_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_label(&mask_trailing_dash(name, prefix))
}

/// Names that are DNS-1035 labels (services).
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1035_label(&mask_trailing_dash(name, prefix))
}

/// Names that only need to be a URL path segment (RBAC roles and bindings):
/// not `.` or `..`, no `/` or `%`.
pub fn name_is_path_segment(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if name == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// The name Kubernetes generates from `generateName`: the prefix cut to
/// [`MAX_GENERATE_NAME_PREFIX`] bytes, then the random characters (callers
/// pass [`GENERATED_SUFFIX_LENGTH`] characters from
/// [`GENERATED_SUFFIX_ALPHABET`]).
///
/// # Guarantees
/// Never splits a UTF-8 character: the cut moves back to a char boundary.
pub fn name_from_generate_name(prefix: &str, random5: &str) -> String {
    let mut end = prefix.len().min(MAX_GENERATE_NAME_PREFIX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{random5}", &prefix[..end])
}

// ---------------------------------------------------------------------------
// Labels, annotations, object metadata
// ---------------------------------------------------------------------------

fn required_because(path: impl Into<String>, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        message: format!("Required value: {detail}"),
        field: path.into(),
    }
}

fn too_long(path: impl Into<String>, max_bytes: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        message: format!("Too long: may not be more than {max_bytes} bytes"),
        field: path.into(),
    }
}

/// `metadata.labels`: keys are qualified names, values label values; every
/// cause carries `path` itself, as in Kubernetes.
pub fn labels(map: &Map<String, Value>, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    for (k, v) in map {
        out.extend(qualified_name(k, path));
        match v.as_str() {
            Some(s) => out.extend(label_value(s, path)),
            None => out.push(Cause::invalid(path, v, "label values must be strings")),
        }
    }
    out
}

/// `metadata.annotations`: keys are qualified names (case-insensitively) and
/// keys plus values total at most [`TOTAL_ANNOTATION_SIZE_LIMIT`] bytes.
pub fn annotations(map: &Map<String, Value>, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut total = 0usize;
    for (k, v) in map {
        let shown = Value::String(k.clone());
        for m in is_qualified_name(&k.to_lowercase()) {
            out.push(Cause::invalid(path, &shown, m));
        }
        match v.as_str() {
            Some(s) => total += k.len() + s.len(),
            None => out.push(Cause::invalid(path, v, "annotation values must be strings")),
        }
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        out.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    out
}

/// `metadata.finalizers`: qualified names; `orphan` and `foregroundDeletion`
/// may not both be set.
pub fn finalizers(list: &[Value], path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    for f in list {
        match f.as_str() {
            Some(s) => out.extend(qualified_name(s, path)),
            None => out.push(Cause::invalid(path, f, "finalizers must be strings")),
        }
    }
    let has = |name: &str| list.iter().any(|f| f.as_str() == Some(name));
    if has("orphan") && has("foregroundDeletion") {
        out.push(Cause::invalid(
            path,
            &Value::Array(list.to_vec()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    out
}

/// `metadata.ownerReferences`: apiVersion (with a version), kind, name and
/// uid are required; at most one reference has `controller: true`; a v1
/// Event may not own anything.
pub fn owner_references(list: &[Value], path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in list {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        let (group, version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => ("", *v),
            [g, v] => (*g, *v),
            _ => ("", ""),
        };
        if version.is_empty() {
            out.push(Cause::invalid(
                format!("{path}.apiVersion"),
                &Value::String(api_version.into()),
                "version must not be empty",
            ));
        }
        for field in ["kind", "name", "uid"] {
            if text(field).is_empty() {
                out.push(Cause::invalid(
                    format!("{path}.{field}"),
                    &Value::String(text(field).into()),
                    "must not be empty",
                ));
            }
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            out.push(Cause::invalid(
                path,
                r,
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{}", text("name"));
            match &first_controller {
                Some(first) => out.push(Cause::invalid(
                    path,
                    &Value::Array(list.to_vec()),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    out
}

/// A `metav1.LabelSelector` (`spec.selector` of workloads): `matchLabels` as
/// labels, each `matchExpressions[i]` with a known operator, values present
/// exactly for In/NotIn, a qualified-name key and label values.
pub fn label_selector(sel: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let obj = match sel {
        Value::Null => return out,
        Value::Object(o) => o,
        other => return vec![Cause::invalid(path, other, "must be an object")],
    };
    match obj.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => out.extend(labels(m, &format!("{path}.matchLabels"))),
        Some(other) => out.push(Cause::invalid(
            format!("{path}.matchLabels"),
            other,
            "must be an object",
        )),
    }
    let exprs = match obj.get("matchExpressions") {
        None | Some(Value::Null) => return out,
        Some(Value::Array(a)) => a,
        Some(other) => {
            out.push(Cause::invalid(
                format!("{path}.matchExpressions"),
                other,
                "must be an array",
            ));
            return out;
        }
    };
    for (i, e) in exprs.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = e.get("values").and_then(Value::as_array);
        let count = values.map_or(0, Vec::len);
        let op = e.get("operator").cloned().unwrap_or_default();
        match op.as_str() {
            Some("In" | "NotIn") if count == 0 => out.push(required_because(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Some("Exists" | "DoesNotExist") if count > 0 => out.push(Cause::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            _ => out.push(Cause::invalid(
                format!("{p}.operator"),
                &op,
                "not a valid selector operator",
            )),
        }
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        out.extend(qualified_name(key, &format!("{p}.key")));
        for (j, v) in values.into_iter().flatten().enumerate() {
            let vp = format!("{p}.values[{j}]");
            match v.as_str() {
                Some(s) => out.extend(label_value(s, &vp)),
                None => out.push(Cause::invalid(vp, v, "must be a string")),
            }
        }
    }
    out
}

fn string_field<'a>(meta: &'a Map<String, Value>, key: &str, out: &mut Vec<Cause>) -> &'a str {
    match meta.get(key) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(other) => {
            out.push(Cause::invalid(
                format!("metadata.{key}"),
                other,
                "must be a string",
            ));
            ""
        }
    }
}

/// Validates an object's `metadata` as Kubernetes' `ValidateObjectMeta`:
/// name (or generateName) with `name_validator` (see [`name_is_dns1123_subdomain`]
/// and siblings; its second argument says whether it checks a prefix),
/// namespace present iff `namespaced` (and a DNS-1123 label), non-negative
/// generation, labels, annotations, ownerReferences and finalizers. Fields
/// are reported under `metadata.`.
///
/// # Caveats
/// Call it after the server has generated a name from `generateName`: a
/// missing name is reported as `name or generateName is required`.
pub fn object_meta(
    meta: &Value,
    namespaced: bool,
    name_validator: impl Fn(&str, bool) -> Vec<String>,
) -> Vec<Cause> {
    let empty = Map::new();
    let meta = meta.as_object().unwrap_or(&empty);
    let mut out = Vec::new();

    let generate_name = string_field(meta, "generateName", &mut out);
    if !generate_name.is_empty() {
        out.extend(causes(
            "metadata.generateName",
            generate_name,
            name_validator(generate_name, true),
        ));
    }
    let name = string_field(meta, "name", &mut out);
    if name.is_empty() {
        out.push(required_because(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        out.extend(causes("metadata.name", name, name_validator(name, false)));
    }

    let namespace = string_field(meta, "namespace", &mut out);
    if namespaced {
        if namespace.is_empty() {
            out.push(Cause::required("metadata.namespace"));
        } else {
            out.extend(causes(
                "metadata.namespace",
                namespace,
                name_is_dns1123_label(namespace, false),
            ));
        }
    } else if !namespace.is_empty() {
        out.push(Cause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }

    if let Some(g) = meta.get("generation") {
        if g.as_i64().is_some_and(|g| g < 0) {
            out.push(Cause::invalid(
                "metadata.generation",
                g,
                "must be greater than or equal to 0",
            ));
        }
    }

    for (key, check) in [
        (
            "labels",
            labels as fn(&Map<String, Value>, &str) -> Vec<Cause>,
        ),
        ("annotations", annotations),
    ] {
        match meta.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => out.extend(check(m, &format!("metadata.{key}"))),
            Some(other) => out.push(Cause::invalid(
                format!("metadata.{key}"),
                other,
                "must be an object",
            )),
        }
    }
    for (key, check) in [
        (
            "ownerReferences",
            owner_references as fn(&[Value], &str) -> Vec<Cause>,
        ),
        ("finalizers", finalizers),
    ] {
        match meta.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => out.extend(check(a, &format!("metadata.{key}"))),
            Some(other) => out.push(Cause::invalid(
                format!("metadata.{key}"),
                other,
                "must be an array",
            )),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------

/// Why a resource quantity could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not have the shape of a quantity (Kubernetes' `ErrFormatWrong`).
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The suffix is not one Kubernetes knows (`ErrSuffix`), e.g. `1K` or `1ki`.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// There are no digits (`ErrNumeric`), e.g. `m` or `.`.
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// The value does not fit in 128 bits of nano-units (about ±1.7e29).
    #[error("quantity is too large")]
    OutOfRange,
}

/// A resource quantity as a count of nano-units, so that quantities compare
/// with `<`, `==` and `>` whatever suffix they were written with
/// (`1Gi == 1073741824`, `500m < 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// The quantity with this many nano-units.
    pub fn from_nanos(nanos: i128) -> Self {
        Quantity { nanos }
    }

    /// The value in nano-units (10⁻⁹).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in milli-units, rounded away from zero (Kubernetes' `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        div_away_from_zero(self.nanos, 1_000_000)
    }

    /// The value in units, rounded away from zero (Kubernetes' `Value`).
    pub fn value(&self) -> i128 {
        div_away_from_zero(self.nanos, 1_000_000_000)
    }

    /// True for values below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else {
        q + n.signum()
    }
}

/// `(binary exponent, decimal exponent)` of a suffix.
fn suffix_exponents(s: &str) -> Option<(u32, i64)> {
    Some(match s {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        _ => {
            let exp = s.strip_prefix(['e', 'E'])?;
            (0, i64::from(exp.parse::<i32>().ok()?))
        }
    })
}

/// Parses a Kubernetes resource quantity: `128974848`, `129e6`, `129M`,
/// `123Mi`, `100m`, `0.5`, `1.5Gi`, `+1`, `-2k`.
///
/// # Caveats
/// Precision below one nano-unit is rounded away from zero, as Kubernetes
/// does. A bare sign (`-`) parses as zero, as in Kubernetes.
///
/// # Errors
/// [`QuantityError`] with Kubernetes' messages; [`QuantityError::OutOfRange`]
/// beyond about ±1.7e29 units (Kubernetes accepts those, we do not).
pub fn quantity(s: &str) -> Result<Quantity, QuantityError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QuantityError::Format);
    }
    let digits_from = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let negative = b[0] == b'-';
    let mut pos = usize::from(matches!(b[0], b'-' | b'+'));
    if pos == b.len() {
        return Ok(Quantity::default());
    }
    let int_end = digits_from(pos);
    let int = &s[pos..int_end];
    pos = int_end;
    let mut frac = "";
    if b.get(pos) == Some(&b'.') {
        let frac_end = digits_from(pos + 1);
        frac = &s[pos + 1..frac_end];
        pos = frac_end;
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'+' | b'-') {
        pos += 1;
    }
    if digits_from(pos) != b.len() {
        return Err(QuantityError::Format);
    }
    let (exp2, exp10) = suffix_exponents(&s[suffix_start..]).ok_or(QuantityError::Suffix)?;
    if int.is_empty() && frac.is_empty() {
        return Err(QuantityError::Numeric);
    }

    // value = digits × 2^exp2 × 10^e10 nano-units
    let mut digits = format!("{int}{frac}");
    let mut e10 = exp10 - frac.len() as i64 + 9;
    while digits.ends_with('0') {
        digits.pop();
        e10 += 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Quantity::default());
    }
    if digits.len() > 38 {
        return Err(QuantityError::OutOfRange);
    }
    let mantissa: i128 = digits.parse().map_err(|_| QuantityError::Numeric)?;
    let scaled = mantissa
        .checked_mul(1i128 << exp2)
        .ok_or(QuantityError::OutOfRange)?;
    let magnitude = if e10 >= 0 {
        u32::try_from(e10)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .and_then(|p| scaled.checked_mul(p))
            .ok_or(QuantityError::OutOfRange)?
    } else {
        match u32::try_from(-e10).ok().and_then(|e| 10i128.checked_pow(e)) {
            Some(div) => div_away_from_zero(scaled, div),
            // 10^n exceeds i128, so 0 < value < 1 nano: round up.
            None => 1,
        }
    };
    Ok(Quantity::from_nanos(if negative {
        -magnitude
    } else {
        magnitude
    }))
}

fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A container's `resources` (`limits`, `requests`): every quantity parses
/// and is non-negative, and each request is at most its limit
/// (`must be less than or equal to cpu limit of 500m`). `path` is e.g.
/// `spec.containers[0].resources`.
pub fn resource_requirements(resources: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut parsed = |section: &str| -> Vec<(String, String, Quantity)> {
        let mut list = Vec::new();
        let Some(map) = resources.get(section).and_then(Value::as_object) else {
            return list;
        };
        for (name, v) in map {
            let p = format!("{path}.{section}[{name}]");
            let Some(text) = quantity_text(v) else {
                out.push(Cause::invalid(p, v, "must be a quantity"));
                continue;
            };
            match quantity(&text) {
                Err(e) => out.push(Cause::invalid(p, v, e.to_string())),
                Ok(q) if q.is_negative() => out.push(Cause::invalid(
                    p,
                    &Value::String(text),
                    "must be greater than or equal to 0",
                )),
                Ok(q) => list.push((name.clone(), text, q)),
            }
        }
        list
    };
    let limits = parsed("limits");
    let requests = parsed("requests");
    for (name, text, q) in &requests {
        if let Some((_, limit_text, limit)) = limits.iter().find(|(n, _, _)| n == name) {
            if q > limit {
                out.push(Cause::invalid(
                    format!("{path}.requests[{name}]"),
                    &Value::String(text.clone()),
                    format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn subdomains_accept_dotted_lowercase_names() {
        for ok in ["a", "example.com", "a-b.c-d", "1.2.3", &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", ".a", "a.", "a_b", "ü"] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn subdomain_errors_quote_the_kubernetes_message_and_regex() {
        let c = dns1123_subdomain("Bad_Name", "metadata.name");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "metadata.name");
        assert_eq!(c[0].reason, "FieldValueInvalid");
        assert_eq!(
            c[0].message,
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
    }

    #[test]
    fn overlong_subdomains_report_length_and_pattern_separately() {
        let long = "a".repeat(254);
        assert_eq!(
            is_dns1123_subdomain(&long),
            vec!["must be no more than 253 characters"]
        );
        assert_eq!(is_dns1123_subdomain(&format!("{long}-")).len(), 2);
    }

    #[test]
    fn labels_allow_63_characters_and_no_dots() {
        assert!(is_dns1123_label(&"a".repeat(63)).is_empty());
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("A"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
    }

    #[test]
    fn dns1035_labels_must_start_with_a_letter() {
        assert!(is_dns1035_label("web-1").is_empty());
        let e = is_dns1035_label("1web");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"));
        assert!(e[0].contains("(e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"));
        assert!(!is_dns1035_label("").is_empty());
    }

    #[test]
    fn qualified_names_take_an_optional_subdomain_prefix() {
        for ok in [
            "app",
            "App_1.x-y",
            "app.kubernetes.io/name",
            "example.com/MyName",
            "a/B",
        ] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert!(is_qualified_name("Example.com/a")[0]
            .starts_with("prefix part a lowercase RFC 1123 subdomain"));
        let e = is_qualified_name("a/");
        assert_eq!(e[0], "name part must be non-empty");
        assert!(
            e[1].starts_with("name part must consist of alphanumeric characters, '-', '_' or '.'")
        );
        assert!(is_qualified_name(&"a".repeat(64))[0]
            .starts_with("name part must be no more than 63 characters"));
        assert!(is_qualified_name("-a")[0].contains("(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
        let e = is_qualified_name("a/b/c");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a qualified name must consist of"));
        assert!(e[0].ends_with(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        assert!(is_label_value("").is_empty());
        assert!(is_label_value("My_value-1.2").is_empty());
        assert!(is_label_value("a b")[0].starts_with(
            "a valid label must be an empty string or consist of alphanumeric characters"
        ));
        assert!(is_label_value("_a")[0].ends_with(
            "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ));
        assert_eq!(
            is_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn labels_report_bad_keys_and_values_at_the_map_path() {
        let m = json!({"ok": "fine", "-bad": "x", "k": "-v", "n": 1});
        let c = labels(m.as_object().unwrap(), "metadata.labels");
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.field == "metadata.labels"));
        assert!(c[0]
            .message
            .starts_with("Invalid value: \"-bad\": name part must consist"));
        assert!(c[1]
            .message
            .starts_with("Invalid value: \"-v\": a valid label must be"));
    }

    #[test]
    fn annotations_ignore_case_in_keys_but_limit_total_size() {
        let m = json!({"Example.COM/Key": "v", "a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)});
        let c = annotations(m.as_object().unwrap(), "metadata.annotations");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reason, "FieldValueTooLong");
        assert_eq!(c[0].message, "Too long: may not be more than 262144 bytes");
        let m = json!({"bad key": "v"});
        assert!(
            annotations(m.as_object().unwrap(), "metadata.annotations")[0]
                .message
                .contains("name part must consist")
        );
    }

    #[test]
    fn generated_names_cut_the_prefix_to_58_characters() {
        assert_eq!(name_from_generate_name("web-", "x7k2p"), "web-x7k2p");
        let long = "a".repeat(70);
        let n = name_from_generate_name(&long, "bcdfg");
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("abcdfg"));
        let n = name_from_generate_name(&format!("{}é", "a".repeat(57)), "bcdfg");
        assert_eq!(n, format!("{}bcdfg", "a".repeat(57)));
    }

    #[test]
    fn generate_name_prefixes_may_end_with_a_dash() {
        assert!(name_is_dns1123_subdomain("web-", true).is_empty());
        assert!(!name_is_dns1123_subdomain("web-", false).is_empty());
        assert!(name_is_dns1035_label("svc-", true).is_empty());
        assert!(!name_is_dns1123_label("-", true).is_empty());
    }

    #[test]
    fn path_segment_names_forbid_dots_slashes_and_percent() {
        assert!(name_is_path_segment("system:admin", false).is_empty());
        assert_eq!(name_is_path_segment("..", false), vec!["may not be '..'"]);
        assert_eq!(
            name_is_path_segment("a/b%", false),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn object_meta_accepts_a_well_formed_namespaced_object() {
        let meta = json!({
            "name": "web", "namespace": "default", "generation": 3,
            "labels": {"app.kubernetes.io/name": "web"},
            "annotations": {"note": "anything goes"},
            "finalizers": ["example.com/cleanup"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]
        });
        assert_eq!(object_meta(&meta, true, name_is_dns1123_subdomain), vec![]);
    }

    #[test]
    fn object_meta_requires_a_name() {
        let c = object_meta(
            &json!({"namespace": "default"}),
            true,
            name_is_dns1123_subdomain,
        );
        assert_eq!(
            messages(&c),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert_eq!(c[0].reason, "FieldValueRequired");
    }

    #[test]
    fn object_meta_validates_generate_name_as_a_prefix() {
        let c = object_meta(
            &json!({"generateName": "Web-", "name": "web-abcde"}),
            false,
            name_is_dns1123_subdomain,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "metadata.generateName");
        assert!(c[0]
            .message
            .starts_with("Invalid value: \"Web-\": a lowercase RFC 1123 subdomain"));
    }

    #[test]
    fn object_meta_checks_namespace_against_scope() {
        let c = object_meta(&json!({"name": "a"}), true, name_is_dns1123_subdomain);
        assert_eq!(messages(&c), vec!["metadata.namespace: Required value"]);
        let c = object_meta(
            &json!({"name": "a", "namespace": "x"}),
            false,
            name_is_dns1123_subdomain,
        );
        assert_eq!(
            messages(&c),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let c = object_meta(
            &json!({"name": "a", "namespace": "a.b"}),
            true,
            name_is_dns1123_subdomain,
        );
        assert_eq!(
            messages(&c),
            vec!["metadata.namespace: Invalid value: \"a.b\": must not contain dots"]
        );
    }

    #[test]
    fn object_meta_reports_labels_annotations_and_generation() {
        let c = object_meta(
            &json!({"name": "a", "generation": -1, "labels": {"a": "b c"}, "annotations": {"/x": "y"}}),
            false,
            name_is_dns1123_subdomain,
        );
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.generation",
                "metadata.labels",
                "metadata.annotations"
            ]
        );
        assert!(c[0].message.ends_with("must be greater than or equal to 0"));
    }

    #[test]
    fn owner_references_need_every_identifying_field() {
        let c = owner_references(
            &[json!({"apiVersion": "apps/"})],
            "metadata.ownerReferences",
        );
        assert_eq!(
            messages(&c),
            vec![
                "metadata.ownerReferences.apiVersion: Invalid value: \"apps/\": version must not be empty",
                "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
            ]
        );
    }

    #[test]
    fn owner_references_allow_only_one_controller() {
        let r = |name: &str| json!({"apiVersion": "v1", "kind": "Pod", "name": name, "uid": name, "controller": true});
        let c = owner_references(&[r("a"), r("b")], "metadata.ownerReferences");
        assert_eq!(c.len(), 1);
        assert!(c[0].message.ends_with("Only one reference can have Controller set to true. Found \"true\" in references for Pod/a and Pod/b"));
        let e = json!({"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"});
        assert!(owner_references(&[e], "p")[0]
            .message
            .ends_with("/v1, Kind=Event is disallowed from being an owner"));
    }

    #[test]
    fn finalizers_must_be_qualified_and_not_orphan_and_foreground() {
        assert!(finalizers(
            &[json!("kubernetes"), json!("a.io/b")],
            "metadata.finalizers"
        )
        .is_empty());
        assert!(finalizers(&[json!("a b")], "f")[0]
            .message
            .contains("name part must consist"));
        let c = finalizers(&[json!("orphan"), json!("foregroundDeletion")], "f");
        assert!(c[0]
            .message
            .ends_with("finalizer orphan and foregroundDeletion cannot be both set"));
    }

    #[test]
    fn label_selector_validation_matches_kubernetes_wording() {
        let sel = json!({
            "matchLabels": {"app": "-x"},
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["v"]},
                {"key": "c", "operator": "Gt", "values": ["1"]},
                {"key": "-d", "operator": "NotIn", "values": ["ok", "-no"]}
            ]
        });
        let c = label_selector(&sel, "spec.selector");
        assert_eq!(
            messages(&c)[..4],
            [
                "spec.selector.matchLabels: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string(),
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".to_string(),
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator".to_string(),
            ]
        );
        assert_eq!(c[4].field, "spec.selector.matchExpressions[3].key");
        assert_eq!(c[5].field, "spec.selector.matchExpressions[3].values[1]");
        assert_eq!(c.len(), 6);
        assert!(label_selector(&Value::Null, "s").is_empty());
    }

    fn nanos(s: &str) -> i128 {
        quantity(s).unwrap().nanos()
    }

    #[test]
    fn quantities_parse_every_kubernetes_notation() {
        const G: i128 = 1_000_000_000;
        assert_eq!(nanos("100m"), G / 10);
        assert_eq!(nanos("0.5"), G / 2);
        assert_eq!(nanos(".5"), G / 2);
        assert_eq!(nanos("1."), G);
        assert_eq!(nanos("1e3"), 1000 * G);
        assert_eq!(nanos("1E3"), 1000 * G);
        assert_eq!(nanos("1e-3"), G / 1000);
        assert_eq!(nanos("128974848"), 128_974_848 * G);
        assert_eq!(nanos("129e6"), 129_000_000 * G);
        assert_eq!(nanos("129M"), 129_000_000 * G);
        assert_eq!(nanos("123Mi"), 123 * (1 << 20) * G);
        assert_eq!(nanos("1Gi"), (1 << 30) * G);
        assert_eq!(nanos("1.5Gi"), 3 * (1 << 29) * G);
        assert_eq!(nanos("1Ei"), (1 << 60) * G);
        assert_eq!(nanos("1E"), 1_000_000_000_000_000_000 * G);
        assert_eq!(nanos("5n"), 5);
        assert_eq!(nanos("7u"), 7000);
        assert_eq!(nanos("+2k"), 2000 * G);
        assert_eq!(nanos("-2k"), -2000 * G);
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("000"), 0);
        assert_eq!(nanos("0.000"), 0);
        assert_eq!(nanos("1.000000000000000000000000000000000000000000"), G);
    }

    #[test]
    fn quantities_compare_across_suffixes() {
        assert!(quantity("500m").unwrap() < quantity("1").unwrap());
        assert_eq!(quantity("1Gi").unwrap(), quantity("1073741824").unwrap());
        assert_eq!(quantity("1000m").unwrap(), quantity("1").unwrap());
        assert!(quantity("129M").unwrap() > quantity("123Mi").unwrap());
        assert_eq!(quantity("1500m").unwrap().value(), 2);
        assert_eq!(quantity("1n").unwrap().milli_value(), 1);
        assert_eq!(quantity("-1n").unwrap().milli_value(), -1);
    }

    #[test]
    fn sub_nano_precision_rounds_up() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1.5n"), 2);
        assert_eq!(nanos("-1.5n"), -2);
        assert_eq!(nanos("1e-60"), 1);
    }

    #[test]
    fn malformed_quantities_report_kubernetes_errors() {
        for bad in ["", "abc", "1KB", "1.5.5", "1 ", "1Mi3x"] {
            assert_eq!(quantity(bad), Err(QuantityError::Format), "{bad}");
        }
        for bad in ["1K", "1ki", "1e", "1m3", "1iM"] {
            assert_eq!(quantity(bad), Err(QuantityError::Suffix), "{bad}");
        }
        for bad in ["m", ".", "-m", "Mi"] {
            assert_eq!(quantity(bad), Err(QuantityError::Numeric), "{bad}");
        }
        assert_eq!(quantity("1e40"), Err(QuantityError::OutOfRange));
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(
            QuantityError::Suffix.to_string(),
            "unable to parse quantity's suffix"
        );
    }

    #[test]
    fn a_bare_sign_is_zero_as_in_kubernetes() {
        assert_eq!(nanos("-"), 0);
        assert_eq!(nanos("+"), 0);
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let r = json!({"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": 1, "memory": "512Mi"}});
        let c = resource_requirements(&r, "spec.containers[0].resources");
        assert_eq!(
            messages(&c),
            vec!["spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"]
        );
        let r = json!({"requests": {"cpu": "-1", "memory": "lots"}});
        let c = resource_requirements(&r, "r");
        assert_eq!(c.len(), 2);
        assert!(c[0].message.ends_with("must be greater than or equal to 0"));
        assert!(c[1]
            .message
            .contains("quantities must match the regular expression"));
        assert!(resource_requirements(
            &json!({"limits": {"cpu": 0.5}, "requests": {"cpu": "500m"}}),
            "r"
        )
        .is_empty());
    }
}
