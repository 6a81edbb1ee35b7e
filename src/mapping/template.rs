//! Document templates: a mapping's body, header or form tree compiled once, then rendered against a
//! case into an [`Out`] tree that a codec turns into bytes. Because rendering produces a tree and
//! never text, escaping is the codec's job and is correct by construction.
//!
//! In a tree, a string leaf is an expression; a leading `?` marks it optional (omitted when it has
//! no value or is empty). A table may carry `$when` (omit unless true), `$each` + `$as` (one copy
//! per element of a list, producing an array) and `$optional` (omit when it comes out empty).

use std::sync::Arc;

use minijinja::value::{Value, ValueKind};

use super::expr::{Bind, Expr};
use crate::config::source::{Problem, SourceFile};
use crate::config::tree::{Node, NodeKind};

/// A rendered document, with fields in mapping order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Out>),
    Obj(Vec<(String, Out)>),
}

impl Out {
    /// The text of a scalar, as written into XML or a form.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Out::Null => Some(String::new()),
            Out::Bool(b) => Some(b.to_string()),
            Out::Int(i) => Some(i.to_string()),
            Out::Float(f) => Some(f.to_string()),
            Out::Str(s) => Some(s.clone()),
            Out::Arr(_) | Out::Obj(_) => None,
        }
    }
}

#[derive(Debug)]
pub enum Template {
    Leaf {
        path: String,
        expr: Expr,
        optional: bool,
    },
    Const(Out),
    Object {
        path: String,
        when: Option<Expr>,
        each: Option<(Expr, Arc<str>)>,
        optional: bool,
        fields: Vec<(String, Template)>,
    },
    Array(Vec<Template>),
}

impl Template {
    /// Compiles a tree, collecting every problem rather than stopping at the first.
    pub fn compile(file: &SourceFile, node: &Node, problems: &mut Vec<Problem>) -> Template {
        compile_at(file, node, String::new(), problems)
    }

    /// Renders; `None` when the whole document is omitted.
    pub fn render(&self, ctx: &Value) -> Result<Option<Out>, String> {
        match self {
            Template::Const(o) => Ok(Some(o.clone())),
            Template::Leaf {
                path,
                expr,
                optional,
            } => {
                let v = expr.eval(ctx)?;
                if is_absent(&v) || (*optional && is_empty(&v)) {
                    if *optional {
                        return Ok(None);
                    }
                    return Err(format!(
                        "{}: `{}` has no value (expression `{}`)",
                        expr.at, path, expr.source
                    ));
                }
                to_out(&v)
                    .map(Some)
                    .map_err(|e| format!("{}: `{path}`: {e}", expr.at))
            }
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for t in items {
                    if let Some(o) = t.render(ctx)? {
                        out.push(o);
                    }
                }
                Ok(Some(Out::Arr(out)))
            }
            Template::Object {
                path,
                when,
                each,
                optional,
                fields,
            } => {
                if let Some(w) = when
                    && !w.eval(ctx)?.is_true()
                {
                    return Ok(None);
                }
                let Some((list, name)) = each else {
                    let obj = render_fields(fields, ctx)?;
                    return Ok(if *optional && obj_is_empty(&obj) {
                        None
                    } else {
                        Some(obj)
                    });
                };
                let v = list.eval(ctx)?;
                if is_absent(&v) {
                    return if *optional {
                        Ok(None)
                    } else {
                        Ok(Some(Out::Arr(Vec::new())))
                    };
                }
                let iter = v
                    .try_iter()
                    .map_err(|e| format!("{}: `{path}`: `$each` is not a list: {e}", list.at))?;
                let mut out = Vec::new();
                for element in iter {
                    let scope = Value::from_object(Bind {
                        name: name.clone(),
                        value: element,
                        parent: ctx.clone(),
                    });
                    out.push(render_fields(fields, &scope)?);
                }
                if *optional && out.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Out::Arr(out)))
            }
        }
    }

    /// Every expression in this template, for static checks.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut v = Vec::new();
        self.collect(&mut v);
        v
    }

    fn collect<'a>(&'a self, v: &mut Vec<&'a Expr>) {
        match self {
            Template::Const(_) => {}
            Template::Leaf { expr, .. } => v.push(expr),
            Template::Array(items) => items.iter().for_each(|t| t.collect(v)),
            Template::Object {
                when, each, fields, ..
            } => {
                v.extend(when.iter());
                v.extend(each.iter().map(|(e, _)| e));
                fields.iter().for_each(|(_, t)| t.collect(v));
            }
        }
    }
}

fn render_fields(fields: &[(String, Template)], ctx: &Value) -> Result<Out, String> {
    let mut out = Vec::with_capacity(fields.len());
    for (k, t) in fields {
        if let Some(o) = t.render(ctx)? {
            out.push((k.clone(), o));
        }
    }
    Ok(Out::Obj(out))
}

fn obj_is_empty(o: &Out) -> bool {
    matches!(o, Out::Obj(f) if f.is_empty())
}

fn is_absent(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Undefined | ValueKind::None)
}

fn is_empty(v: &Value) -> bool {
    match v.kind() {
        ValueKind::String => v.as_str().is_some_and(|s| s.is_empty()),
        ValueKind::Seq | ValueKind::Map => v.len() == Some(0),
        _ => false,
    }
}

/// Converts an expression's value into a document value.
pub fn to_out(v: &Value) -> Result<Out, String> {
    Ok(match v.kind() {
        ValueKind::Undefined | ValueKind::None => Out::Null,
        ValueKind::Bool => Out::Bool(v.is_true()),
        ValueKind::Number => {
            if v.is_integer() {
                Out::Int(i64::try_from(v.clone()).map_err(|e| e.to_string())?)
            } else {
                Out::Float(f64::try_from(v.clone()).map_err(|e| e.to_string())?)
            }
        }
        ValueKind::String => Out::Str(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Bytes => {
            return Err("bytes cannot be placed in a document".into());
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut a = Vec::new();
            for x in v.try_iter().map_err(|e| e.to_string())? {
                a.push(to_out(&x)?);
            }
            Out::Arr(a)
        }
        ValueKind::Map => {
            let mut o = Vec::new();
            for k in v.try_iter().map_err(|e| e.to_string())? {
                let val = v.get_item(&k).map_err(|e| e.to_string())?;
                o.push((k.to_string(), to_out(&val)?));
            }
            Out::Obj(o)
        }
        _ => return Err(format!("unsupported value `{v}`")),
    })
}

fn compile_at(
    file: &SourceFile,
    node: &Node,
    path: String,
    problems: &mut Vec<Problem>,
) -> Template {
    let expr = |text: &str, problems: &mut Vec<Problem>| match Expr::compile(file, &node.span, text)
    {
        Ok(e) => Some(e),
        Err(p) => {
            problems.push(p);
            None
        }
    };
    match &node.kind {
        NodeKind::Bool(b) => Template::Const(Out::Bool(*b)),
        NodeKind::Int(i) => Template::Const(Out::Int(*i)),
        NodeKind::Float(f) => Template::Const(Out::Float(*f)),
        NodeKind::Expr(text) => {
            let (optional, text) = match text.strip_prefix('?') {
                Some(rest) => (true, rest),
                None => (false, text.as_str()),
            };
            match expr(text, problems) {
                Some(e) => Template::Leaf {
                    path,
                    expr: e,
                    optional,
                },
                None => Template::Const(Out::Null),
            }
        }
        NodeKind::Array(items) => Template::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| compile_at(file, n, format!("{path}[{i}]"), problems))
                .collect(),
        ),
        NodeKind::Table(entries) => {
            let mut when = None;
            let mut each_expr = None;
            let mut each_as: Option<Arc<str>> = None;
            let mut optional = false;
            let mut fields = Vec::new();
            for (k, n) in entries {
                let sub = |problems: &mut Vec<Problem>, what: &str| -> Option<Expr> {
                    match n.as_expr() {
                        Some(t) => match Expr::compile(file, &n.span, t) {
                            Ok(e) => Some(e),
                            Err(p) => {
                                problems.push(p);
                                None
                            }
                        },
                        None => {
                            problems.push(file.problem(
                                &n.span,
                                format!("`{what}` must be an expression string"),
                            ));
                            None
                        }
                    }
                };
                match k.as_str() {
                    "$when" => when = sub(problems, "$when"),
                    "$each" => each_expr = sub(problems, "$each"),
                    "$as" => match n.as_expr() {
                        Some(name) if is_identifier(name) => each_as = Some(Arc::from(name)),
                        _ => problems.push(file.problem(&n.span, "`$as` must be a plain name")),
                    },
                    "$optional" => match n.kind {
                        NodeKind::Bool(b) => optional = b,
                        _ => problems
                            .push(file.problem(&n.span, "`$optional` must be true or false")),
                    },
                    other if other.starts_with('$') => problems.push(file.problem(
                        &n.span,
                        format!(
                            "unknown directive `{other}` (known: $when, $each, $as, $optional)"
                        ),
                    )),
                    _ => {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        fields.push((k.clone(), compile_at(file, n, p, problems)));
                    }
                }
            }
            let each = match (each_expr, each_as) {
                (Some(e), Some(a)) => Some((e, a)),
                (None, None) => None,
                (Some(e), None) => Some((e, Arc::from("it"))),
                (None, Some(_)) => {
                    problems.push(file.problem(&node.span, "`$as` without `$each`"));
                    None
                }
            };
            Template::Object {
                path,
                when,
                each,
                optional,
                fields,
            }
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::Node;

    fn compile(toml_src: &str) -> Template {
        let file = SourceFile::new("t.toml".into(), toml_src.to_string());
        #[derive(serde::Deserialize)]
        struct Doc {
            body: Node,
        }
        let doc: Doc = file.parse().unwrap();
        let mut problems = Vec::new();
        let t = Template::compile(&file, &doc.body, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        t
    }

    fn ctx() -> Value {
        super::super::expr::to_value(&serde_json::json!({
            "name": "王", "empty": "", "list": [{"k": "a"}, {"k": "b"}], "n": 3
        }))
    }

    #[test]
    fn renders_in_order_with_optional_and_repeated_fields() {
        let t = compile(
            r#"
[body]
z = "name"
opt = "?missing"
opt_empty = "?empty"
req_empty = "empty"
n = "n"
c = 1.5
items = { "$each" = "list", "$as" = "x", key = "x.k" }
gone = { "$when" = "missing", a = "name" }
"#,
        );
        let out = t.render(&ctx()).unwrap().unwrap();
        assert_eq!(
            crate::codec::json::write(&out),
            r#"{"z":"王","req_empty":"","n":3,"c":1.5,"items":[{"key":"a"},{"key":"b"}]}"#
        );
    }

    #[test]
    fn a_required_field_without_value_names_the_field() {
        let t = compile("[body]\na.b = \"missing.x\"\n");
        let err = t.render(&ctx()).unwrap_err();
        assert!(err.contains("`a.b` has no value"), "{err}");
        assert!(err.starts_with("t.toml:2"), "{err}");
    }

    #[test]
    fn unknown_directives_and_bad_expressions_are_problems_with_lines() {
        let src = "[body]\nok = \"name\"\nbad = \"name ~\"\nx = { \"$eech\" = \"list\" }\n";
        let file = SourceFile::new("t.toml".into(), src.to_string());
        #[derive(serde::Deserialize)]
        struct Doc {
            body: Node,
        }
        let doc: Doc = file.parse().unwrap();
        let mut problems = Vec::new();
        Template::compile(&file, &doc.body, &mut problems);
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4], "{problems:?}");
        assert!(problems[1].message.contains("unknown directive `$eech`"));
    }
}
