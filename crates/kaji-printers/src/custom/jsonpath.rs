//! kubectl's JSONPath dialect (`k8s.io/client-go/util/jsonpath`), as the
//! apiextensions-apiserver evaluates `additionalPrinterColumns`: parsed as the
//! template `{<jsonPath>}`, run with missing keys allowed.
//!
//! Only finding results is implemented, not printing templates; the caller
//! renders the first result. The parser and the evaluator follow client-go's
//! behaviour, quirks included, because a column must show what Kubernetes
//! shows for the same object:
//! - `['a.b']` is re-read as `.a.b`; a dot inside a key must be escaped
//!   (`.metadata.labels.app\.kubernetes\.io/name`).
//! - `[]` means `[0]`, `[*]` means `[:]`, and `[*]` on an empty array ends the
//!   whole step, skipping the arrays after it.
//! - An index out of bounds, indexing or filtering a non-array, comparing
//!   values of different kinds (a string with a number, an integer with a
//!   float) or comparing `null` is an error, which empties the cell.
//! - `.*` and `..` visit a string's bytes, as unsigned integers.
//!
//! # Caveats
//! - `range`/`end` are not evaluated; any `range` or `end` empties the cell.
//!   (client-go's `range` in a column either yields nothing or rewrites the
//!   shared template, so no column can rely on it.)
//! - `.*` and `..` visit an object's keys in stored order; Go visits them in
//!   random order.

use serde_json::Value;

/// A column's path could not be parsed; Kubernetes then drops the column
/// and every column after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(pub(crate) &'static str);

/// One value found while evaluating: a part of the object, or one of the
/// kinds of Go value client-go can produce besides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item<'a> {
    /// A part of the object.
    Json(&'a Value),
    /// A byte of a string, visited by `.*` or `..` (Go's `uint8`).
    Byte(u8),
    /// A quoted literal (Go's `string`).
    Text(String),
    /// An integer literal (Go's `int`, not the objects' `int64`).
    Int(i64),
    /// A float literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

/// One bound of an array selection `[start:end:step]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Param {
    value: i64,
    known: bool,
    /// `end` was derived from `start` (`[i]` is `[i:i+1]`).
    derived: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum FilterOp {
    Exists,
    Compare(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    List(Vec<Node>),
    Text(String),
    Field(String),
    Array([Param; 3]),
    Filter {
        left: Vec<Node>,
        right: Vec<Node>,
        op: FilterOp,
    },
    Int(i64),
    Float(f64),
    Bool(bool),
    Wildcard,
    Recursive,
    Union(Vec<Vec<Node>>),
    Identifier(String),
}

/// A parsed column path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonPath {
    root: Vec<Node>,
}

impl JsonPath {
    /// Parses a column's `jsonPath` as Kubernetes does, as the template
    /// `{<path>}`.
    ///
    /// # Errors
    /// [`ParseError`] when client-go's parser rejects the template.
    pub(crate) fn parse_column(path: &str) -> Result<Self, ParseError> {
        Ok(Self {
            root: parse_template(&format!("{{{path}}}"))?,
        })
    }

    /// The first value the path finds in `data`, the only one a column
    /// shows; `None` when it finds nothing or evaluation fails.
    pub(crate) fn first<'a>(&self, data: &'a Value) -> Option<Item<'a>> {
        let mut eval = Evaluator { ranged: false };
        let mut first = None;
        // Every top-level part is evaluated, so an error in a later one
        // still empties the cell, as FindResults fails as a whole.
        for node in &self.root {
            let results = eval.walk(vec![Item::Json(data)], node).ok()?;
            if eval.ranged {
                return None;
            }
            first.get_or_insert(results);
        }
        first?.into_iter().next()
    }
}

/// Parses a whole template: text, and actions between `{` and `}`.
fn parse_template(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut p = Parser {
        input: text,
        pos: 0,
        start: 0,
        width: 0,
    };
    let mut root = Vec::new();
    loop {
        let Some(i) = p.input[p.pos..].find('{') else {
            p.pos = p.input.len();
            if p.pos > p.start {
                root.push(Node::Text(p.consume().to_string()));
            }
            return Ok(root);
        };
        p.pos += i;
        if p.pos > p.start {
            root.push(Node::Text(p.consume().to_string()));
        }
        p.pos += 1;
        p.consume();
        root.push(Node::List(p.parse_action()?));
    }
}

/// client-go's `parseAction`: the nodes of a single action `{text}`.
fn parse_sub_action(text: &str) -> Result<Vec<Node>, ParseError> {
    match parse_template(&format!("{{{text}}}"))?.into_iter().next() {
        Some(Node::List(nodes)) => Ok(nodes),
        _ => Err(ParseError("empty action")),
    }
}

struct Parser<'s> {
    input: &'s str,
    pos: usize,
    start: usize,
    /// Width of the last character read, so one `backup` can undo it.
    width: usize,
}

fn is_terminator(r: Option<char>) -> bool {
    matches!(
        r,
        None | Some(' ' | '\t' | '\r' | '\n' | '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}')
    )
}

fn is_alphanumeric(r: char) -> bool {
    r == '_' || r.is_alphabetic() || r.is_numeric()
}

impl<'s> Parser<'s> {
    fn next(&mut self) -> Option<char> {
        let r = self.input[self.pos..].chars().next();
        self.width = r.map_or(0, char::len_utf8);
        self.pos += self.width;
        r
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn consume(&mut self) -> &'s str {
        let text = &self.input[self.start..self.pos];
        self.start = self.pos;
        text
    }

    /// The byte two before the cursor, to spot an escaped closing quote.
    fn escaped(&self) -> bool {
        self.pos >= 2 && self.input.as_bytes()[self.pos - 2] == b'\\'
    }

    /// `parseInsideAction` up to and including the closing `}`.
    fn parse_action(&mut self) -> Result<Vec<Node>, ParseError> {
        let mut cur = Vec::new();
        loop {
            let rest = &self.input[self.pos..];
            if rest.starts_with('}') {
                self.pos += 1;
                self.consume();
                return Ok(cur);
            }
            if rest.starts_with("[?(") {
                self.parse_filter(&mut cur)?;
                continue;
            }
            if rest.starts_with("..") {
                self.parse_recursive(&mut cur)?;
                continue;
            }
            match self.next() {
                None | Some('\r' | '\n') => return Err(ParseError("unclosed action")),
                Some(' ' | '@' | '$') => {
                    self.consume();
                }
                Some('[') => self.parse_array(&mut cur)?,
                Some(q @ ('"' | '\'')) => self.parse_quote(&mut cur, q)?,
                Some('.') => self.parse_field(&mut cur),
                Some(r) if r == '+' || r == '-' || r.is_numeric() => {
                    self.backup();
                    self.parse_number(&mut cur)?;
                }
                Some(r) if is_alphanumeric(r) => {
                    self.backup();
                    self.parse_identifier(&mut cur);
                }
                Some(_) => return Err(ParseError("unrecognized character in action")),
            }
        }
    }

    fn parse_identifier(&mut self, cur: &mut Vec<Node>) {
        while !is_terminator(self.next()) {}
        self.backup();
        let value = self.consume();
        cur.push(match value {
            "true" => Node::Bool(true),
            "false" => Node::Bool(false),
            _ => Node::Identifier(value.to_string()),
        });
    }

    fn parse_recursive(&mut self, cur: &mut Vec<Node>) -> Result<(), ParseError> {
        if cur.last() == Some(&Node::Recursive) {
            return Err(ParseError("invalid multiple recursive descent"));
        }
        self.pos += 2;
        self.consume();
        cur.push(Node::Recursive);
        if self.peek().is_some_and(is_alphanumeric) {
            self.parse_field(cur);
        }
        Ok(())
    }

    fn parse_number(&mut self, cur: &mut Vec<Node>) -> Result<(), ParseError> {
        if matches!(self.peek(), Some('+' | '-')) {
            self.next();
        }
        while matches!(self.next(), Some(r) if r == '.' || r.is_numeric()) {}
        self.backup();
        let value = self.consume();
        if let Ok(i) = value.parse::<i64>() {
            cur.push(Node::Int(i));
        } else if let Ok(f) = value.parse::<f64>() {
            cur.push(Node::Float(f));
        } else {
            return Err(ParseError("cannot parse number"));
        }
        Ok(())
    }

    fn parse_array(&mut self, cur: &mut Vec<Node>) -> Result<(), ParseError> {
        loop {
            match self.next() {
                None | Some('\n') => return Err(ParseError("unterminated array")),
                Some(']') => break,
                Some(_) => {}
            }
        }
        let text = self.consume();
        let mut text = &text[1..text.len() - 1];
        if text == "*" {
            text = ":";
        }

        if text.contains(',') {
            let union = text
                .split(',')
                .map(|part| parse_sub_action(&format!("[{}]", part.trim_matches(' '))))
                .collect::<Result<Vec<_>, _>>()?;
            cur.push(Node::Union(union));
            return Ok(());
        }

        if let Some(key) = text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .filter(|k| !k.contains('\''))
        {
            // A dict key is re-read as a field path: `['a.b']` is `.a.b`.
            cur.extend(parse_sub_action(&format!(".{key}"))?);
            return Ok(());
        }

        cur.push(Node::Array(slice_params(text)?));
        Ok(())
    }

    fn parse_filter(&mut self, cur: &mut Vec<Node>) -> Result<(), ParseError> {
        self.pos += 3;
        self.consume();
        let (mut begin, mut end, mut pair) = (false, false, '"');
        loop {
            match self.next() {
                None | Some('\n') => return Err(ParseError("unterminated filter")),
                Some(q @ ('"' | '\'')) => {
                    if !begin {
                        begin = true;
                        pair = q;
                        continue;
                    }
                    if !self.escaped() && q == pair {
                        end = true;
                    }
                }
                Some(')') if begin == end => break,
                Some(_) => {}
            }
        }
        if self.next() != Some(']') {
            return Err(ParseError("unclosed array expect ]"));
        }
        let text = self.consume();
        let text = &text[..text.len() - 2];
        let node = match split_comparison(text) {
            None => Node::Filter {
                left: parse_sub_action(text)?,
                right: Vec::new(),
                op: FilterOp::Exists,
            },
            Some((left, op, right)) => Node::Filter {
                left: parse_sub_action(left)?,
                right: parse_sub_action(right)?,
                op: FilterOp::Compare(op.to_string()),
            },
        };
        cur.push(node);
        Ok(())
    }

    fn parse_quote(&mut self, cur: &mut Vec<Node>, quote: char) -> Result<(), ParseError> {
        loop {
            match self.next() {
                None | Some('\n') => return Err(ParseError("unterminated quoted string")),
                Some(r) if r == quote && !self.escaped() => break,
                Some(_) => {}
            }
        }
        let value = self.consume();
        cur.push(Node::Text(unquote(value, quote)?));
        Ok(())
    }

    fn parse_field(&mut self, cur: &mut Vec<Node>) {
        self.consume();
        loop {
            let r = self.next();
            if r == Some('\\') {
                self.next();
            } else if is_terminator(r) {
                self.backup();
                break;
            }
        }
        let value = self.consume();
        cur.push(if value == "*" {
            Node::Wildcard
        } else {
            Node::Field(value.replace('\\', ""))
        });
    }
}

/// The regular expression `^([^!<>=]+)([!<>=]+)(.+?)$` of `parseFilter`.
fn split_comparison(text: &str) -> Option<(&str, &str, &str)> {
    let is_op = |c: char| matches!(c, '!' | '<' | '>' | '=');
    let i = text.find(is_op).filter(|&i| i > 0)?;
    let run_end = text[i..].find(|c| !is_op(c)).map_or(text.len(), |k| i + k);
    if run_end < text.len() {
        Some((&text[..i], &text[i..run_end], &text[run_end..]))
    } else if run_end - i >= 2 {
        // The operator run reaches the end: the regexp backtracks one
        // operator character into the (non-empty) right side.
        let last = text.len() - 1;
        Some((&text[..i], &text[i..last], &text[last..]))
    } else {
        None
    }
}

/// The regular expression `^(-?[\d]*)(:-?[\d]*)?(:-?[\d]*)?$` of
/// `parseArray`, and the bounds it gives.
fn slice_params(text: &str) -> Result<[Param; 3], ParseError> {
    let parts: Vec<&str> = text.split(':').collect();
    let well_formed = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        digits.bytes().all(|b| b.is_ascii_digit())
    };
    if parts.len() > 3 || !parts.iter().all(|p| well_formed(p)) {
        return Err(ParseError("invalid array index"));
    }
    let unknown = Param {
        value: 0,
        known: false,
        derived: false,
    };
    let bound = |s: &str| -> Result<Param, ParseError> {
        if s.is_empty() {
            return Ok(unknown);
        }
        Ok(Param {
            value: s
                .parse()
                .map_err(|_| ParseError("array index is not a number"))?,
            known: true,
            derived: false,
        })
    };
    let start = bound(parts[0])?;
    let end = match parts.get(1) {
        Some(s) => bound(s)?,
        // `[i]` is `[i:i+1]` (Go's int arithmetic wraps).
        None => Param {
            value: start.value.wrapping_add(1),
            known: true,
            derived: true,
        },
    };
    let step = match parts.get(2) {
        Some(s) => bound(s)?,
        None => unknown,
    };
    Ok([start, end, step])
}

/// client-go's `UnquoteExtend`: Go's `strconv.Unquote` for `"…"` and `'…'`.
fn unquote(s: &str, quote: char) -> Result<String, ParseError> {
    let err = ParseError("invalid quoted string");
    let inner = s
        .strip_prefix(quote)
        .and_then(|t| t.strip_suffix(quote))
        .ok_or(err.clone())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return Err(err);
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next().ok_or(err.clone())?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, ParseError> {
            let digits: String = chars.take(n).collect();
            if digits.len() != n {
                return Err(ParseError("invalid escape"));
            }
            u32::from_str_radix(&digits, 16).map_err(|_| ParseError("invalid escape"))
        };
        let decoded = match escaped {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            '\'' | '"' if escaped == quote => escaped,
            'x' => {
                // Go writes `\xNN` as a raw byte; only ASCII is valid UTF-8 here.
                char::from_u32(hex(&mut chars, 2)?)
                    .filter(char::is_ascii)
                    .ok_or(err.clone())?
            }
            'u' => char::from_u32(hex(&mut chars, 4)?).ok_or(err.clone())?,
            'U' => char::from_u32(hex(&mut chars, 8)?).ok_or(err.clone())?,
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&format!("{escaped}{rest}"), 8)
                    .ok()
                    .filter(|&c| c < 0x80 && rest.len() == 2)
                    .ok_or(err.clone())?;
                char::from_u32(code).ok_or(err.clone())?
            }
            _ => return Err(err),
        };
        out.push(decoded);
    }
    Ok(out)
}

/// What an evaluation step returns: the values found, or on error the values
/// client-go returns alongside it (only an `exists` filter looks at those).
type Found<'a> = Result<Vec<Item<'a>>, Vec<Item<'a>>>;

struct Evaluator {
    /// A `range` was met; see the module's caveats.
    ranged: bool,
}

fn json<'a>(item: &Item<'a>) -> Option<&'a Value> {
    match item {
        Item::Json(v) => Some(*v),
        _ => None,
    }
}

/// `template.Indirect`'s nil: a JSON `null`.
fn is_nil(item: &Item<'_>) -> bool {
    matches!(item, Item::Json(Value::Null))
}

/// The entries `.*` and `..` visit: object values, array elements, and the
/// bytes of a string.
fn children<'a>(item: &Item<'a>) -> Vec<Item<'a>> {
    let bytes = |s: &str| s.bytes().map(Item::Byte).collect();
    match item {
        Item::Json(Value::Object(m)) => m.values().map(Item::Json).collect(),
        Item::Json(Value::Array(a)) => a.iter().map(Item::Json).collect(),
        Item::Json(Value::String(s)) => bytes(s),
        Item::Text(s) => bytes(s),
        _ => Vec::new(),
    }
}

impl Evaluator {
    fn walk<'a>(&mut self, input: Vec<Item<'a>>, node: &Node) -> Found<'a> {
        match node {
            Node::List(nodes) => self.list(input, nodes),
            Node::Text(text) => Ok(vec![Item::Text(text.clone())]),
            Node::Field(name) => Ok(field(&input, name)),
            Node::Array(params) => array(input, params),
            Node::Filter { left, right, op } => self.filter(input, left, right, op),
            Node::Int(i) => Ok(vec![Item::Int(*i); input.len()]),
            Node::Float(f) => Ok(vec![Item::Float(*f); input.len()]),
            Node::Bool(b) => Ok(vec![Item::Bool(*b); input.len()]),
            Node::Wildcard => Ok(input
                .iter()
                .filter(|v| !is_nil(v))
                .flat_map(children)
                .collect()),
            Node::Recursive => Ok(recursive(&input)),
            Node::Union(lists) => {
                let mut result = Vec::new();
                for list in lists {
                    match self.list(input.clone(), list) {
                        Ok(found) => result.extend(found),
                        Err(_) => return Err(input),
                    }
                }
                Ok(result)
            }
            Node::Identifier(name) if name == "range" => {
                self.ranged = true;
                Ok(input)
            }
            Node::Identifier(name) if name == "end" => Err(Vec::new()),
            Node::Identifier(_) => Err(input),
        }
    }

    fn list<'a>(&mut self, input: Vec<Item<'a>>, nodes: &[Node]) -> Found<'a> {
        let mut cur = input;
        for node in nodes {
            cur = self.walk(cur, node)?;
        }
        Ok(cur)
    }

    fn filter<'a>(
        &mut self,
        input: Vec<Item<'a>>,
        left: &[Node],
        right: &[Node],
        op: &FilterOp,
    ) -> Found<'a> {
        let mut results = Vec::new();
        for i in 0..input.len() {
            // Unlike other steps a filter does not skip null: it fails on it.
            let Some(Value::Array(elements)) = json(&input[i]) else {
                return Err(input);
            };
            for element in elements {
                let temp = vec![Item::Json(element)];
                let lefts = self.list(temp.clone(), left);
                let FilterOp::Compare(op) = op else {
                    if lefts.as_ref().unwrap_or_else(|e| e).is_empty() {
                        continue;
                    }
                    results.push(Item::Json(element));
                    continue;
                };
                let Ok(lefts) = lefts else {
                    return Err(input);
                };
                let l = match lefts.as_slice() {
                    [] => continue,
                    [l] => l.clone(),
                    _ => return Err(input),
                };
                let Ok(rights) = self.list(temp, right) else {
                    return Err(input);
                };
                let r = match rights.as_slice() {
                    [] => continue,
                    [r] => r.clone(),
                    _ => return Err(input),
                };
                match compare(op, &l, &r) {
                    Ok(true) => results.push(Item::Json(element)),
                    Ok(false) => {}
                    Err(()) => return Err(results),
                }
            }
        }
        Ok(results)
    }
}

fn field<'a>(input: &[Item<'a>], name: &str) -> Vec<Item<'a>> {
    input
        .iter()
        .filter_map(|v| json(v)?.as_object()?.get(name).map(Item::Json))
        .collect()
}

fn array<'a>(input: Vec<Item<'a>>, params: &[Param; 3]) -> Found<'a> {
    let mut result = Vec::new();
    for i in 0..input.len() {
        if is_nil(&input[i]) {
            continue;
        }
        let Some(Value::Array(elements)) = json(&input[i]) else {
            return Err(input);
        };
        let len = i64::try_from(elements.len()).unwrap_or(i64::MAX);
        let mut p = *params;
        if !p[0].known {
            p[0].value = 0;
        }
        if p[0].value < 0 {
            p[0].value += len;
        }
        if !p[1].known {
            p[1].value = len;
        }
        if p[1].value < 0 || (p[1].value == 0 && p[1].derived) {
            p[1].value += len;
        }
        let (start, end) = (p[0].value, p[1].value);
        if start == end {
            // client-go returns here, skipping the remaining inputs.
            return Ok(result);
        }
        if start >= len || start < 0 || end > len || end < 0 || start > end {
            return Err(input);
        }
        let step = if p[2].known {
            if p[2].value <= 0 {
                return Err(input);
            }
            p[2].value
        } else {
            1
        };
        let (Ok(start), Ok(end), Ok(step)) = (
            usize::try_from(start),
            usize::try_from(end),
            usize::try_from(step),
        ) else {
            return Err(input);
        };
        result.extend(elements[start..end].iter().step_by(step).map(Item::Json));
    }
    Ok(result)
}

fn recursive<'a>(input: &[Item<'a>]) -> Vec<Item<'a>> {
    let mut result = Vec::new();
    for value in input.iter().filter(|v| !is_nil(v)) {
        let kids = children(value);
        if !kids.is_empty() {
            result.push(value.clone());
            result.extend(recursive(&kids));
        }
    }
    result
}

/// A value as Go's text/template comparisons see it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Basic<'x> {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(&'x str),
}

/// `basicKind`: objects, arrays and `null` cannot be compared. Integers in
/// objects are Go's `int64`, other numbers `float64`.
fn basic<'x>(item: &'x Item<'_>) -> Result<Basic<'x>, ()> {
    Ok(match item {
        Item::Json(Value::Bool(b)) | Item::Bool(b) => Basic::Bool(*b),
        Item::Json(Value::Number(n)) => match n.as_i64() {
            Some(i) => Basic::Int(i),
            None => Basic::Float(n.as_f64().ok_or(())?),
        },
        Item::Json(Value::String(s)) => Basic::Str(s),
        Item::Json(_) => return Err(()),
        Item::Byte(b) => Basic::Uint(u64::from(*b)),
        Item::Text(s) => Basic::Str(s),
        Item::Int(i) => Basic::Int(*i),
        Item::Float(f) => Basic::Float(*f),
    })
}

fn equal(a: Basic<'_>, b: Basic<'_>) -> Result<bool, ()> {
    Ok(match (a, b) {
        (Basic::Bool(x), Basic::Bool(y)) => x == y,
        (Basic::Int(x), Basic::Int(y)) => x == y,
        (Basic::Uint(x), Basic::Uint(y)) => x == y,
        (Basic::Float(x), Basic::Float(y)) => x == y,
        (Basic::Str(x), Basic::Str(y)) => x == y,
        (Basic::Int(x), Basic::Uint(y)) | (Basic::Uint(y), Basic::Int(x)) => {
            u64::try_from(x) == Ok(y)
        }
        _ => return Err(()),
    })
}

fn less(a: Basic<'_>, b: Basic<'_>) -> Result<bool, ()> {
    Ok(match (a, b) {
        (Basic::Int(x), Basic::Int(y)) => x < y,
        (Basic::Uint(x), Basic::Uint(y)) => x < y,
        (Basic::Float(x), Basic::Float(y)) => x < y,
        (Basic::Str(x), Basic::Str(y)) => x < y,
        (Basic::Int(x), Basic::Uint(y)) => u64::try_from(x).map_or(true, |x| x < y),
        (Basic::Uint(x), Basic::Int(y)) => u64::try_from(y).is_ok_and(|y| x < y),
        _ => return Err(()),
    })
}

/// A filter comparison; `Err` is a comparison Go's template package refuses.
fn compare(op: &str, l: &Item<'_>, r: &Item<'_>) -> Result<bool, ()> {
    let (a, b) = (basic(l)?, basic(r)?);
    let less_equal = || Ok::<_, ()>(less(a, b)? || equal(a, b)?);
    match op {
        "==" => equal(a, b),
        "!=" => equal(a, b).map(|e| !e),
        "<" => less(a, b),
        ">=" => less(a, b).map(|l| !l),
        "<=" => less_equal(),
        ">" => less_equal().map(|le| !le),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first(path: &str, data: &Value) -> Option<Value> {
        let path = JsonPath::parse_column(path).expect("path parses");
        path.first(data).map(|item| match item {
            Item::Json(v) => v.clone(),
            Item::Byte(b) => json!({ "byte": b }),
            other => json!({ "literal": format!("{other:?}") }),
        })
    }

    fn all(path: &str, data: &Value) -> Vec<Value> {
        let path = JsonPath::parse_column(path).expect("path parses");
        let mut eval = Evaluator { ranged: false };
        match eval.walk(vec![Item::Json(data)], &path.root[0]) {
            Ok(items) => items
                .into_iter()
                .map(|i| json(&i).cloned().unwrap_or(Value::Null))
                .collect(),
            Err(_) => vec![json!("error")],
        }
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"app": "web", "app.kubernetes.io/name": "shop"}},
            "spec": {
                "replicas": 3,
                "items": [{"name": "a", "n": 1}, {"n": 2}, {"name": "c", "n": 3}],
                "empty": [],
                "nothing": null,
                "ratio": 1.5
            },
            "status": {"conditions": [
                {"type": "Scheduled", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]}
        })
    }

    #[test]
    fn fields_should_walk_objects_and_tolerate_missing_keys() {
        let p = pod();
        assert_eq!(first(".spec.replicas", &p), Some(json!(3)));
        assert_eq!(first(".metadata.labels.app", &p), Some(json!("web")));
        assert_eq!(first(".spec.missing.deeper", &p), None);
        assert_eq!(first(".spec.replicas.deeper", &p), None);
        assert_eq!(first(".spec.nothing", &p), Some(Value::Null));
        assert_eq!(first(".spec.nothing.deeper", &p), None);
        assert_eq!(first("$.spec.replicas", &p), Some(json!(3)));
    }

    #[test]
    fn escaped_dots_should_stay_in_the_key_but_bracketed_keys_split() {
        let p = pod();
        assert_eq!(
            first(r".metadata.labels.app\.kubernetes\.io/name", &p),
            Some(json!("shop"))
        );
        assert_eq!(first(".metadata.labels['app']", &p), Some(json!("web")));
        // client-go re-reads ['a.b'] as .a.b.
        assert_eq!(
            first(".metadata.labels['app.kubernetes.io/name']", &p),
            None
        );
    }

    #[test]
    fn wildcards_should_find_every_element_in_order() {
        let p = pod();
        assert_eq!(all(".spec.items[*].name", &p), [json!("a"), json!("c")]);
        assert_eq!(first(".spec.items[*].name", &p), Some(json!("a")));
        assert_eq!(all(".spec.items[*].n", &p), [json!(1), json!(2), json!(3)]);
        assert_eq!(all(".metadata.labels.*", &p).len(), 2);
        assert_eq!(first(".metadata.name.*", &p), Some(json!({"byte": 112})));
    }

    #[test]
    fn indexes_and_slices_should_follow_client_go() {
        let p = pod();
        assert_eq!(first(".spec.items[0].name", &p), Some(json!("a")));
        assert_eq!(first(".spec.items[-1].name", &p), Some(json!("c")));
        assert_eq!(all(".spec.items[1:].n", &p), [json!(2), json!(3)]);
        assert_eq!(all(".spec.items[::2].n", &p), [json!(1), json!(3)]);
        assert_eq!(all(".spec.items[0,2].n", &p), [json!(1), json!(3)]);
        assert_eq!(first(".spec.items[].n", &p), Some(json!(1)));
        assert_eq!(all(".spec.items[3]", &p), [json!("error")]);
        assert_eq!(all(".spec.empty[0]", &p), [json!("error")]);
        assert_eq!(all(".spec.empty[*]", &p), Vec::<Value>::new());
        assert_eq!(all(".metadata[0]", &p), [json!("error")]);
        assert_eq!(all(".spec.items[0:2:0]", &p), [json!("error")]);
    }

    #[test]
    fn an_empty_array_under_star_should_end_the_step_as_in_client_go() {
        let data = json!({"groups": [{"items": []}, {"items": [{"name": "x"}]}]});
        assert_eq!(first(".groups[*].items[*].name", &data), None);
        let data = json!({"groups": [{"items": [{"name": "x"}]}, {"items": []}]});
        assert_eq!(first(".groups[*].items[*].name", &data), Some(json!("x")));
    }

    #[test]
    fn filters_should_select_matching_elements() {
        let p = pod();
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Ready")].status"#, &p),
            Some(json!("False"))
        );
        assert_eq!(
            first(r#".status.conditions[?(@.type == 'Scheduled')].status"#, &p),
            Some(json!("True"))
        );
        assert_eq!(
            all(r#".status.conditions[?(@.type!="Ready")].type"#, &p),
            [json!("Scheduled")]
        );
        assert_eq!(all(".spec.items[?(@.n>1)].n", &p), [json!(2), json!(3)]);
        assert_eq!(all(".spec.items[?(@.n<=2)].n", &p), [json!(1), json!(2)]);
        assert_eq!(all(".spec.items[?(@.name)].n", &p), [json!(1), json!(3)]);
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Gone")].status"#, &p),
            None
        );
    }

    #[test]
    fn comparing_different_kinds_should_fail_the_whole_path() {
        let p = pod();
        assert_eq!(all(r#".spec.items[?(@.n=="1")].n"#, &p), [json!("error")]);
        assert_eq!(all(".spec.items[?(@.n==1.0)].n", &p), [json!("error")]);
        assert_eq!(first(".spec.items[?(@.n==1.0)].n", &p), None);
        let flags = json!({"xs": [{"on": true}, {"on": false}]});
        assert_eq!(all(".xs[?(@.on==true)].on", &flags), [json!(true)]);
        assert_eq!(all(".xs[?(@.on<true)].on", &flags), [json!("error")]);
        assert_eq!(all(".spec.replicas[?(@.x)]", &p), [json!("error")]);
    }

    #[test]
    fn recursive_descent_should_visit_every_container() {
        let p = pod();
        assert_eq!(
            all("..status", &p),
            [
                json!({"conditions": p["status"]["conditions"]}),
                json!("True"),
                json!("False")
            ]
        );
    }

    #[test]
    fn range_and_unknown_identifiers_should_give_nothing() {
        let p = pod();
        assert_eq!(first(".spec range", &p), None);
        assert_eq!(first(".spec end", &p), None);
        assert_eq!(first(".spec bogus", &p), None);
    }

    #[test]
    fn invalid_paths_should_not_parse() {
        for bad in [
            ".spec[",
            ".spec[a]",
            ".spec[1:2:3:4]",
            ".spec[?(@.x==\"y\"]",
            ".spec #",
            ".spec....x",
            ".a \"unterminated",
        ] {
            assert!(JsonPath::parse_column(bad).is_err(), "{bad}");
        }
        assert!(JsonPath::parse_column(".spec.x}{.y").is_ok());
    }

    #[test]
    fn later_template_parts_should_still_fail_the_cell() {
        let p = pod();
        assert_eq!(first(".spec.replicas}{.spec.empty[0]", &p), None);
        assert_eq!(first(".spec.replicas}text", &p), Some(json!(3)));
    }

    #[test]
    fn comparison_split_should_backtrack_like_the_regexp() {
        assert_eq!(split_comparison("@.a==b"), Some(("@.a", "==", "b")));
        assert_eq!(split_comparison("@.a=="), Some(("@.a", "=", "=")));
        assert_eq!(split_comparison("@.a="), None);
        assert_eq!(split_comparison("==b"), None);
        assert_eq!(split_comparison("@.a"), None);
    }

    #[test]
    fn quoted_literals_should_unescape_like_go() {
        assert_eq!(unquote(r#""a\"b\n""#, '"'), Ok("a\"b\n".to_string()));
        assert_eq!(unquote(r"'a\'b'", '\''), Ok("a'b".to_string()));
        assert_eq!(
            unquote(r#"'a\"b'"#, '\''),
            Err(ParseError("invalid quoted string"))
        );
        assert_eq!(unquote(r#""\u00e9\x41\101""#, '"'), Ok("éAA".to_string()));
    }
}
