//! Field paths: a rule's `fieldPath` (`.spec.replicas`,
//! `.labels['app.kubernetes.io/name']`), checked against the schema as
//! Kubernetes' `ValidFieldPath` does, and paths rendered as Kubernetes'
//! `field.Path` prints them.

use serde_json::Value;

use super::value;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    /// `.name`
    Field(String),
    /// `[key]` of a map
    Key(String),
    /// `[index]` of a list
    Index(usize),
}

/// Renders a field path as Kubernetes does; the empty path is "<nil>".
pub(crate) fn render(path: &[Segment]) -> String {
    if path.is_empty() {
        return "<nil>".to_owned();
    }
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Segment::Key(key) => out.push_str(&format!("[{key}]")),
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses a rule's `fieldPath` (`.spec.replicas`, `.labels['app.kubernetes.io/name']`)
/// against the schema of the rule's node, as Kubernetes' `ValidFieldPath` does.
pub(crate) fn parse(path: &str, schema: &Value) -> Result<Vec<Segment>, String> {
    let tokens = tokenize(path);
    let mut tokens = tokens.iter().map(String::as_str);
    let mut schema = schema;
    let mut segments = Vec::new();
    let mut step = |name: String, schema: &mut &Value| -> Result<(), String> {
        if schema.get("properties").is_some() {
            *schema = value::property(schema, &name)
                .ok_or_else(|| "does not refer to a valid field".to_owned())?;
            segments.push(Segment::Field(name));
        } else if let Some(values) = value::additional(schema) {
            *schema = values;
            segments.push(Segment::Key(name));
        } else {
            return Err("does not refer to a valid field".to_owned());
        }
        Ok(())
    };
    while let Some(token) = tokens.next() {
        match token {
            "[" => {
                let quoted = tokens.next().ok_or("unexpected end of JSON path")?;
                if quoted.len() < 2 || !quoted.starts_with('\'') || !quoted.ends_with('\'') {
                    return Err(format!("expected single quoted string but got {quoted}"));
                }
                let name = unescape(&quoted[1..quoted.len() - 1])
                    .map_err(|e| format!("invalid string literal: {e}"))?;
                step(name, &mut schema)?;
                match tokens.next() {
                    Some("]") => {}
                    Some(other) => return Err(format!("expected ] but got {other}")),
                    None => return Err("unexpected end of JSON path".to_owned()),
                }
            }
            "." => {
                let name = tokens.next().ok_or("unexpected end of JSON path")?;
                step(name.to_owned(), &mut schema)?;
            }
            other => return Err(format!("expected [ or . but got: {other}")),
        }
    }
    Ok(segments)
}

/// Splits a field path into `.`, `[`, `]`, single-quoted strings and names.
fn tokenize(path: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = path.chars().peekable();
    let mut current = String::new();
    while let Some(c) = chars.next() {
        if current.is_empty() && c == '\'' {
            current.push(c);
            let mut previous = c;
            for d in chars.by_ref() {
                current.push(d);
                if d == '\'' && previous != '\\' {
                    break;
                }
                previous = d;
            }
            tokens.push(std::mem::take(&mut current));
            continue;
        }
        if matches!(c, '.' | '[' | ']') {
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            tokens.push(c.to_string());
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next() {
            Some('a') => '\u{7}',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('v') => '\u{b}',
            Some('\'') => '\'',
            Some('\\') => '\\',
            Some(other) => return Err(format!("invalid escape char \\{other}")),
            None => return Err("invalid escape char \\".to_owned()),
        };
        out.push(escaped);
    }
    Ok(out)
}
