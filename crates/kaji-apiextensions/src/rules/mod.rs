//! `x-kubernetes-validations`: the CEL rules of a CRD version's schema,
//! compiled once and evaluated against every custom resource written.
//!
//! Kubernetes' semantics (apiextensions-apiserver `pkg/apiserver/schema/cel`)
//! are the spec: `self` is the value at the rule's schema node, `oldSelf`
//! the previous value on update; transition rules (those reading `oldSelf`)
//! run only where an old value correlates (objects by property, maps by key,
//! `x-kubernetes-list-type: map` lists by their keys; nothing inside
//! atomic or set lists), unless `optionalOldSelf` makes `oldSelf` an
//! optional. Failures become causes worded as Kubernetes words them; a
//! rule that errors is reported, never panics. Errors of rules that do not
//! read `oldSelf` are ratcheted away where the value did not change
//! (CRDValidationRatcheting).
//!
//! # Caveats
//! - Evaluation is not metered by the cel crate (it has no cost tracking
//!   or interruption). CEL has no unbounded loops, so every evaluation
//!   terminates; on top of that each rule's cost is estimated before it
//!   runs from the size of its input and how deeply its comprehensions
//!   nest, and a rule over [`PER_CALL_LIMIT`] or a resource over
//!   [`RUNTIME_COST_BUDGET`] is refused as Kubernetes refuses it. No static
//!   cost estimate is made when compiling.
//! - No type checker: see [`check`] for what is checked when compiling.
//! - `set` and `map` lists compare as ordinary (ordered) lists.

mod check;
mod library;
mod path;
mod value;

use kaji_core::Cause;

use path::{render, Segment};
use serde_json::{json, Value};

use cel::common::types::CelOptional;
use cel::common::value::Val;
use cel::{Context, Program, Value as Cel};

/// The estimated cost a single rule evaluation may reach (Kubernetes'
/// `PerCallLimit`).
pub const PER_CALL_LIMIT: u64 = 1_000_000;

/// The estimated cost all rules of one custom resource may reach together
/// (Kubernetes' `RuntimeCELCostBudget`).
pub const RUNTIME_COST_BUDGET: u64 = 10_000_000;

/// Longest messageExpression result kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// The compiled x-kubernetes-validations rules of one CRD version's schema
/// (openAPIV3Schema), at every level of the schema.
#[derive(Debug)]
pub struct Rules {
    root: Option<Node>,
}

/// The rules at one schema node and the nodes below it that have rules.
#[derive(Debug)]
struct Node {
    /// The schema of values at this node (types `self`).
    schema: Value,
    /// Values here are the root of a resource.
    resource_root: bool,
    rules: Vec<Rule>,
    properties: Vec<(String, Node)>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    all_of: Vec<Node>,
}

#[derive(Debug)]
struct Rule {
    source: String,
    message: Option<String>,
    message_expression: Option<Program>,
    reason: Reason,
    field_path: Vec<Segment>,
    optional_old_self: bool,
    program: Program,
    shape: check::Shape,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reason {
    Invalid,
    Forbidden,
    Required,
    Duplicate,
}

const REASONS: [&str; 4] = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

impl Rules {
    /// Compiles every rule of `schema` (an openAPIV3Schema); `base_path` is
    /// where the schema sits in the CRD, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`.
    ///
    /// # Errors
    /// Every invalid rule as a cause at its CRD field path, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`
    /// with "Invalid value: apiextensions.ValidationRule{...}: compilation
    /// failed: ERROR: <input>:1:6: ...".
    pub fn compile(schema: &Value, base_path: &str) -> Result<Rules, Vec<Cause>> {
        let mut errors = Vec::new();
        let root = compile_node(schema, schema, base_path, true, None, &mut errors);
        if errors.is_empty() {
            Ok(Rules { root })
        } else {
            Err(errors)
        }
    }

    /// True if no rule exists anywhere (lets the caller skip work).
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Evaluates every rule against `obj` (the whole custom resource); `old`
    /// is the previous object on update.
    ///
    /// Returns Kubernetes-style causes: the field is the path of the node
    /// the rule sits on ("spec.replicas"; "<nil>" at the root, as
    /// Kubernetes prints it) or the rule's `fieldPath` below it.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut run = Run {
            causes: Vec::new(),
            budget: RUNTIME_COST_BUDGET as i64,
        };
        if let Some(root) = &self.root {
            let unchanged = old == Some(obj);
            run.node(root, &mut Vec::new(), obj, old, unchanged);
        }
        run.causes
    }
}

// ---------------------------------------------------------------------------
// Compiling

fn compile_node(
    rules_schema: &Value,
    schema: &Value,
    path: &str,
    resource_root: bool,
    uncorrelatable: Option<&str>,
    errors: &mut Vec<Cause>,
) -> Option<Node> {
    let resource_root = resource_root || value::is_embedded(schema);
    let mut node = Node {
        schema: schema.clone(),
        resource_root,
        rules: Vec::new(),
        properties: Vec::new(),
        additional: None,
        items: None,
        all_of: Vec::new(),
    };
    if let Some(Value::Array(raw)) = rules_schema.get("x-kubernetes-validations") {
        for (i, raw) in raw.iter().enumerate() {
            let at = format!("{path}.x-kubernetes-validations[{i}]");
            if let Some(rule) =
                compile_rule(raw, &at, schema, resource_root, uncorrelatable, errors)
            {
                node.rules.push(rule);
            }
        }
    }
    if let Some(Value::Object(properties)) = rules_schema.get("properties") {
        for (name, sub) in properties {
            let Some(typed) = value::property(schema, name) else {
                continue;
            };
            let at = format!("{path}.properties[{name}]");
            if let Some(child) = compile_node(sub, typed, &at, false, uncorrelatable, errors) {
                node.properties.push((name.clone(), child));
            }
        }
    }
    if let (Some(sub), Some(typed)) = (value::additional(rules_schema), value::additional(schema)) {
        let at = format!("{path}.additionalProperties");
        node.additional =
            compile_node(sub, typed, &at, false, uncorrelatable, errors).map(Box::new);
    }
    if let (Some(sub), Some(typed)) = (value::items(rules_schema), value::items(schema)) {
        let at = format!("{path}.items");
        let map_list = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
        let within = match uncorrelatable {
            Some(p) => Some(p.to_owned()),
            None if !map_list => Some(at.clone()),
            None => None,
        };
        node.items = compile_node(sub, typed, &at, false, within.as_deref(), errors).map(Box::new);
    }
    if let Some(Value::Array(all_of)) = rules_schema.get("allOf") {
        for (i, sub) in all_of.iter().enumerate() {
            let at = format!("{path}.allOf[{i}]");
            if let Some(child) =
                compile_node(sub, schema, &at, resource_root, uncorrelatable, errors)
            {
                node.all_of.push(child);
            }
        }
    }
    let empty = node.rules.is_empty()
        && node.properties.is_empty()
        && node.additional.is_none()
        && node.items.is_none()
        && node.all_of.is_empty();
    (!empty).then_some(node)
}

fn text<'v>(raw: &'v Value, key: &str) -> Option<&'v str> {
    raw.get(key).and_then(Value::as_str)
}

fn has_newlines(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

/// A rule as Go's `%#v` prints apiextensions.ValidationRule.
fn go_rule(raw: &Value) -> String {
    let s = |k| format!("{:?}", text(raw, k).unwrap_or(""));
    let reason = match text(raw, "reason") {
        Some(r) => format!("(*apiextensions.FieldValueErrorReason)({r:?})"),
        None => "(*apiextensions.FieldValueErrorReason)(nil)".to_owned(),
    };
    let optional = match raw.get("optionalOldSelf").and_then(Value::as_bool) {
        Some(b) => format!("(*bool)({b})"),
        None => "(*bool)(nil)".to_owned(),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{optional}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath"),
    )
}

fn invalid_raw(field: String, shown: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {shown}: {detail}"),
        field,
    }
}

fn required(field: String, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        message: format!("Required value: {detail}"),
        field,
    }
}

fn compile_rule(
    raw: &Value,
    at: &str,
    schema: &Value,
    resource_root: bool,
    uncorrelatable: Option<&str>,
    errors: &mut Vec<Cause>,
) -> Option<Rule> {
    let before = errors.len();
    let source = text(raw, "rule").unwrap_or("");
    let message = text(raw, "message");
    let message_expression = text(raw, "messageExpression");
    let field = |k: &str| format!("{at}.{k}");
    let trimmed_message = message.map(str::trim).unwrap_or("");
    if source.trim().is_empty() {
        errors.push(required(field("rule"), "rule is not specified"));
    } else if message.is_some_and(|m| !m.is_empty() && m.trim().is_empty()) {
        errors.push(Cause::invalid(
            field("message"),
            &json!(message),
            "message must be non-empty if specified",
        ));
    } else if message.is_some_and(|m| m.len() > 2048) {
        let head: String = message.unwrap_or("").chars().take(10).collect();
        errors.push(Cause::invalid(
            field("message"),
            &json!(format!("{head}...")),
            "message must have a maximum length of 2048 characters",
        ));
    } else if has_newlines(trimmed_message) {
        errors.push(Cause::invalid(
            field("message"),
            &json!(message),
            "message must not contain line breaks",
        ));
    } else if has_newlines(source.trim()) && trimmed_message.is_empty() {
        errors.push(required(
            field("message"),
            "message must be specified if rule contains line breaks",
        ));
    }
    if message_expression.is_some_and(|m| !m.is_empty() && m.trim().is_empty()) {
        errors.push(required(
            field("messageExpression"),
            "messageExpression must be non-empty if specified",
        ));
    }
    let reason = match text(raw, "reason") {
        None | Some("FieldValueInvalid") => Reason::Invalid,
        Some("FieldValueForbidden") => Reason::Forbidden,
        Some("FieldValueRequired") => Reason::Required,
        Some("FieldValueDuplicate") => Reason::Duplicate,
        Some(other) => {
            errors.push(Cause::not_supported(
                field("reason"),
                &json!(other),
                &REASONS,
            ));
            Reason::Invalid
        }
    };
    let mut field_path = Vec::new();
    if let Some(path) = text(raw, "fieldPath") {
        if !path.is_empty() && path.trim().is_empty() {
            errors.push(Cause::invalid(
                field("fieldPath"),
                &json!(path),
                "fieldPath must be non-empty if specified",
            ));
        }
        if has_newlines(path) {
            errors.push(Cause::invalid(
                field("fieldPath"),
                &json!(path),
                "fieldPath must not contain line breaks",
            ));
        }
        if !path.is_empty() {
            match path::parse(path, schema) {
                Ok(segments) => field_path = segments,
                Err(e) => errors.push(Cause::invalid(
                    field("fieldPath"),
                    &json!(path),
                    format!("fieldPath must be a valid path: {e}"),
                )),
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    let optional_old_self = raw
        .get("optionalOldSelf")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let env = library::env();
    let compiled = env
        .compile(source)
        .map_err(|e| check::parse_errors(source, &e))
        .and_then(|p| {
            check::check(&p, schema, resource_root, optional_old_self).map(|shape| (p, shape))
        });
    let (program, shape) = match compiled {
        Ok(ok) => ok,
        Err(e) => {
            errors.push(invalid_raw(
                field("rule"),
                &go_rule(raw),
                &format!("compilation failed: {e}"),
            ));
            return None;
        }
    };
    let message_expression = match message_expression.filter(|m| !m.trim().is_empty()) {
        None => None,
        Some(src) => {
            let compiled = env
                .compile(src)
                .map_err(|e| check::parse_errors(src, &e))
                .and_then(|p| check::check(&p, schema, resource_root, false).map(|_| p));
            match compiled {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.push(invalid_raw(
                        field("messageExpression"),
                        &go_rule(raw),
                        &format!("messageExpression compilation failed: {e}"),
                    ));
                    None
                }
            }
        }
    };
    if shape.uses_old_self {
        if let Some(within) = uncorrelatable {
            errors.push(Cause::invalid(
                field("rule"),
                &json!(source),
                format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Rule {
        source: source.to_owned(),
        message: message.map(|m| m.trim().to_owned()),
        message_expression,
        reason,
        field_path,
        optional_old_self,
        program,
        shape,
    })
}

// ---------------------------------------------------------------------------
// Evaluating

struct Run {
    causes: Vec<Cause>,
    /// Estimated cost left for this resource; negative once exhausted.
    budget: i64,
}

/// Whether old and new maps (or objects) at `schema` correlate by key.
fn map_correlates(schema: &Value) -> bool {
    matches!(
        schema.get("x-kubernetes-map-type").and_then(Value::as_str),
        None | Some("granular") | Some("atomic")
    )
}

/// The map keys of a `x-kubernetes-list-type: map` list, if it is one.
fn list_map_keys(schema: &Value) -> Option<Vec<&str>> {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    let keys = schema.get("x-kubernetes-list-map-keys")?.as_array()?;
    Some(keys.iter().filter_map(Value::as_str).collect())
}

fn key_of(item: &Value, keys: &[&str]) -> String {
    let tuple: Vec<&Value> = keys
        .iter()
        .map(|k| item.get(*k).unwrap_or(&Value::Null))
        .collect();
    serde_json::to_string(&tuple).unwrap_or_default()
}

impl Run {
    /// Validates `value` at `node`; `unchanged` says the nearest correlated
    /// value is equal to its old one (errors of non-transition rules are
    /// then ratcheted away).
    fn node(
        &mut self,
        node: &Node,
        path: &mut Vec<Segment>,
        value: &Value,
        old: Option<&Value>,
        unchanged: bool,
    ) {
        if value.is_null() || self.budget < 0 {
            return;
        }
        self.rules(node, path, value, old, unchanged);
        for all_of in &node.all_of {
            if self.budget < 0 {
                return;
            }
            self.node(all_of, path, value, old, unchanged);
        }
        match value {
            Value::Array(list) => {
                let Some(items) = &node.items else { return };
                let keys = list_map_keys(&node.schema);
                let old_items: std::collections::HashMap<String, &Value> =
                    match (&keys, old.and_then(Value::as_array)) {
                        (Some(keys), Some(old_list)) => old_list
                            .iter()
                            .map(|item| (key_of(item, keys), item))
                            .collect(),
                        _ => Default::default(),
                    };
                for (i, item) in list.iter().enumerate() {
                    if self.budget < 0 {
                        return;
                    }
                    let (old_item, same) = match &keys {
                        Some(keys) => {
                            let o = old_items.get(&key_of(item, keys)).copied();
                            (o, o == Some(item))
                        }
                        // Items of atomic and set lists do not correlate:
                        // they ratchet with their list.
                        None => (None, unchanged),
                    };
                    path.push(Segment::Index(i));
                    self.node(items, path, item, old_item, same);
                    path.pop();
                }
            }
            Value::Object(object) => {
                let correlates = map_correlates(&node.schema);
                let old_of = |k: &str| {
                    if correlates {
                        old.and_then(|o| o.get(k))
                    } else {
                        None
                    }
                };
                if let Some(values) = &node.additional {
                    for (k, v) in object {
                        if self.budget < 0 {
                            return;
                        }
                        let o = old_of(k);
                        path.push(Segment::Key(k.clone()));
                        self.node(values, path, v, o, o == Some(v));
                        path.pop();
                    }
                }
                for (name, child) in &node.properties {
                    if self.budget < 0 {
                        return;
                    }
                    let Some(v) = object.get(name) else { continue };
                    let o = old_of(name);
                    path.push(Segment::Field(name.clone()));
                    self.node(child, path, v, o, o == Some(v));
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn rules(
        &mut self,
        node: &Node,
        path: &[Segment],
        value: &Value,
        old: Option<&Value>,
        unchanged: bool,
    ) {
        if node.rules.is_empty() {
            return;
        }
        let type_name = json!(value::type_name(&node.schema));
        let here = render(path);
        let this = value::to_cel(value, Some(&node.schema), node.resource_root);
        let previous = old.map(|o| value::to_cel(o, Some(&node.schema), node.resource_root));
        let size = value::size(value) + old.map(value::size).unwrap_or(0);
        let widest = value::widest(value)
            .max(old.map(value::widest).unwrap_or(0))
            .max(1);
        for rule in &node.rules {
            if rule.shape.uses_old_self && old.is_none() && !rule.optional_old_self {
                continue;
            }
            let shown = rule
                .message
                .clone()
                .unwrap_or_else(|| rule.source.trim().to_owned());
            let cost = estimate(rule.shape, size, widest);
            if cost > PER_CALL_LIMIT {
                self.causes.push(Cause::invalid(
                    here.clone(),
                    &type_name,
                    format!("'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {shown}"),
                ));
                self.budget = -1;
                return;
            }
            if cost as i64 > self.budget {
                self.causes.push(Cause::invalid(
                    here.clone(),
                    &type_name,
                    "validation failed due to running out of cost budget, no further validation rules will be run",
                ));
                self.budget = -1;
                return;
            }
            self.budget -= cost as i64;

            let mut context = Context::with_env(library::env());
            context.add_variable_from_value("self", this.clone());
            if let Some(previous) = &previous {
                context.add_variable_from_value("oldSelf", previous.clone());
            }
            let result = if rule.optional_old_self {
                let mut optional = context.new_inner_scope();
                let old_self = match previous.clone().map(Box::<dyn Val>::try_from) {
                    Some(Ok(boxed)) => CelOptional::of(boxed),
                    _ => CelOptional::none(),
                };
                optional.add_variable_as_val("oldSelf", Box::new(old_self));
                rule.program.execute(&optional)
            } else {
                rule.program.execute(&context)
            };
            match result {
                Ok(Cel::Bool(true)) => continue,
                Ok(Cel::Bool(false)) => {}
                Ok(_) => {
                    self.causes.push(Cause::invalid(
                        here.clone(),
                        &type_name,
                        format!("cel expression must evaluate to a bool evaluating rule: {shown}"),
                    ));
                    continue;
                }
                Err(e) => {
                    let error = library::error_text(&e);
                    let detail = if error.starts_with("no such overload") {
                        format!("'{error}': call arguments did not match a supported operator, function or macro signature for rule: {shown}")
                    } else {
                        format!("{error} evaluating rule: {shown}")
                    };
                    self.causes
                        .push(Cause::invalid(here.clone(), &type_name, detail));
                    continue;
                }
            }
            if unchanged && !rule.shape.uses_old_self {
                // Ratcheting: the value did not change, so a rule it
                // already failed does not block the update.
                continue;
            }
            let mut at = path.to_vec();
            at.extend(rule.field_path.iter().cloned());
            let field = render(&at);
            let detail = rule
                .message_expression
                .as_ref()
                .and_then(|p| message_of(p, &context))
                .or_else(|| rule.message.clone())
                .unwrap_or_else(|| format!("failed rule: {}", rule.source.trim()));
            self.causes.push(match rule.reason {
                Reason::Invalid => Cause::invalid(field, &type_name, detail),
                Reason::Forbidden => Cause::forbidden(field, detail),
                Reason::Required => required(field, &detail),
                Reason::Duplicate => Cause::duplicate(field, &type_name),
            });
        }
    }
}

/// The message a messageExpression gives, if it gives a usable one.
fn message_of(program: &Program, context: &Context) -> Option<String> {
    match program.execute(context) {
        Ok(Cel::String(s)) => {
            let trimmed = s.trim();
            let usable =
                !trimmed.is_empty() && !has_newlines(trimmed) && trimmed.len() <= MAX_MESSAGE_BYTES;
            usable.then(|| trimmed.to_owned())
        }
        _ => None,
    }
}

/// A rough cost of running a rule over input of `size` nodes whose longest
/// list or map has `widest` entries.
fn estimate(shape: check::Shape, size: u64, widest: u64) -> u64 {
    if shape.depth == 0 {
        return shape.nodes.saturating_add(size);
    }
    let mut cost = shape.nodes.max(1).saturating_mul(size);
    for _ in 1..shape.depth {
        cost = cost.saturating_mul(widest);
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "spec.versions[0].schema.openAPIV3Schema";

    fn schema(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).expect("test schema is YAML")
    }

    fn rules(yaml: &str) -> Rules {
        Rules::compile(&schema(yaml), BASE).expect("rules compile")
    }

    fn compile_errors(yaml: &str) -> Vec<Cause> {
        Rules::compile(&schema(yaml), BASE).expect_err("rules must not compile")
    }

    const SCALED: &str = r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.replicas <= self.maxReplicas"
      message: "replicas must not exceed maxReplicas"
    properties:
      replicas: {type: integer}
      maxReplicas: {type: integer}
"#;

    #[test]
    fn a_failing_rule_is_reported_at_its_node_with_its_message() {
        let rules = rules(SCALED);
        let causes = rules.validate(&json!({"spec": {"replicas": 5, "maxReplicas": 3}}), None);
        assert_eq!(
            causes,
            vec![Cause {
                reason: "FieldValueInvalid",
                message: r#"Invalid value: "object": replicas must not exceed maxReplicas"#.into(),
                field: "spec".into(),
            }]
        );
        assert!(rules
            .validate(&json!({"spec": {"replicas": 3, "maxReplicas": 3}}), None)
            .is_empty());
    }

    #[test]
    fn a_rule_without_a_message_reports_the_failed_rule() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    properties:
      name:
        type: string
        x-kubernetes-validations:
        - rule: "self.startsWith('app-')"
"#,
        );
        let causes = rules.validate(&json!({"spec": {"name": "web"}}), None);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.name");
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "string": failed rule: self.startsWith('app-')"#
        );
    }

    const IMMUTABLE: &str = r#"
type: object
properties:
  spec:
    type: object
    properties:
      name:
        type: string
        x-kubernetes-validations:
        - rule: "self == oldSelf"
          message: "Value is immutable"
"#;

    #[test]
    fn an_immutability_rule_fails_on_change_and_passes_on_create_and_no_change() {
        let rules = rules(IMMUTABLE);
        let new = json!({"spec": {"name": "b"}});
        assert!(
            rules.validate(&new, None).is_empty(),
            "create has no oldSelf"
        );
        assert!(rules.validate(&new, Some(&new)).is_empty());
        let causes = rules.validate(&new, Some(&json!({"spec": {"name": "a"}})));
        assert_eq!(
            causes,
            vec![Cause {
                reason: "FieldValueInvalid",
                message: r#"Invalid value: "string": Value is immutable"#.into(),
                field: "spec.name".into(),
            }]
        );
    }

    #[test]
    fn a_transition_rule_does_not_run_where_the_old_value_is_absent() {
        let rules = rules(IMMUTABLE);
        let causes = rules.validate(&json!({"spec": {"name": "b"}}), Some(&json!({"spec": {}})));
        assert!(causes.is_empty(), "{causes:?}");
    }

    #[test]
    fn rules_on_list_items_and_map_values_report_their_index_and_key() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    properties:
      ports:
        type: array
        items:
          type: object
          properties:
            port: {type: integer}
          x-kubernetes-validations:
          - rule: "self.port > 0 && self.port < 65536"
            message: "port out of range"
      limits:
        type: object
        additionalProperties:
          type: integer
          x-kubernetes-validations:
          - rule: "self >= 0"
"#,
        );
        let causes = rules.validate(
            &json!({"spec": {
                "ports": [{"port": 80}, {"port": 0}],
                "limits": {"cpu": -1, "memory": 5}
            }}),
            None,
        );
        let fields: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                (
                    "spec.ports[1]",
                    r#"Invalid value: "object": port out of range"#
                ),
                (
                    "spec.limits[cpu]",
                    r#"Invalid value: "integer": failed rule: self >= 0"#
                ),
            ]
        );
    }

    #[test]
    fn a_message_expression_words_the_failure() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.replicas <= self.maxReplicas"
      message: "static"
      messageExpression: "'replicas ' + string(self.replicas) + ' exceeds ' + string(self.maxReplicas)"
    properties:
      replicas: {type: integer}
      maxReplicas: {type: integer}
"#,
        );
        let causes = rules.validate(&json!({"spec": {"replicas": 5, "maxReplicas": 3}}), None);
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "object": replicas 5 exceeds 3"#
        );
    }

    #[test]
    fn reason_and_field_path_shape_the_cause() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.replicas <= self.maxReplicas"
      message: "too many replicas"
      reason: FieldValueForbidden
      fieldPath: ".replicas"
    - rule: "has(self.maxReplicas)"
      message: "maxReplicas is required"
      reason: FieldValueRequired
      fieldPath: ".maxReplicas"
    - rule: "self.names.size() == self.names.distinct().size()"
      reason: FieldValueDuplicate
      fieldPath: ".names"
    properties:
      replicas: {type: integer}
      maxReplicas: {type: integer}
      names: {type: array, items: {type: string}}
"#,
        );
        let causes = rules.validate(&json!({"spec": {"replicas": 5, "names": ["a", "a"]}}), None);
        let got: Vec<(&str, &str, &str)> = causes
            .iter()
            .map(|c| (c.reason, c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                // the first rule errors: maxReplicas is absent
                (
                    "FieldValueInvalid",
                    "spec",
                    r#"Invalid value: "object": no such key: maxReplicas evaluating rule: too many replicas"#
                ),
                (
                    "FieldValueRequired",
                    "spec.maxReplicas",
                    "Required value: maxReplicas is required"
                ),
                (
                    "FieldValueDuplicate",
                    "spec.names",
                    r#"Duplicate value: "object""#
                ),
            ]
        );
        let causes = rules.validate(
            &json!({"spec": {"replicas": 5, "maxReplicas": 1, "names": []}}),
            None,
        );
        assert_eq!(
            causes,
            vec![Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: too many replicas".into(),
                field: "spec.replicas".into(),
            }]
        );
    }

    #[test]
    fn a_syntax_error_is_a_compile_cause_at_the_rule_path() {
        let errors = compile_errors(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "true"
    - rule: "self.replicas >"
    properties:
      replicas: {type: integer}
"#,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].reason, "FieldValueInvalid");
        assert_eq!(
            errors[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule"
        );
        assert!(
            errors[0].message.starts_with(
                r#"Invalid value: apiextensions.ValidationRule{Rule:"self.replicas >", Message:"""#
            ),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0]
                .message
                .contains(": compilation failed: ERROR: <input>:1:"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn fields_and_functions_the_schema_and_library_lack_do_not_compile() {
        let errors = compile_errors(
            r#"
type: object
x-kubernetes-validations:
- rule: "self.metadata.name.startsWith('a')"
- rule: "self.metadata.labels.size() > 0"
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.nope > 0"
    - rule: "self.name.frobnicate()"
    - rule: "other == 1"
    - rule: "self.items.all(i, i.port > 0 && i.host != '')"
    properties:
      name: {type: string}
      items:
        type: array
        items:
          type: object
          properties:
            port: {type: integer}
"#,
        );
        let got: Vec<(&str, bool)> = errors
            .iter()
            .map(|c| (c.field.as_str(), c.message.contains("compilation failed")))
            .collect();
        let p = "spec.versions[0].schema.openAPIV3Schema";
        assert_eq!(
            got.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>(),
            vec![
                format!("{p}.x-kubernetes-validations[1].rule"),
                format!("{p}.properties[spec].x-kubernetes-validations[0].rule"),
                format!("{p}.properties[spec].x-kubernetes-validations[1].rule"),
                format!("{p}.properties[spec].x-kubernetes-validations[2].rule"),
                format!("{p}.properties[spec].x-kubernetes-validations[3].rule"),
            ]
        );
        assert!(errors[0].message.contains("undefined field 'labels'"));
        assert!(errors[1].message.contains("undefined field 'nope'"));
        assert!(errors[2]
            .message
            .contains("undeclared reference to 'frobnicate' (in container '')"));
        assert!(errors[3]
            .message
            .contains("undeclared reference to 'other' (in container '')"));
        assert!(errors[4].message.contains("undefined field 'host'"));
        assert!(
            errors[1].message.contains("\n | self.nope > 0\n | ....^"),
            "{}",
            errors[1].message
        );
    }

    #[test]
    fn a_root_rule_reports_nil_and_sees_only_name_and_generate_name_of_metadata() {
        let rules = rules(
            r#"
type: object
x-kubernetes-validations:
- rule: "self.metadata.name.startsWith('my-') && self.kind == 'Widget'"
properties:
  spec: {type: object}
"#,
        );
        let obj = |name: &str| {
            json!({"apiVersion": "x.io/v1", "kind": "Widget",
                   "metadata": {"name": name, "labels": {"a": "b"}}, "spec": {}})
        };
        assert!(rules.validate(&obj("my-widget"), None).is_empty());
        let causes = rules.validate(&obj("widget"), None);
        assert_eq!(causes[0].field, "<nil>");
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "object": failed rule: self.metadata.name.startsWith('my-') && self.kind == 'Widget'"#
        );
    }

    #[test]
    fn map_lists_correlate_old_items_by_key_and_atomic_lists_refuse_old_self() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    properties:
      ports:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [name]
        items:
          type: object
          properties:
            name: {type: string}
            port: {type: integer}
          x-kubernetes-validations:
          - rule: "self.port == oldSelf.port"
            message: "port is immutable"
"#,
        );
        let old = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}});
        // Reordered and one added: nothing changed for existing names.
        let new = json!({"spec": {"ports": [
            {"name": "https", "port": 443}, {"name": "admin", "port": 1}, {"name": "http", "port": 80}
        ]}});
        assert!(rules.validate(&new, Some(&old)).is_empty());
        let changed = json!({"spec": {"ports": [{"name": "https", "port": 8443}]}});
        let causes = rules.validate(&changed, Some(&old));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.ports[0]");
        assert!(causes[0].message.ends_with("port is immutable"));

        let errors = compile_errors(
            r#"
type: object
properties:
  list:
    type: array
    items:
      type: string
      x-kubernetes-validations:
      - rule: "self == oldSelf"
"#,
        );
        assert_eq!(
            errors[0].field,
            format!("{BASE}.properties[list].items.x-kubernetes-validations[0].rule")
        );
        assert_eq!(
            errors[0].message,
            format!(
                r#"Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within {BASE}.properties[list].items"#
            )
        );
    }

    #[test]
    fn optional_old_self_runs_on_create_with_an_empty_optional() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    properties:
      version:
        type: integer
        x-kubernetes-validations:
        - rule: "!oldSelf.hasValue() || self >= oldSelf.value()"
          optionalOldSelf: true
          message: "version may not decrease"
        - rule: "oldSelf.hasValue() || self == 1"
          optionalOldSelf: true
          message: "first version is 1"
"#,
        );
        let v = |n: i64| json!({"spec": {"version": n}});
        assert!(rules.validate(&v(1), None).is_empty());
        let created = rules.validate(&v(2), None);
        assert_eq!(created.len(), 1);
        assert!(created[0].message.ends_with("first version is 1"));
        assert!(rules.validate(&v(3), Some(&v(2))).is_empty());
        let causes = rules.validate(&v(1), Some(&v(2)));
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.ends_with("version may not decrease"));
    }

    #[test]
    fn common_operators_macros_and_string_functions_evaluate() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.tags.all(t, t.matches('^[a-z]+$')) && self.tags.exists(t, t == 'web')"
    - rule: "self.tags.exists_one(t, t.startsWith('w')) && self.tags.filter(t, t.endsWith('eb')).size() == 1"
    - rule: "self.tags.map(t, size(t)).sum() == 7 && 'db' in self.tags && self.name.contains('-')"
    - rule: "has(self.name) && !has(self.missing) && self.name.lowerAscii() == 'my-app'"
    - rule: "[1, 2, 3].isSorted() && !self.tags.isSorted() && self.ratio * 2.0 == 1.0"
    - rule: "cel.bind(n, self.tags.size(), n == 3) && self.tags.indexOf('db') == 1"
    - rule: "self.created < timestamp('2030-01-01T00:00:00Z') && self.timeout == duration('90s')"
    - rule: "self.port == 80 || self.port == 'http'"
    - rule: "math.greatest(1, 2) == 2 && strings.quote('a').size() == 3 && optional.of(1).hasValue() && lists.range(3).size() == 3"
    - rule: "type(self) == map && type(self.name) == string && dyn(self.ratio) == 0.5"
    - rule: "sets.contains(self.tags, ['db']) && self.tags.max() == 'web' && self.name.find('[A-Z][a-z]+') == 'My'"
    properties:
      name: {type: string}
      missing: {type: string}
      tags: {type: array, items: {type: string}}
      ratio: {type: number}
      created: {type: string, format: date-time}
      timeout: {type: string, format: duration}
      port: {x-kubernetes-int-or-string: true}
"#,
        );
        let obj = |port: Value| {
            json!({"spec": {
                "name": "My-App", "tags": ["web", "db", "ab"], "ratio": 0.5,
                "created": "2024-05-01T10:00:00Z", "timeout": "1m30s", "port": port
            }})
        };
        assert_eq!(rules.validate(&obj(json!(80)), None), vec![]);
        assert_eq!(rules.validate(&obj(json!("http")), None), vec![]);
        let causes = rules.validate(&obj(json!("https")), None);
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "object": failed rule: self.port == 80 || self.port == 'http'"#
        );
    }

    #[test]
    fn an_evaluation_error_is_a_cause_not_a_panic() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.items[3] == 1"
    - rule: "10 / self.divisor > 1"
    - rule: "self.name"
    properties:
      name: {type: string}
      divisor: {type: integer}
      items: {type: array, items: {type: integer}}
"#,
        );
        let causes = rules.validate(
            &json!({"spec": {"items": [1], "divisor": 0, "name": "x"}}),
            None,
        );
        let messages: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                r#"Invalid value: "object": index out of bounds: 3 evaluating rule: self.items[3] == 1"#,
                r#"Invalid value: "object": division by zero evaluating rule: 10 / self.divisor > 1"#,
                r#"Invalid value: "object": cel expression must evaluate to a bool evaluating rule: self.name"#,
            ]
        );
    }

    #[test]
    fn an_unchanged_value_ratchets_past_a_rule_it_already_failed() {
        let rules = rules(SCALED);
        let bad = json!({"spec": {"replicas": 5, "maxReplicas": 3}, "status": {"x": 1}});
        let touched_elsewhere =
            json!({"spec": {"replicas": 5, "maxReplicas": 3}, "status": {"x": 2}});
        assert!(rules.validate(&touched_elsewhere, Some(&bad)).is_empty());
        let worse = json!({"spec": {"replicas": 6, "maxReplicas": 3}});
        assert_eq!(rules.validate(&worse, Some(&bad)).len(), 1);
    }

    #[test]
    fn a_rule_too_costly_for_its_input_is_refused_and_stops_validation() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: "self.xs.all(a, self.xs.all(b, self.xs.all(c, a + b + c >= 0)))"
    - rule: "false"
    properties:
      xs: {type: array, items: {type: integer}}
"#,
        );
        let small = json!({"spec": {"xs": [1, 2, 3]}});
        assert_eq!(
            rules.validate(&small, None).len(),
            1,
            "only the `false` rule"
        );
        let big = json!({"spec": {"xs": (0..1000).collect::<Vec<i64>>()}});
        let causes = rules.validate(&big, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0]
            .message
            .contains("no further validation rules will be run due to call cost exceeds limit"));
    }

    #[test]
    fn invalid_rule_settings_are_reported_at_their_own_fields() {
        let errors = compile_errors(
            r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
    - rule: ""
    - rule: "true"
      reason: FieldValueWrong
    - rule: "true"
      fieldPath: ".nope"
    - rule: "true"
      messageExpression: "'a' +"
    properties:
      replicas: {type: integer}
"#,
        );
        let at = |i: usize, f: &str| {
            format!("{BASE}.properties[spec].x-kubernetes-validations[{i}].{f}")
        };
        let got: Vec<(String, &str)> = errors
            .iter()
            .map(|c| (c.field.clone(), c.message.as_str()))
            .collect();
        assert_eq!(
            got[0],
            (at(0, "rule"), "Required value: rule is not specified")
        );
        assert_eq!(got[1].0, at(1, "reason"));
        assert!(got[1].1.starts_with(
            r#"Unsupported value: "FieldValueWrong": supported values: "FieldValueDuplicate""#
        ));
        assert_eq!(
            got[2],
            (
                at(2, "fieldPath"),
                r#"Invalid value: ".nope": fieldPath must be a valid path: does not refer to a valid field"#
            )
        );
        assert_eq!(got[3].0, at(3, "messageExpression"));
        assert!(got[3]
            .1
            .contains("messageExpression compilation failed: ERROR: <input>:1:"));
        assert_eq!(errors.len(), 4);
    }

    #[test]
    fn escaped_property_names_keyed_field_paths_and_all_of_rules_work() {
        let rules = rules(
            r#"
type: object
properties:
  spec:
    type: object
    allOf:
    - x-kubernetes-validations:
      - rule: "self.__namespace__ != 'kube-system'"
        message: "no system namespace"
    x-kubernetes-validations:
    - rule: "self['labels'] == self.labels && self.labels['app.kubernetes.io/name'] == self.foo__dash__bar"
      fieldPath: ".labels['app.kubernetes.io/name']"
    properties:
      namespace: {type: string}
      foo-bar: {type: string}
      labels: {type: object, additionalProperties: {type: string}}
"#,
        );
        let causes = rules.validate(
            &json!({"spec": {"namespace": "kube-system", "foo-bar": "x",
                             "labels": {"app.kubernetes.io/name": "y"}}}),
            None,
        );
        let got: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(got[0].0, "spec.labels[app.kubernetes.io/name]");
        assert_eq!(
            got[1],
            ("spec", r#"Invalid value: "object": no system namespace"#)
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_schema_without_rules_is_empty_and_validates_nothing() {
        let rules = rules("type: object\nproperties:\n  spec: {type: object}\n");
        assert!(rules.is_empty());
        assert!(rules.validate(&json!({"spec": {}}), None).is_empty());
        assert!(!super::tests::rules(SCALED).is_empty());
    }

    #[test]
    fn compiled_rules_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Rules>();
    }
}
