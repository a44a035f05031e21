//! Label and field selectors: parsing, matching and printing as Kubernetes does them.
//!
//! [`LabelSelector`] understands the `labelSelector=` query syntax (`a=b`,
//! `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma = AND)
//! and the `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`).
//! [`FieldSelector`] understands the `fieldSelector=` syntax (`a=b`, `a==b`,
//! `a!=b`, comma = AND, backslash escapes in values). Error messages follow
//! `k8s.io/apimachinery/pkg/labels` and `.../fields` so clients see the same
//! text they would from Kubernetes. Which fields a resource supports is the
//! server's business: it inspects [`FieldSelector::requirements`].

use std::fmt;

use serde_json::{Map, Value};

use crate::validation::{is_label_value, is_qualified_name};

/// Why a selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// One requirement of a label selector is malformed or fails key/value
    /// validation; the text is what Kubernetes prints after the prefix, e.g.
    /// `found 'b', expected: in, notin, =, ==, !=, gt, lt`.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// The label selector is malformed between requirements, e.g.
    /// `found '', expected: identifier after ','`.
    #[error("{0}")]
    Syntax(String),
    /// A `metav1.LabelSelector` requirement fails validation, e.g.
    /// `values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty`.
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions[].operator` other than In, NotIn, Exists, DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    /// A `metav1.LabelSelector` value is not shaped like one (wrong JSON types).
    #[error("invalid label selector: {0}")]
    Malformed(String),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector as given.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value has a backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value has an unescaped `,` or `=`. Kubernetes prints
    /// the character's code point (`61` for `=`), and so do we.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelOp {
    /// `key=value`.
    Equals,
    /// `key==value` (same meaning as [`LabelOp::Equals`]).
    DoubleEquals,
    /// `key!=value`: absent, or present with another value.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: absent, or present with a value not listed.
    NotIn,
    /// `key`: present.
    Exists,
    /// `!key`: absent.
    DoesNotExist,
    /// `key>n`: present with an integer value greater than `n`.
    GreaterThan,
    /// `key<n`: present with an integer value less than `n`.
    LessThan,
}

/// One requirement of a label selector: key, operator and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl Requirement {
    /// Builds and validates a requirement, as Kubernetes' `NewRequirement`.
    ///
    /// # Errors
    /// [`SelectorError::InvalidRequirement`] when the key is not a qualified
    /// name, a value is not a label value, or the value count does not fit
    /// the operator.
    pub fn new(
        key: impl Into<String>,
        op: LabelOp,
        values: Vec<String>,
    ) -> Result<Self, SelectorError> {
        Self::build(key.into(), op, values).map_err(SelectorError::InvalidRequirement)
    }

    fn build(key: String, op: LabelOp, mut values: Vec<String>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = is_qualified_name(&key);
        if !key_errs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {key:?}: {}",
                key_errs.join("; ")
            ));
        }
        match op {
            LabelOp::In | LabelOp::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                go_string_slice(&values)
            )),
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals if values.len() != 1 => {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    go_string_slice(&values)
                ))
            }
            LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: values set must be empty for exists and does not exist",
                go_string_slice(&values)
            )),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        go_string_slice(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {v:?}: {}",
                    msgs.join("; ")
                ));
            }
        }
        if !errs.is_empty() {
            return Err(aggregate(errs));
        }
        values.sort();
        values.dedup();
        Ok(Requirement { key, op, values })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn op(&self) -> LabelOp {
        self.op
    }

    /// The values, sorted and without duplicates (empty for Exists/DoesNotExist).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement.
    ///
    /// # Caveats
    /// A label whose JSON value is not a string counts as present but equal
    /// to no value.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let present = labels.get(&self.key);
        let has = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .is_some_and(|s| self.values.iter().any(|x| x == s))
        };
        match self.op {
            LabelOp::Exists => present.is_some(),
            LabelOp::DoesNotExist => present.is_none(),
            LabelOp::In | LabelOp::Equals | LabelOp::DoubleEquals => has(present),
            LabelOp::NotIn | LabelOp::NotEquals => !has(present),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(have) = present
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|s| s.parse::<i64>().ok()) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.op {
            LabelOp::Exists => write!(f, "{}", self.key),
            LabelOp::DoesNotExist => write!(f, "!{}", self.key),
            LabelOp::Equals => write!(f, "{}={values}", self.key),
            LabelOp::DoubleEquals => write!(f, "{}=={values}", self.key),
            LabelOp::NotEquals => write!(f, "{}!={values}", self.key),
            LabelOp::In => write!(f, "{} in ({values})", self.key),
            LabelOp::NotIn => write!(f, "{} notin ({values})", self.key),
            LabelOp::GreaterThan => write!(f, "{}>{values}", self.key),
            LabelOp::LessThan => write!(f, "{}<{values}", self.key),
        }
    }
}

/// A label selector: requirements that must all hold.
///
/// # Guarantees
/// Requirements are sorted by key, so [`fmt::Display`] prints the canonical
/// form Kubernetes prints (`a in (x,y),b!=c`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Matches nothing (a null `metav1.LabelSelector`).
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (what an empty string parses to).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (what a null `metav1.LabelSelector` means).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector=` query syntax.
    ///
    /// # Errors
    /// [`SelectorError::Requirement`] for a malformed or invalid requirement
    /// and [`SelectorError::Syntax`] for a malformed list, with Kubernetes'
    /// messages.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = p.peek();
            match tok {
                Tok::Ident | Tok::Bang => {
                    requirements.push(p.requirement().map_err(SelectorError::Requirement)?);
                    let (tok, lit) = p.next();
                    match tok {
                        Tok::End => break,
                        Tok::Comma => {
                            let (tok, lit) = p.peek();
                            if tok != Tok::Ident && tok != Tok::Bang {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{lit}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{lit}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Tok::End => break,
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`), as Kubernetes' `LabelSelectorAsSelector`.
    ///
    /// # Guarantees
    /// `null` gives [`LabelSelector::nothing`]; `{}` gives
    /// [`LabelSelector::everything`].
    ///
    /// # Errors
    /// [`SelectorError::UnknownOperator`], [`SelectorError::InvalidRequirement`]
    /// for invalid keys or values, [`SelectorError::Malformed`] for wrong JSON
    /// types.
    pub fn from_label_selector_json(sel: &Value) -> Result<Self, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            _ => return Err(SelectorError::Malformed("must be an object".into())),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| {
                        SelectorError::Malformed(format!("matchLabels[{k}] must be a string"))
                    })?;
                    requirements.push(Requirement::new(
                        k.clone(),
                        LabelOp::Equals,
                        vec![v.to_string()],
                    )?);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchLabels must be an object".into(),
                ))
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression(expr, i)?);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchExpressions must be an array".into(),
                ))
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector matches everything (no requirements). The
    /// [`LabelSelector::nothing`] selector is not empty.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether a label set (an object's `metadata.labels`; pass an empty map
    /// when absent) satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object (its `metadata.labels`) satisfies the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        match obj.pointer("/metadata/labels").and_then(Value::as_object) {
            Some(labels) => self.matches(labels),
            None => self.matches(&Map::new()),
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn expression(expr: &Value, i: usize) -> Result<Requirement, SelectorError> {
    let malformed = |what: &str| SelectorError::Malformed(format!("matchExpressions[{i}].{what}"));
    let key = expr
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("key must be a string"))?;
    let op = expr
        .get("operator")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("operator must be a string"))?;
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("values must be strings"))?,
        Some(_) => return Err(malformed("values must be an array")),
    };
    let op = match op {
        "In" => LabelOp::In,
        "NotIn" => LabelOp::NotIn,
        "Exists" => LabelOp::Exists,
        "DoesNotExist" => LabelOp::DoesNotExist,
        other => return Err(SelectorError::UnknownOperator(other.to_string())),
    };
    Requirement::new(key, op, values)
}

/// Go's `%#v` of a `[]string`, used in Kubernetes' requirement errors.
fn go_string_slice(values: &[String]) -> String {
    let inner: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", inner.join(", "))
}

/// Kubernetes' aggregate error text: one message as is, several in brackets.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ident,
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits a label selector into tokens; `in` and `notin` stay identifiers
/// (the parser reads them as keywords only where an operator is expected).
fn lex(s: &str) -> Vec<(Tok, String)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_space(c) {
            chars.next();
        } else if is_special(c) {
            chars.next();
            let next = chars.peek().map(|&(_, n)| n);
            let tok = match (c, next) {
                ('=', Some('=')) => Some(Tok::DoubleEq),
                ('!', Some('=')) => Some(Tok::NotEq),
                _ => None,
            };
            if let Some(tok) = tok {
                chars.next();
                out.push((tok, format!("{c}=")));
                continue;
            }
            let tok = match c {
                '=' => Tok::Eq,
                '!' => Tok::Bang,
                '(' => Tok::Open,
                ')' => Tok::Close,
                ',' => Tok::Comma,
                '>' => Tok::Gt,
                _ => Tok::Lt,
            };
            out.push((tok, c.to_string()));
        } else {
            let mut end = s.len();
            while let Some(&(i, c)) = chars.peek() {
                if is_space(c) || is_special(c) {
                    end = i;
                    break;
                }
                chars.next();
            }
            out.push((Tok::Ident, s[start..end].to_string()));
        }
    }
    out.push((Tok::End, String::new()));
    out
}

/// A recursive-descent parser mirroring Kubernetes' `labels.Parser`, so the
/// error for each malformed input is the same.
struct Parser {
    toks: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> (Tok, String) {
        self.toks[self.pos.min(self.toks.len() - 1)].clone()
    }

    fn next(&mut self) -> (Tok, String) {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (mut tok, mut lit) = self.next();
        let negated = tok == Tok::Bang;
        if negated {
            (tok, lit) = self.next();
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let key = lit;
        let errs = is_qualified_name(&key);
        if !errs.is_empty() {
            return Err(format!(
                "<nil>: Invalid value: {key:?}: {}",
                errs.join("; ")
            ));
        }
        if negated {
            return Requirement::build(key, LabelOp::DoesNotExist, Vec::new());
        }
        if matches!(self.peek().0, Tok::End | Tok::Comma) {
            return Requirement::build(key, LabelOp::Exists, Vec::new());
        }
        let (tok, lit) = self.next();
        let op = match tok {
            Tok::Ident if lit == "in" => LabelOp::In,
            Tok::Ident if lit == "notin" => LabelOp::NotIn,
            Tok::Eq => LabelOp::Equals,
            Tok::DoubleEq => LabelOp::DoubleEquals,
            Tok::NotEq => LabelOp::NotEquals,
            Tok::Gt => LabelOp::GreaterThan,
            Tok::Lt => LabelOp::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        };
        let mut values = match op {
            LabelOp::In | LabelOp::NotIn => self.values()?,
            _ => self.exact_value()?,
        };
        values.sort();
        values.dedup();
        Requirement::build(key, op, values)
    }

    fn values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.next();
        if tok != Tok::Open {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.peek();
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.identifiers()?;
                if self.next().0 != Tok::Close {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::Close => {
                self.next();
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            let (tok, lit) = self.next();
            match tok {
                Tok::Ident => {
                    values.push(lit);
                    let (tok, lit) = self.peek();
                    match tok {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(values),
                        _ => return Err(format!("found '{lit}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek().0 {
                        Tok::Close => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next();
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek().0, Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.next();
        if tok == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// The operator of one field requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One field requirement, with its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `status.phase`.
    pub field: String,
    /// The operator.
    pub op: FieldOp,
    /// The value, unescaped.
    pub value: String,
}

/// A field selector: requirements that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector=` query syntax.
    ///
    /// # Caveats
    /// Like Kubernetes, whitespace is not trimmed: `a = b` has the field `a `.
    ///
    /// # Errors
    /// [`SelectorError::FieldTerm`] for a term without operator,
    /// [`SelectorError::InvalidEscape`] / [`SelectorError::UnescapedCharacter`]
    /// for a badly escaped value.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let (field, op, raw) = split_term(term).ok_or_else(|| SelectorError::FieldTerm {
                selector: s.to_string(),
                term: term.to_string(),
            })?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_field_value(raw)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements, in the order Kubernetes keeps them (terms sorted).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value a field must equal, if some `field=value` term requires it
    /// (e.g. `metadata.name` for a point read).
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.op == FieldOp::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Whether an object satisfies every requirement; `get` returns a
    /// field's value. As in Kubernetes, a missing field reads as `""`.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Equals => have == r.value,
                FieldOp::NotEquals => have != r.value,
            }
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.op {
                FieldOp::Equals => "=",
                FieldOp::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_field_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_field_value`].
///
/// # Errors
/// [`SelectorError::InvalidEscape`] for `\` followed by anything else (or at
/// the end), [`SelectorError::UnescapedCharacter`] for a bare `,` or `=`.
pub fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(SelectorError::InvalidEscape(format!("\\{e}"))),
                None => return Err(SelectorError::InvalidEscape("\\".into())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Splits on commas not escaped by a backslash (escapes are kept).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, then `==`, then `=` at each position).
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(v) = rest.strip_prefix("!=") {
            return Some((&term[..i], FieldOp::NotEquals, v));
        }
        if let Some(v) = rest.strip_prefix("==") {
            return Some((&term[..i], FieldOp::Equals, v));
        }
        if let Some(v) = rest.strip_prefix('=') {
            return Some((&term[..i], FieldOp::Equals, v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn empty_and_blank_selectors_match_everything() {
        for s in ["", "   ", "\t\n"] {
            let sel = LabelSelector::parse(s).unwrap();
            assert!(sel.is_empty());
            assert!(sel.matches(&Map::new()));
        }
    }

    #[test]
    fn equality_operators_parse_and_match() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(LabelSelector::parse("app=web").unwrap().matches(&l));
        assert!(LabelSelector::parse("app==web").unwrap().matches(&l));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&l));
        assert!(LabelSelector::parse("app!=db").unwrap().matches(&l));
        assert!(LabelSelector::parse("missing!=x").unwrap().matches(&l));
        assert!(!LabelSelector::parse("missing=x").unwrap().matches(&l));
    }

    #[test]
    fn set_operators_parse_and_match() {
        let l = labels(json!({"env": "prod"}));
        assert!(LabelSelector::parse("env in (prod, dev)")
            .unwrap()
            .matches(&l));
        assert!(!LabelSelector::parse("env in (dev)").unwrap().matches(&l));
        assert!(!LabelSelector::parse("env notin (prod)")
            .unwrap()
            .matches(&l));
        assert!(LabelSelector::parse("other notin (prod)")
            .unwrap()
            .matches(&l));
        assert!(LabelSelector::parse("env in(prod)").unwrap().matches(&l));
    }

    #[test]
    fn existence_operators_parse_and_match() {
        let l = labels(json!({"env": "prod"}));
        assert!(LabelSelector::parse("env").unwrap().matches(&l));
        assert!(!LabelSelector::parse("!env").unwrap().matches(&l));
        assert!(LabelSelector::parse("!other").unwrap().matches(&l));
        assert!(LabelSelector::parse(" ! other ").unwrap().matches(&l));
        assert!(!LabelSelector::parse("other").unwrap().matches(&l));
    }

    #[test]
    fn comma_means_and_with_whitespace_tolerated() {
        let sel = LabelSelector::parse(" app = web , tier in ( front , back ) , !legacy ").unwrap();
        assert_eq!(sel.requirements().len(), 3);
        assert!(sel.matches(&labels(json!({"app": "web", "tier": "back"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "back", "legacy": ""}))));
        assert!(!sel.matches(&labels(json!({"app": "db", "tier": "back"}))));
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        let sel = LabelSelector::parse("app.kubernetes.io/name=nginx").unwrap();
        assert_eq!(sel.requirements()[0].key(), "app.kubernetes.io/name");
        assert!(sel.matches(&labels(json!({"app.kubernetes.io/name": "nginx"}))));
    }

    #[test]
    fn keywords_are_identifiers_outside_operator_position() {
        let sel = LabelSelector::parse("in in (in, notin)").unwrap();
        assert!(sel.matches(&labels(json!({"in": "notin"}))));
        assert!(LabelSelector::parse("notin=in")
            .unwrap()
            .matches(&labels(json!({"notin": "in"}))));
    }

    #[test]
    fn empty_values_are_allowed_and_match_empty_labels() {
        let l = labels(json!({"a": ""}));
        assert!(LabelSelector::parse("a=").unwrap().matches(&l));
        assert!(LabelSelector::parse("a in ()").unwrap().matches(&l));
        assert!(LabelSelector::parse("a in (,x)").unwrap().matches(&l));
        assert_eq!(
            LabelSelector::parse("a in (x,)").unwrap().requirements()[0].values(),
            ["", "x"]
        );
    }

    #[test]
    fn numeric_comparisons_need_integers() {
        let l = labels(json!({"n": "5", "s": "x"}));
        assert!(LabelSelector::parse("n>4").unwrap().matches(&l));
        assert!(!LabelSelector::parse("n>5").unwrap().matches(&l));
        assert!(LabelSelector::parse("n<6").unwrap().matches(&l));
        assert!(!LabelSelector::parse("s<6").unwrap().matches(&l));
        assert!(err("n>x").contains("for 'Gt', 'Lt' operators, the value must be an integer"));
    }

    #[test]
    fn requirements_are_sorted_and_printed_canonically() {
        let sel = LabelSelector::parse("z=1, a in (y,x,x), !m, k, n!=2").unwrap();
        assert_eq!(sel.to_string(), "a in (x,y),k,!m,n!=2,z=1");
        assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
    }

    #[test]
    fn a_missing_operator_reads_like_kubernetes() {
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn list_structure_errors_read_like_kubernetes() {
        assert_eq!(err("a,"), "found '', expected: identifier after ','");
        assert_eq!(
            err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(
            err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
        assert_eq!(
            LabelSelector::parse("a in (x,,y)").unwrap().requirements()[0].values(),
            ["", "x", "y"]
        );
    }

    #[test]
    fn set_syntax_errors_read_like_kubernetes() {
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x' expected: '('"
        );
        assert_eq!(
            err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (="),
            "unable to parse requirement: found '=', expected: ',', ')' or identifier"
        );
        assert_eq!(
            err("a=("),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert!(LabelSelector::parse("a==")
            .unwrap()
            .matches(&labels(json!({"a": ""}))));
    }

    #[test]
    fn invalid_keys_are_rejected_with_the_qualified_name_message() {
        let e = err("-a=b");
        assert!(e.starts_with("unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters"), "{e}");
        let e = err("a/b/c");
        assert!(e.contains("a qualified name must consist of"), "{e}");
        let e = err("Bad_Prefix/x");
        assert!(
            e.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_are_rejected_with_the_label_value_message() {
        let e = err("a=-b");
        assert!(
            e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string"),
            "{e}"
        );
        let long = "x".repeat(64);
        assert!(err(&format!("a={long}")).contains("must be no more than 63 characters"));
    }

    #[test]
    fn label_selector_objects_convert_like_kubernetes() {
        let sel = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,env,!legacy,tier in (back,front),zone notin (a)"
        );
        assert!(sel.matches(&labels(json!({"app": "web", "tier": "front", "env": "x"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "front"}))));
    }

    #[test]
    fn null_label_selector_matches_nothing_and_empty_matches_everything() {
        let none = LabelSelector::from_label_selector_json(&Value::Null).unwrap();
        assert!(!none.is_empty());
        assert!(!none.matches(&Map::new()));
        let all = LabelSelector::from_label_selector_json(&json!({})).unwrap();
        assert!(all.is_empty());
        assert!(all.matches(&Map::new()));
    }

    #[test]
    fn label_selector_objects_report_bad_operators_and_values() {
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
        }))
        .unwrap_err();
        assert!(e
            .to_string()
            .contains("values set must be empty for exists and does not exist"));
        let e = LabelSelector::from_label_selector_json(&json!({"matchLabels": {"-k": "v"}}))
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("key: Invalid value: \"-k\": name part must consist"));
        assert!(matches!(
            LabelSelector::from_label_selector_json(&json!({"matchLabels": []})),
            Err(SelectorError::Malformed(_))
        ));
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let sel = LabelSelector::parse("app=web").unwrap();
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::parse("!app")
            .unwrap()
            .matches_object(&json!({})));
    }

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |f| {
            pairs
                .iter()
                .find(|(k, _)| *k == f)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn field_selectors_parse_all_three_operators() {
        let sel = FieldSelector::parse("metadata.name=a,status.phase==Running,spec.nodeName!=n1")
            .unwrap();
        let reqs = sel.requirements();
        assert_eq!(reqs.len(), 3);
        assert!(reqs
            .iter()
            .any(|r| r.field == "spec.nodeName" && r.op == FieldOp::NotEquals && r.value == "n1"));
        assert_eq!(sel.exact_match("metadata.name"), Some("a"));
        assert_eq!(sel.exact_match("spec.nodeName"), None);
        assert!(sel.matches(fields(&[
            ("metadata.name", "a"),
            ("status.phase", "Running")
        ])));
        assert!(!sel.matches(fields(&[
            ("metadata.name", "a"),
            ("status.phase", "Pending")
        ])));
        assert!(!sel.matches(fields(&[
            ("metadata.name", "a"),
            ("status.phase", "Running"),
            ("spec.nodeName", "n1")
        ])));
    }

    #[test]
    fn field_selectors_treat_missing_fields_as_empty() {
        assert!(FieldSelector::parse("spec.nodeName=")
            .unwrap()
            .matches(fields(&[])));
        assert!(FieldSelector::parse("spec.nodeName!=x")
            .unwrap()
            .matches(fields(&[])));
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
    }

    #[test]
    fn field_selector_values_unescape_backslashes() {
        let sel = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,x=y").unwrap();
        assert_eq!(sel.exact_match("metadata.name"), Some(r"a,b=c\d"));
        assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
        assert_eq!(FieldSelector::parse(&sel.to_string()).unwrap(), sel);
    }

    #[test]
    fn field_selector_errors_read_like_kubernetes() {
        assert_eq!(
            FieldSelector::parse("a=b,nope").unwrap_err().to_string(),
            "invalid selector: 'a=b,nope'; can't understand 'nope'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn field_selector_splits_at_the_first_operator() {
        let sel = FieldSelector::parse("a!==b").unwrap_err();
        assert_eq!(sel, SelectorError::UnescapedCharacter('='));
        let sel = FieldSelector::parse("a==b").unwrap();
        assert_eq!(sel.requirements()[0].value, "b");
    }
}
