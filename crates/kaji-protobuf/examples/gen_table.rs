//! Regenerates `src/table.rs`, the wire schema of every built-in kind.
//!
//! Run from the workspace root after `cargo fetch`:
//!
//! ```text
//! cargo run -p kaji-protobuf --example gen_table
//! ```
//!
//! It reads two crates' sources from the cargo registry (override with the
//! `K8S_PB_SRC` and `K8S_OPENAPI_SRC` environment variables, each the crate's
//! `src` directory):
//!
//! * `k8s-pb` 0.9 (prost-generated): every message's fields, tags, wire types
//!   and field types;
//! * `k8s-openapi` 0.29 (its newest `v1_NN` module): the JSON name of every field (from its serde
//!   `Deserialize` impl) and the `apiVersion`/`kind` of every top-level type.
//!
//! A protobuf field is matched to the JSON name that equals it once both are
//! lower-cased without underscores (`host_ipc` ↔ `hostIPC`), never by
//! converting case, which is ambiguous. A message field with no JSON name whose
//! own fields all appear in the parent's JSON is a Go embedded struct and is
//! emitted as `Kind::Inline` (`Volume.volumeSource`, `Probe.handler`, ...).
//! Anything that cannot be matched is reported on stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Messages with a hand-written JSON form, keyed by `module::Name`.
const SPECIAL: &[(&str, &str)] = &[
    ("apimachinery/pkg/apis/meta/v1::Time", "Time"),
    ("apimachinery/pkg/apis/meta/v1::MicroTime", "MicroTime"),
    ("apimachinery/pkg/apis/meta/v1::Duration", "Duration"),
    ("apimachinery/pkg/apis/meta/v1::FieldsV1", "FieldsV1"),
    ("apimachinery/pkg/api/resource::Quantity", "Quantity"),
    ("apimachinery/pkg/util/intstr::IntOrString", "IntOrString"),
    ("apimachinery/pkg/runtime::RawExtension", "RawExtension"),
];

/// API groups left out: their JSON is not a plain mapping of the protobuf
/// (`JSONSchemaProps` and friends marshal by hand).
const EXCLUDED_MODULES: &[&str] = &["apiextensions_apiserver/"];

/// Kinds accepted under every apiVersion (Go registers them in each group).
const ANY_VERSION_KINDS: &[(&str, &str)] = &[("apimachinery/pkg/apis/meta/v1", "DeleteOptions")];

#[derive(Debug, Clone)]
struct PbField {
    name: String,
    tag: u32,
    scalar: String,
    label: &'static str,
    type_path: Option<(String, String)>,
}

#[derive(Debug, Default)]
struct PbMessage {
    fields: Vec<PbField>,
}

type Key = (String, String);

fn main() {
    let pb_src = locate("K8S_PB_SRC", "k8s-pb-0.9.");
    let oa_root = locate("K8S_OPENAPI_SRC", "k8s-openapi-0.29.");
    // The newest Kubernetes version k8s-openapi carries: k8s-pb tracks recent releases.
    let oa_src = std::fs::read_dir(&oa_root)
        .expect("k8s-openapi src")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("v1_"))
        })
        .max_by_key(|p| {
            p.file_name()
                .and_then(|n| n.to_str()?.strip_prefix("v1_")?.parse::<u32>().ok())
        })
        .expect("a v1_NN directory");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/table.rs");

    let mut messages: BTreeMap<Key, PbMessage> = BTreeMap::new();
    for file in rs_files(&pb_src) {
        let module = module_of(&pb_src, &file);
        parse_pb(
            &module,
            &std::fs::read_to_string(&file).expect("read"),
            &mut messages,
        );
    }
    let mut json_names: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut kinds: Vec<(String, String, Key)> = Vec::new();
    for file in rs_files(&oa_src) {
        let module = module_of(&oa_src, &file);
        parse_openapi(
            &module,
            &std::fs::read_to_string(&file).expect("read"),
            &mut json_names,
            &mut kinds,
        );
    }

    // Roots: every top-level kind with a protobuf message, plus its list.
    let mut roots: Vec<(String, String, Key)> = Vec::new();
    for (api_version, kind, key) in &kinds {
        if !messages.contains_key(key) || EXCLUDED_MODULES.iter().any(|m| key.0.starts_with(m)) {
            continue;
        }
        roots.push((api_version.clone(), kind.clone(), key.clone()));
        let list = (key.0.clone(), format!("{}List", key.1));
        if messages.contains_key(&list) {
            roots.push((api_version.clone(), format!("{kind}List"), list));
        }
    }
    roots.sort();
    roots.dedup();

    let specials: BTreeMap<Key, &str> = SPECIAL.iter().map(|(p, k)| (split_key(p), *k)).collect();
    let mut wanted: BTreeSet<Key> = BTreeSet::new();
    let mut stack: Vec<Key> = roots.iter().map(|r| r.2.clone()).collect();
    stack.extend(
        ANY_VERSION_KINDS
            .iter()
            .map(|(m, n)| (m.to_string(), n.to_string())),
    );
    while let Some(key) = stack.pop() {
        if specials.contains_key(&key) || !wanted.insert(key.clone()) {
            continue;
        }
        let msg = messages
            .get(&key)
            .unwrap_or_else(|| panic!("missing message {key:?}"));
        for f in &msg.fields {
            if let Some(t) = &f.type_path {
                stack.push(t.clone());
            }
        }
    }

    // k8s-openapi spells acronyms in type names (`HTTPGetAction`), prost does not.
    let by_norm: BTreeMap<Key, &Vec<String>> = json_names
        .iter()
        .map(|((m, n), v)| ((m.clone(), norm(n)), v))
        .collect();
    let mut names: BTreeMap<Key, Vec<String>> = wanted
        .iter()
        .filter_map(|k| {
            by_norm
                .get(&(k.0.clone(), norm(&k.1)))
                .map(|v| (k.clone(), (*v).clone()))
        })
        .collect();
    // Go embedded structs (`VolumeSource`, `ProbeHandler`, ...) have no type of their own in
    // k8s-openapi: they take their JSON names from a parent that inlines them.
    loop {
        let mut learned = Vec::new();
        for key in &wanted {
            let Some(parent) = names.get(key) else {
                continue;
            };
            for f in &messages[key].fields {
                let Some(t) = &f.type_path else { continue };
                if names.contains_key(t) || specials.contains_key(t) {
                    continue;
                }
                if !parent.iter().any(|n| norm(n) == norm(&f.name))
                    && is_embedded(t, parent, &messages, &names)
                {
                    learned.push((t.clone(), parent.clone()));
                }
            }
        }
        if learned.is_empty() {
            break;
        }
        names.extend(learned);
    }

    let mut body = String::new();
    let mut warnings = Vec::new();
    for key in &wanted {
        let msg = &messages[key];
        if is_string_list(msg, names.contains_key(key)) {
            continue;
        }
        let own_names = names.get(key);
        let is_list = key.1.ends_with("List")
            && msg
                .fields
                .iter()
                .all(|f| f.name == "metadata" || f.name == "items");
        if own_names.is_none() && !is_list {
            warnings.push(format!(
                "{}::{}: no k8s-openapi type; field names converted to lowerCamelCase",
                key.0, key.1
            ));
        }
        let mut fields = msg.fields.clone();
        fields.sort_by_key(|f| f.tag);
        writeln!(
            body,
            "pub(crate) static {}: Message = Message {{",
            static_name(key)
        )
        .unwrap();
        writeln!(body, "    name: \"{}\",", go_name(key)).unwrap();
        writeln!(body, "    fields: &[").unwrap();
        for f in &fields {
            let (json, inline) = match own_names {
                Some(own) => match own.iter().find(|n| norm(n) == norm(&f.name)) {
                    Some(n) => (n.clone(), false),
                    None => {
                        let embedded = f
                            .type_path
                            .as_ref()
                            .is_some_and(|t| is_embedded(t, own, &messages, &names));
                        if !embedded {
                            warnings.push(format!(
                                "{}::{}.{}: no JSON name; using lowerCamelCase",
                                key.0, key.1, f.name
                            ));
                        }
                        (lower_camel(&f.name), embedded)
                    }
                },
                None => (lower_camel(&f.name), false),
            };
            let kind = kind_expr(f, inline, &specials, &messages, &json_names);
            writeln!(
                body,
                "        Field {{ tag: {}, json: \"{}\", kind: {}, label: Label::{} }},",
                f.tag, json, kind, f.label
            )
            .unwrap();
        }
        writeln!(body, "    ],\n}};").unwrap();
    }

    let mut out_text = String::new();
    out_text.push_str(
        "//! The wire schema of every built-in kind: @generated by `examples/gen_table.rs` from the\n\
         //! `k8s-pb` 0.9 and `k8s-openapi` 0.29 sources. Do not edit by hand: rerun the\n\
         //! generator.\n\n\
         use crate::schema::{Field, Kind, Label, Message};\n\n",
    );
    out_text.push_str(
        "/// `(apiVersion, kind, message)` of every kind this crate can decode and encode.\n",
    );
    out_text.push_str("pub(crate) static KINDS: &[(&str, &str, &Message)] = &[\n");
    for (api_version, kind, key) in &roots {
        writeln!(
            out_text,
            "    (\"{api_version}\", \"{kind}\", &{}),",
            static_name(key)
        )
        .unwrap();
    }
    out_text.push_str("];\n\n");
    out_text.push_str(
        "/// Kinds accepted under any apiVersion, as Go registers them in every group.\n",
    );
    out_text.push_str("pub(crate) static ANY_VERSION_KINDS: &[(&str, &Message)] = &[\n");
    for (m, n) in ANY_VERSION_KINDS {
        writeln!(
            out_text,
            "    (\"{n}\", &{}),",
            static_name(&(m.to_string(), n.to_string()))
        )
        .unwrap();
    }
    out_text.push_str("];\n\n");
    out_text.push_str(&body);
    std::fs::write(&out, out_text).expect("write table.rs");
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "wrote {} ({} kinds, {} messages)",
        out.display(),
        roots.len(),
        wanted.len()
    );
}

/// Whether message `child` is a Go struct embedded in a parent whose JSON names are `parent`:
/// every field of `child` (flattening its own embedded structs) is among them.
fn is_embedded(
    child: &Key,
    parent: &[String],
    messages: &BTreeMap<Key, PbMessage>,
    names: &BTreeMap<Key, Vec<String>>,
) -> bool {
    fn flat(
        key: &Key,
        messages: &BTreeMap<Key, PbMessage>,
        names: &BTreeMap<Key, Vec<String>>,
        out: &mut Vec<String>,
    ) {
        let Some(m) = messages.get(key) else { return };
        for f in &m.fields {
            let own = names
                .get(key)
                .is_none_or(|n| n.iter().any(|n| norm(n) == norm(&f.name)));
            match &f.type_path {
                Some(t) if !own => flat(t, messages, names, out),
                _ => out.push(norm(&f.name)),
            }
        }
    }
    let mut fields = Vec::new();
    flat(child, messages, names, &mut fields);
    !fields.is_empty() && fields.iter().all(|c| parent.iter().any(|n| norm(n) == *c))
}

fn is_string_list(m: &PbMessage, has_json_type: bool) -> bool {
    !has_json_type
        && m.fields.len() == 1
        && m.fields[0].name == "items"
        && m.fields[0].scalar == "string"
        && m.fields[0].label == "Repeated"
}

fn kind_expr(
    f: &PbField,
    inline: bool,
    specials: &BTreeMap<Key, &str>,
    messages: &BTreeMap<Key, PbMessage>,
    json_names: &BTreeMap<Key, Vec<String>>,
) -> String {
    let Some(t) = &f.type_path else {
        return match f.scalar.as_str() {
            "string" => "Kind::String",
            "bool" => "Kind::Bool",
            "int32" => "Kind::Int32",
            "int64" => "Kind::Int64",
            "double" => "Kind::Double",
            "bytes" => "Kind::Bytes",
            other => panic!("unknown scalar {other} in {f:?}"),
        }
        .to_string();
    };
    if let Some(special) = specials.get(t) {
        return format!("Kind::{special}");
    }
    let m = &messages[t];
    if is_string_list(
        m,
        json_names
            .keys()
            .any(|k| k.0 == t.0 && norm(&k.1) == norm(&t.1)),
    ) {
        return "Kind::StringList".to_string();
    }
    if inline {
        format!("Kind::Inline(&{})", static_name(t))
    } else {
        format!("Kind::Message(&{})", static_name(t))
    }
}

fn locate(var: &str, prefix: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cargo"));
    let registry = home.join("registry/src");
    for index in std::fs::read_dir(&registry).expect("cargo registry") {
        let index = index.expect("entry").path();
        for krate in std::fs::read_dir(&index).expect("registry index") {
            let krate = krate.expect("entry").path();
            if krate
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
            {
                return krate.join("src");
            }
        }
    }
    panic!(
        "{prefix}* not found under {}; run `cargo fetch` or set {var}",
        registry.display()
    );
}

fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn module_of(root: &Path, file: &Path) -> String {
    let rel = file
        .parent()
        .expect("parent")
        .strip_prefix(root)
        .expect("under root");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn split_key(p: &str) -> Key {
    let (m, n) = p.split_once("::").expect("module::Name");
    (m.to_string(), n.to_string())
}

fn parse_pb(module: &str, src: &str, out: &mut BTreeMap<Key, PbMessage>) {
    let mut current: Option<(String, PbMessage)> = None;
    let mut attr: Option<String> = None;
    let mut decl: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if let Some(name) = rest.strip_suffix(" {}") {
                out.insert((module.to_string(), name.to_string()), PbMessage::default());
            } else {
                let name = rest.trim_end_matches(" {").trim().to_string();
                current = Some((name, PbMessage::default()));
            }
            continue;
        }
        if line == "}" {
            if let Some((name, msg)) = current.take() {
                out.insert((module.to_string(), name), msg);
            }
            continue;
        }
        let Some((_, msg)) = current.as_mut() else {
            continue;
        };
        if let Some(a) = t.strip_prefix("#[prost(") {
            attr = Some(a.trim_end_matches(")]").to_string());
            continue;
        }
        if attr.is_some() && (decl.is_some() || t.starts_with("pub ")) {
            let d = decl.get_or_insert_with(String::new);
            d.push_str(t);
            let depth = d.matches('<').count() as i64 - d.matches('>').count() as i64;
            if depth == 0 && d.ends_with(',') {
                let a = attr.take().expect("attr");
                let d = decl.take().expect("decl");
                msg.fields.push(pb_field(module, &a, &d));
            }
        }
    }
}

fn pb_field(module: &str, attr: &str, decl: &str) -> PbField {
    let (name, ty) = decl
        .trim_start_matches("pub ")
        .split_once(':')
        .expect("field decl");
    let name = name.trim().trim_start_matches("r#").to_string();
    let tag: u32 = attr
        .split("tag = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("tag");
    let (scalar, label) = if let Some(map) = attr.strip_prefix("btree_map = \"string, ") {
        (map.split('"').next().expect("map value").to_string(), "Map")
    } else {
        let first = attr.split([',', ' ']).next().expect("type").to_string();
        let label = if attr.contains("repeated") {
            "Repeated"
        } else {
            "Single"
        };
        (first, label)
    };
    let type_path = (scalar == "message").then(|| resolve(module, ty));
    PbField {
        name,
        tag,
        scalar,
        label,
        type_path,
    }
}

/// Resolves a prost field type (`Option<super::super::x::y::Name>`) to `(module, Name)`.
fn resolve(module: &str, ty: &str) -> Key {
    let mut t: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
        "::prost::alloc::collections::BTreeMap<::prost::alloc::string::String,",
    ] {
        t = t.replace(wrapper, "");
    }
    let t = t.trim_end_matches([',', '>']);
    let mut parts: Vec<&str> = t.split("::").collect();
    let name = parts.pop().expect("type name").to_string();
    let mut dir: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split('/').collect()
    };
    for p in parts {
        if p == "super" {
            dir.pop();
        } else {
            dir.push(p);
        }
    }
    (dir.join("/"), name)
}

fn parse_openapi(
    module: &str,
    src: &str,
    names: &mut BTreeMap<Key, Vec<String>>,
    kinds: &mut Vec<(String, String, Key)>,
) {
    let mut current: Option<String> = None;
    let mut api_version: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("impl<'de> crate::serde::Deserialize<'de> for ") {
            let n = rest.trim_end_matches(" {").trim();
            if n != "Field" {
                current = Some(n.to_string());
                names
                    .entry((module.to_string(), n.to_string()))
                    .or_default();
            }
        } else if let Some(rest) = t.strip_prefix("impl crate::Resource for ") {
            current = Some(rest.trim_end_matches(" {").trim().to_string());
        } else if let Some(rest) = t.strip_prefix("const API_VERSION: &'static str = \"") {
            api_version = Some(rest.trim_end_matches("\";").to_string());
        } else if let Some(rest) = t.strip_prefix("const KIND: &'static str = \"") {
            let kind = rest.trim_end_matches("\";").to_string();
            let name = current.clone().expect("Resource impl");
            kinds.push((
                api_version.take().expect("API_VERSION first"),
                kind,
                (module.to_string(), name),
            ));
        } else if t.contains("=> Field::Key_") && t.starts_with('"') {
            let json = t[1..].split('"').next().expect("json name").to_string();
            if let Some(n) = &current {
                names
                    .entry((module.to_string(), n.clone()))
                    .or_default()
                    .push(json);
            }
        }
    }
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn static_name((module, name): &Key) -> String {
    let mut s = module.replace('/', "_").to_uppercase();
    s.push('_');
    for (i, c) in name.chars().enumerate() {
        let prev_lower = i > 0
            && name
                .chars()
                .nth(i - 1)
                .is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
        if c.is_uppercase() && prev_lower {
            s.push('_');
        }
        s.extend(c.to_uppercase());
    }
    s
}

fn go_name((module, name): &Key) -> String {
    let pkg = module
        .replace("apimachinery/pkg", "apimachinery.pkg")
        .replace("api/", "api.")
        .replace('/', ".");
    format!("io.k8s.{pkg}.{name}")
}
