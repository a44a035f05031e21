//! A light static check of a parsed rule, standing in for cel-go's type
//! checker where it matters most to CRD authors: undeclared variables and
//! functions, fields the schema does not declare (`undefined field 'x'`,
//! including `metadata` fields other than `name`/`generateName` at a
//! resource root), and what the rule needs at run time (whether it reads
//! `oldSelf`, how deeply its comprehensions nest, how big it is).
//!
//! It does not infer result types: a rule that does not evaluate to a bool is
//! reported when it runs, not when it compiles.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::Program;
use serde_json::Value;

use super::library;
use super::value::{additional, escape, is_embedded, items, type_name};

/// What a rule needs at run time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// The rule reads `oldSelf`: it is a transition rule.
    pub uses_old_self: bool,
    /// How deeply comprehensions (`all`, `exists`, `map`, ...) nest.
    pub depth: u32,
    /// Number of expression nodes.
    pub nodes: u64,
}

/// What an expression is known to be.
#[derive(Clone, Copy)]
enum Ty<'s> {
    Unknown,
    /// A value at this schema node; `true` at a resource root.
    Node(&'s Value, bool),
    /// `metadata` of a resource root: only `name` and `generateName`.
    Metadata,
}

struct Checker<'a, 's> {
    program: &'a Program,
    schema: &'s Value,
    root: bool,
    optional_old_self: bool,
    shape: Shape,
}

/// Checks `program`, compiled for the node `schema` (a resource root if
/// `root`); `optional_old_self` types `oldSelf` as an optional.
///
/// # Errors
/// A cel-go style error ("ERROR: <input>:1:6: undefined field 'x'" and the
/// source line with a caret under the offending place).
pub(crate) fn check(
    program: &Program,
    schema: &Value,
    root: bool,
    optional_old_self: bool,
) -> Result<Shape, String> {
    let mut checker = Checker {
        program,
        schema,
        root: root || is_embedded(schema),
        optional_old_self,
        shape: Shape::default(),
    };
    let mut scope = Vec::new();
    checker.walk(program.expression(), &mut scope, 0)?;
    Ok(checker.shape)
}

/// Formats an error at byte `offset` of `source`, as cel-go does.
pub(crate) fn located(source: &str, offset: usize, message: &str) -> String {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    let text = source.lines().nth(line - 1).unwrap_or("");
    format!(
        "ERROR: <input>:{line}:{column}: {message}\n | {text}\n | {}^",
        ".".repeat(column - 1)
    )
}

/// Formats the parser's errors as cel-go does.
pub(crate) fn parse_errors(source: &str, errors: &cel::ParseErrors) -> String {
    errors
        .errors
        .iter()
        .map(|e| {
            let (line, column) = (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize);
            let text = source.lines().nth(line - 1).unwrap_or("");
            format!(
                "ERROR: <input>:{line}:{column}: {}\n | {text}\n | {}^",
                e.msg,
                ".".repeat(column - 1)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names that resolve to types (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "type",
    "uint",
    "optional_type",
];

impl<'a, 's> Checker<'a, 's> {
    fn error(&self, expr: &IdedExpr, message: String) -> String {
        let source = &self.program.source_info().source;
        let offset = self
            .program
            .source_info()
            .offset_for(expr.id)
            .map(|(start, _)| start as usize)
            .unwrap_or(0);
        // Offsets count characters; turn them into a byte offset.
        let byte = source
            .char_indices()
            .nth(offset)
            .map(|(b, _)| b)
            .unwrap_or(source.len());
        located(source, byte, &message)
    }

    fn walk(
        &mut self,
        expr: &IdedExpr,
        scope: &mut Vec<(String, Ty<'s>)>,
        depth: u32,
    ) -> Result<Ty<'s>, String> {
        self.shape.nodes += 1;
        match &expr.expr {
            Expr::Ident(name) => self.ident(expr, name, scope),
            Expr::Select(select) => {
                let operand = self.walk(&select.operand, scope, depth)?;
                self.select(expr, operand, &select.field)
            }
            Expr::Call(call) => {
                let mut qualified = false;
                if let Some(target) = &call.target {
                    if let Expr::Ident(ns) = &target.expr {
                        let bound = scope.iter().any(|(n, _)| n == ns);
                        if !bound
                            && !matches!(ns.as_str(), "self" | "oldSelf")
                            && library::declares(&format!("{ns}.{}", call.func_name))
                        {
                            qualified = true;
                        }
                    }
                }
                let operator = call.func_name.starts_with(['_', '@', '!', '-']);
                if !operator && !qualified && !library::declares(&call.func_name) {
                    return Err(self.error(
                        expr,
                        format!(
                            "undeclared reference to '{}' (in container '')",
                            call.func_name
                        ),
                    ));
                }
                if let (Some(target), false) = (&call.target, qualified) {
                    self.walk(target, scope, depth)?;
                }
                let mut args = Vec::with_capacity(call.args.len());
                for arg in &call.args {
                    args.push(self.walk(arg, scope, depth)?);
                }
                Ok(match (call.func_name.as_str(), args.as_slice()) {
                    ("_[_]", [operand, _]) => element(*operand),
                    _ => Ty::Unknown,
                })
            }
            Expr::Comprehension(c) => {
                let range = self.walk(&c.iter_range, scope, depth)?;
                // `cel.bind` is a comprehension over an empty list literal.
                let binds = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty());
                let inner = if binds { depth } else { depth + 1 };
                self.shape.depth = self.shape.depth.max(inner);
                let accu = self.walk(&c.accu_init, scope, depth)?;
                let before = scope.len();
                let element = match (c.iter_var2.is_some(), range) {
                    (false, Ty::Node(s, _)) if type_name(s) == "array" => items(s)
                        .map(|i| Ty::Node(i, is_embedded(i)))
                        .unwrap_or(Ty::Unknown),
                    _ => Ty::Unknown,
                };
                scope.push((c.iter_var.clone(), element));
                if let Some(v2) = &c.iter_var2 {
                    let second = match range {
                        Ty::Node(s, _) => element_of(s),
                        _ => Ty::Unknown,
                    };
                    scope.push((v2.clone(), second));
                }
                scope.push((c.accu_var.clone(), if binds { accu } else { Ty::Unknown }));
                self.walk(&c.loop_cond, scope, inner)?;
                self.walk(&c.loop_step, scope, inner)?;
                self.walk(&c.result, scope, inner)?;
                scope.truncate(before);
                Ok(Ty::Unknown)
            }
            Expr::List(list) => {
                for e in &list.elements {
                    self.walk(e, scope, depth)?;
                }
                Ok(Ty::Unknown)
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        self.walk(&e.key, scope, depth)?;
                        self.walk(&e.value, scope, depth)?;
                    }
                }
                Ok(Ty::Unknown)
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value, scope, depth)?;
                    }
                }
                Ok(Ty::Unknown)
            }
            Expr::Literal(_) | Expr::Unspecified => Ok(Ty::Unknown),
        }
    }

    fn ident(
        &mut self,
        expr: &IdedExpr,
        name: &str,
        scope: &[(String, Ty<'s>)],
    ) -> Result<Ty<'s>, String> {
        if let Some((_, ty)) = scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(*ty);
        }
        match name {
            "self" => Ok(Ty::Node(self.schema, self.root)),
            "oldSelf" => {
                self.shape.uses_old_self = true;
                if self.optional_old_self {
                    Ok(Ty::Unknown)
                } else {
                    Ok(Ty::Node(self.schema, self.root))
                }
            }
            // Namespaces of qualified functions (`math.greatest`, ...)
            // are handled at the call; `#unused` names bind's iteration.
            _ if TYPE_NAMES.contains(&name) || name.starts_with('#') || name.starts_with('@') => {
                Ok(Ty::Unknown)
            }
            _ => Err(self.error(
                expr,
                format!("undeclared reference to '{name}' (in container '')"),
            )),
        }
    }

    fn select(&self, expr: &IdedExpr, operand: Ty<'s>, field: &str) -> Result<Ty<'s>, String> {
        let undefined = || self.error(expr, format!("undefined field '{field}'"));
        match operand {
            Ty::Unknown => Ok(Ty::Unknown),
            Ty::Metadata => match field {
                "name" | "generateName" => Ok(Ty::Unknown),
                _ => Err(undefined()),
            },
            Ty::Node(schema, root) => {
                if root {
                    match field {
                        "apiVersion" | "kind" => return Ok(Ty::Unknown),
                        "metadata" => return Ok(Ty::Metadata),
                        _ => {}
                    }
                }
                if let Some(values) = additional(schema) {
                    return Ok(Ty::Node(values, is_embedded(values)));
                }
                let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                    return Ok(Ty::Unknown);
                };
                properties
                    .iter()
                    .find(|(name, _)| escape(name).as_deref() == Some(field))
                    .map(|(_, p)| Ty::Node(p, is_embedded(p)))
                    .ok_or_else(undefined)
            }
        }
    }
}

/// The type of `x[i]` for `x` of type `operand`.
fn element(operand: Ty<'_>) -> Ty<'_> {
    match operand {
        Ty::Node(schema, _) => element_of(schema),
        _ => Ty::Unknown,
    }
}

fn element_of(schema: &Value) -> Ty<'_> {
    match type_name(schema) {
        "array" => items(schema)
            .map(|i| Ty::Node(i, is_embedded(i)))
            .unwrap_or(Ty::Unknown),
        _ => additional(schema)
            .map(|v| Ty::Node(v, is_embedded(v)))
            .unwrap_or(Ty::Unknown),
    }
}
