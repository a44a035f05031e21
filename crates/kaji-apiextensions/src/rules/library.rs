//! The CEL environment rules compile in: the cel crate's standard library
//! and its `strings`, `lists` and `math` extensions, plus what Kubernetes'
//! library adds that is easy to mirror — list functions (`isSorted`, `sum`,
//! `min`, `max`, `indexOf`, `lastIndexOf`), regex `find`/`findAll`,
//! `sets.contains`/`sets.equivalent`/`sets.intersects` and `cel.bind`.
//!
//! Not provided: `url()`, `quantity()`, `ip()`, `cidr()`, `semver()`,
//! `format.*` named formats and `authz`; rules calling them fail to compile
//! with "undeclared reference".

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue};
use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{Env, ExecutionError, Value as Cel};

/// The shared environment every rule is compiled and evaluated with.
pub(crate) fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(build().expect("the rule library declares no overload twice")))
        .clone()
}

fn build() -> Result<Env, cel::DeclarationError> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)?;
    env.add_extension(cel::extensions::lists)?;
    env.add_extension(cel::extensions::math)?;
    let list = |env: &mut Env, name: &str, args: Vec<cel::common::types::Type>, f| {
        let id = format!("list.{name}({})", args.len());
        env.add_member_overload(name, &id, LIST_TYPE, args, f)
    };
    list(&mut env, "isSorted", vec![], is_sorted)?;
    list(&mut env, "sum", vec![], sum)?;
    list(&mut env, "min", vec![], min)?;
    list(&mut env, "max", vec![], max)?;
    list(&mut env, "indexOf", vec![DYN_TYPE], index_of)?;
    list(&mut env, "lastIndexOf", vec![DYN_TYPE], last_index_of)?;
    env.add_member_overload(
        "find",
        "string.find(string)",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string.findAll(string)",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string.findAll(string,int)",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    for (name, f) in [
        (
            "sets.contains",
            sets_contains as cel::common::functions::Function,
        ),
        ("sets.equivalent", sets_equivalent),
        ("sets.intersects", sets_intersects),
    ] {
        env.add_overload(name, name, vec![LIST_TYPE, LIST_TYPE], f)?;
    }
    env.add_macro(Macro::receiver("bind", 3, bind))?;
    Ok(env)
}

/// Whether `name` is a function or method the environment declares.
pub(crate) fn declares(name: &str) -> bool {
    let mut probe = cel::Context::with_env(env());
    probe.add_function(name, || true).is_err()
}

/// `cel.bind(name, init, expr)`: `expr` with `name` bound to `init`, as a
/// comprehension over nothing whose accumulator is the bound name.
fn bind(
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    if !matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(ns)) if ns == "cel") {
        return Ok(None);
    }
    let name = match &args[0].expr {
        Expr::Ident(name) => name.clone(),
        _ => {
            return Err(helper.new_error(
                args[0].id,
                "cel.bind() variable names must be simple identifiers",
            ))
        }
    };
    let result = args.pop().expect("three arguments");
    let init = args.pop().expect("three arguments");
    let range = helper.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let cond = helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into())));
    let step = helper.next_expr(Expr::Ident(name.clone()));
    let comprehension = ComprehensionExpr {
        iter_range: range,
        iter_var: "#unused".to_owned(),
        iter_var2: None,
        accu_var: name,
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result,
    };
    Ok(Some(
        helper.next_expr(Expr::Comprehension(Box::new(comprehension))),
    ))
}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type List = Arc<Vec<Cel>>;
type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

fn values(args: &Args<'_, '_>) -> Result<Vec<Cel>, ExecutionError> {
    args.iter().map(|a| Cel::try_from(a.as_ref())).collect()
}

fn out<'b, 'v>(value: Cel) -> Out<'b, 'v> {
    let boxed: Box<dyn Val> = value.try_into()?;
    Ok(CowVal::Owned(boxed))
}

fn elements(value: &Cel, function: &str) -> Result<List, ExecutionError> {
    match value {
        Cel::List(list) => Ok(list.clone()),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a list, got {:?}", other.type_of()),
        )),
    }
}

fn compare(a: &Cel, b: &Cel, function: &str) -> Result<Ordering, ExecutionError> {
    a.partial_cmp(b)
        .ok_or_else(|| ExecutionError::function_error(function, "list elements must be comparable"))
}

fn is_sorted<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let list = elements(&values(&args)?[0], "isSorted")?;
    for pair in list.windows(2) {
        if compare(&pair[0], &pair[1], "isSorted")? == Ordering::Greater {
            return out(Cel::Bool(false));
        }
    }
    out(Cel::Bool(true))
}

fn sum<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let list = elements(&values(&args)?[0], "sum")?;
    let overflow = || ExecutionError::function_error("sum", "integer overflow");
    let total = match list.first() {
        None | Some(Cel::Int(_)) => {
            let mut t: i64 = 0;
            for v in list.iter() {
                let Cel::Int(i) = v else {
                    return Err(ExecutionError::function_error("sum", "mixed element types"));
                };
                t = t.checked_add(*i).ok_or_else(overflow)?;
            }
            Cel::Int(t)
        }
        Some(Cel::UInt(_)) => {
            let mut t: u64 = 0;
            for v in list.iter() {
                let Cel::UInt(i) = v else {
                    return Err(ExecutionError::function_error("sum", "mixed element types"));
                };
                t = t.checked_add(*i).ok_or_else(overflow)?;
            }
            Cel::UInt(t)
        }
        Some(Cel::Float(_)) => {
            let mut t = 0.0;
            for v in list.iter() {
                let Cel::Float(f) = v else {
                    return Err(ExecutionError::function_error("sum", "mixed element types"));
                };
                t += f;
            }
            Cel::Float(t)
        }
        Some(Cel::Duration(_)) => {
            let mut t = chrono::Duration::zero();
            for v in list.iter() {
                let Cel::Duration(d) = v else {
                    return Err(ExecutionError::function_error("sum", "mixed element types"));
                };
                t = t.checked_add(d).ok_or_else(overflow)?;
            }
            Cel::Duration(t)
        }
        Some(other) => {
            return Err(ExecutionError::function_error(
                "sum",
                format!("cannot sum {}", other.type_of()),
            ))
        }
    };
    out(total)
}

fn extreme<'b, 'v>(args: Args<'b, 'v>, function: &str, keep: Ordering) -> Out<'b, 'v> {
    let list = elements(&values(&args)?[0], function)?;
    let mut best = list.first().cloned().ok_or_else(|| {
        ExecutionError::function_error(function, format!("{function}(): list cannot be empty"))
    })?;
    for v in list.iter().skip(1) {
        if compare(v, &best, function)? == keep {
            best = v.clone();
        }
    }
    out(best)
}

fn min<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    extreme(args, "max", Ordering::Greater)
}

fn index_of<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let vals = values(&args)?;
    let list = elements(&vals[0], "indexOf")?;
    let at = list.iter().position(|v| v == &vals[1]);
    out(Cel::Int(at.map(|i| i as i64).unwrap_or(-1)))
}

fn last_index_of<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let vals = values(&args)?;
    let list = elements(&vals[0], "lastIndexOf")?;
    let at = list.iter().rposition(|v| v == &vals[1]);
    out(Cel::Int(at.map(|i| i as i64).unwrap_or(-1)))
}

fn strings(vals: &[Cel]) -> (String, String) {
    let text = |v: &Cel| match v {
        Cel::String(s) => s.as_str().to_owned(),
        _ => String::new(),
    };
    (text(&vals[0]), text(&vals[1]))
}

fn regex(pattern: &str, function: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e))
}

fn find<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (text, pattern) = strings(&values(&args)?);
    let found = regex(&pattern, "find")?
        .find(&text)
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    out(Cel::from(found))
}

fn find_all_limited<'b, 'v>(args: Args<'b, 'v>, limit: Option<i64>) -> Out<'b, 'v> {
    let (text, pattern) = strings(&values(&args)?);
    let re = regex(&pattern, "findAll")?;
    let take = match limit {
        Some(n) if n >= 0 => n as usize,
        _ => usize::MAX,
    };
    let found: Vec<Cel> = re
        .find_iter(&text)
        .take(take)
        .map(|m| Cel::from(m.as_str()))
        .collect();
    out(Cel::List(Arc::new(found)))
}

fn find_all<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    find_all_limited(args, None)
}

fn find_all_n<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let limit = match Cel::try_from(args[2].as_ref())? {
        Cel::Int(n) => n,
        _ => -1,
    };
    find_all_limited(args, Some(limit))
}

fn two_lists(args: &Args<'_, '_>, function: &str) -> Result<(List, List), ExecutionError> {
    let vals = values(args)?;
    Ok((elements(&vals[0], function)?, elements(&vals[1], function)?))
}

fn sets_contains<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (a, b) = two_lists(&args, "sets.contains")?;
    out(Cel::Bool(b.iter().all(|x| a.contains(x))))
}

fn sets_equivalent<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (a, b) = two_lists(&args, "sets.equivalent")?;
    out(Cel::Bool(
        b.iter().all(|x| a.contains(x)) && a.iter().all(|x| b.contains(x)),
    ))
}

fn sets_intersects<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let (a, b) = two_lists(&args, "sets.intersects")?;
    out(Cel::Bool(b.iter().any(|x| a.contains(x))))
}

/// An evaluation error worded as cel-go words it, where the two differ.
pub(crate) fn error_text(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::Overflow(..) => "integer overflow".to_owned(),
        ExecutionError::IndexOutOfBounds(i) => match i {
            Cel::Int(i) => format!("index out of bounds: {i}"),
            other => format!("index out of bounds: {other:?}"),
        },
        ExecutionError::UndeclaredReference(name) => format!("no such attribute: {name}"),
        ExecutionError::NoSuchOverload(_)
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::ValuesNotComparable(..) => format!("no such overload: {error}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(source: &str) -> Result<Cel, ExecutionError> {
        let env = env();
        let program = env.compile(source).expect("test expression parses");
        program.execute(&cel::Context::with_env(env))
    }

    #[test]
    fn the_functions_rules_commonly_call_are_declared() {
        for name in [
            "size",
            "matches",
            "startsWith",
            "endsWith",
            "contains",
            "int",
            "uint",
            "double",
            "string",
            "bool",
            "bytes",
            "dyn",
            "type",
            "timestamp",
            "duration",
            "getFullYear",
            "lowerAscii",
            "upperAscii",
            "trim",
            "split",
            "join",
            "replace",
            "substring",
            "indexOf",
            "lastIndexOf",
            "charAt",
            "format",
            "hasValue",
            "value",
            "orValue",
            "isSorted",
            "sum",
            "min",
            "max",
            "find",
            "findAll",
            "sets.contains",
            "sets.equivalent",
            "sets.intersects",
            "math.ceil",
            "optional.of",
            "optional.none",
            "reverse",
            "sort",
            "distinct",
            "flatten",
            "slice",
        ] {
            assert!(declares(name), "{name} should be declared");
        }
        assert!(!declares("frobnicate"));
        assert!(!declares("quantity"), "quantity() is not provided");
    }

    #[test]
    fn the_kubernetes_list_and_regex_functions_behave_as_documented() {
        let t = |s: &str| assert_eq!(eval(s), Ok(Cel::Bool(true)), "{s}");
        t("[1, 2, 2, 3].isSorted() && ![2, 1].isSorted() && [].isSorted()");
        t("[1, 2, 3].sum() == 6 && [1.5, 2.5].sum() == 4.0 && [].sum() == 0");
        t("[3, 1, 2].min() == 1 && ['b', 'c', 'a'].max() == 'c'");
        t("[1, 2, 1].indexOf(1) == 0 && [1, 2, 1].lastIndexOf(1) == 2 && [1].indexOf(5) == -1");
        t("'abc 123 def 456'.find('[0-9]+') == '123' && 'abc'.find('[0-9]+') == ''");
        t("'a1b22c333'.findAll('[0-9]+') == ['1', '22', '333']");
        t("'a1b22c333'.findAll('[0-9]+', 2) == ['1', '22']");
        t("sets.contains([1, 2, 3], [3, 1]) && !sets.contains([1], [2])");
        t("sets.equivalent([1, 2, 1], [2, 1]) && sets.intersects([1, 2], [2, 5])");
        t("cel.bind(x, 'ab', x + x) == 'abab'");
        assert!(eval("[].min()").is_err());
        assert!(eval("[9223372036854775807, 1].sum()").is_err());
    }

    #[test]
    fn evaluation_errors_are_worded_as_cel_go_words_them() {
        let text = |s: &str| error_text(&eval(s).expect_err(s));
        assert_eq!(text("{'a': 1}.b"), "no such key: b");
        assert_eq!(text("1 / 0"), "division by zero");
        assert_eq!(text("[1][2]"), "index out of bounds: 2");
        assert!(text("1 + 'a'").starts_with("no such overload"));
    }
}
