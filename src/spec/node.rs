//! A format-neutral, spanned document tree.
//!
//! Invariant: TOML and YAML are parsed into the same `Node` tree, so everything after
//! parsing (deserialization, validation, diagnostics) is written once. Every node and
//! every key carries the byte range it came from, so any problem found later can be
//! pointed at exactly. Trees are depth-limited at construction, so nothing downstream
//! (including `Drop`) can overflow the stack.

pub use crate::vocab::path::{Path, PathSeg, Span};

/// Deepest nesting accepted in a spec. Real specs stay below 10.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a YAML document may expand to through aliases (alias bombs).
pub const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "boolean",
            NodeKind::Int(_) => "integer",
            NodeKind::Float(_) => "float",
            NodeKind::Str(_) => "string",
            NodeKind::Seq(_) => "array",
            NodeKind::Map(_) => "table",
        }
    }

    /// The node at `path`, if present.
    pub fn get(&self, path: &[PathSeg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match (seg, &node.kind) {
                (PathSeg::Key(k), NodeKind::Map(entries)) => &entries.iter().find(|e| &e.key == k)?.value,
                (PathSeg::Index(i), NodeKind::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The span of the key naming the node at `path` (for a map entry), else the node.
    pub fn key_span(&self, path: &[PathSeg]) -> Option<Span> {
        let (last, parent) = path.split_last()?;
        let parent = self.get(parent)?;
        match (last, &parent.kind) {
            (PathSeg::Key(k), NodeKind::Map(entries)) => {
                entries.iter().find(|e| &e.key == k).map(|e| e.key_span.clone())
            }
            (PathSeg::Index(i), NodeKind::Seq(items)) => items.get(*i).map(|n| n.span.clone()),
            _ => None,
        }
    }

    /// Best span for a path: the value if it exists, else the nearest existing parent.
    pub fn span_of(&self, path: &[PathSeg]) -> Span {
        for len in (0..=path.len()).rev() {
            if let Some(n) = self.get(&path[..len]) {
                return n.span.clone();
            }
        }
        self.span.clone()
    }

    /// Remove the node at `path` from its parent. Used to recover after a type error so
    /// that later problems in the same file are reported too.
    pub fn remove(&mut self, path: &[PathSeg]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for seg in parent {
            node = match (seg, &mut node.kind) {
                (PathSeg::Key(k), NodeKind::Map(entries)) => match entries.iter_mut().find(|e| &e.key == k) {
                    Some(e) => &mut e.value,
                    None => return false,
                },
                (PathSeg::Index(i), NodeKind::Seq(items)) => match items.get_mut(*i) {
                    Some(n) => n,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (last, &mut node.kind) {
            (PathSeg::Key(k), NodeKind::Map(entries)) => {
                let before = entries.len();
                entries.retain(|e| &e.key != k);
                before != entries.len()
            }
            (PathSeg::Index(i), NodeKind::Seq(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }
}

/// A problem found while reading the text into a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

/// Parse TOML text into a tree; all syntax errors are returned at once.
pub fn parse_toml(text: &str) -> Result<Node, Vec<SyntaxError>> {
    use toml::de::{DeTable, DeValue};
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| SyntaxError { message: e.message().trim().to_string(), span: e.span().unwrap_or(0..0) })
            .collect());
    }
    fn convert(v: &toml::Spanned<DeValue<'_>>, depth: usize, errs: &mut Vec<SyntaxError>) -> Node {
        let span = v.span();
        if depth > MAX_DEPTH {
            errs.push(SyntaxError { message: format!("nesting deeper than {MAX_DEPTH} levels"), span: span.clone() });
            return Node { kind: NodeKind::Null, span };
        }
        let kind = match v.get_ref() {
            DeValue::String(s) => NodeKind::Str(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i64::from_str_radix(&digits, i.radix()) {
                    Ok(n) => NodeKind::Int(n),
                    Err(_) => {
                        errs.push(SyntaxError {
                            message: "integer does not fit in 64 bits".into(),
                            span: span.clone(),
                        });
                        NodeKind::Null
                    }
                }
            }
            DeValue::Float(f) => {
                let s = f.as_str().replace('_', "");
                let n = match s.trim_start_matches(['+', '-']) {
                    "inf" => f64::INFINITY,
                    "nan" => f64::NAN,
                    _ => s.parse().unwrap_or(f64::NAN),
                };
                NodeKind::Float(if s.starts_with('-') && !n.is_sign_negative() { -n } else { n })
            }
            DeValue::Boolean(b) => NodeKind::Bool(*b),
            DeValue::Datetime(d) => NodeKind::Str(d.to_string()),
            DeValue::Array(items) => NodeKind::Seq(items.iter().map(|i| convert(i, depth + 1, errs)).collect()),
            DeValue::Table(t) => NodeKind::Map(
                t.iter()
                    .map(|(k, v)| Entry {
                        key: k.get_ref().to_string(),
                        key_span: k.span(),
                        value: convert(v, depth + 1, errs),
                    })
                    .collect(),
            ),
        };
        Node { kind, span }
    }
    let mut errs = Vec::new();
    let span = doc.span();
    let table = doc.into_inner();
    let node = Node {
        kind: NodeKind::Map(
            table
                .iter()
                .map(|(k, v)| Entry {
                    key: k.get_ref().to_string(),
                    key_span: k.span(),
                    value: convert(v, 1, &mut errs),
                })
                .collect(),
        ),
        span,
    };
    if errs.is_empty() {
        Ok(node)
    } else {
        Err(errs)
    }
}

/// Parse YAML text (one document) into a tree with the YAML 1.2 core schema.
pub fn parse_yaml(text: &str) -> Result<Node, Vec<SyntaxError>> {
    yaml::parse(text)
}

mod yaml {
    use super::*;
    use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
    use std::collections::HashMap;

    /// Converts the parser's character offsets to byte offsets.
    struct Offsets {
        bytes: Option<Vec<usize>>,
        len: usize,
    }
    impl Offsets {
        fn new(text: &str) -> Self {
            let bytes = (!text.is_ascii()).then(|| {
                let mut v: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
                v.push(text.len());
                v
            });
            Offsets { bytes, len: text.len() }
        }
        fn byte(&self, ch: usize) -> usize {
            match &self.bytes {
                Some(v) => v.get(ch).copied().unwrap_or(self.len),
                None => ch.min(self.len),
            }
        }
        fn span(&self, s: &YSpan) -> Span {
            self.byte(s.start.index())..self.byte(s.end.index())
        }
    }

    enum Frame {
        Seq { items: Vec<Node>, start: usize, anchor: usize },
        Map { entries: Vec<Entry>, key: Option<(String, Span)>, start: usize, anchor: usize },
    }

    fn err(message: impl Into<String>, span: Span) -> Vec<SyntaxError> {
        vec![SyntaxError { message: message.into(), span }]
    }

    fn count(n: &Node) -> usize {
        // Iterative: aliased nodes are depth-limited already, but stay cheap.
        let mut total = 0;
        let mut stack = vec![n];
        while let Some(n) = stack.pop() {
            total += 1;
            match &n.kind {
                NodeKind::Seq(items) => stack.extend(items.iter()),
                NodeKind::Map(entries) => stack.extend(entries.iter().map(|e| &e.value)),
                _ => {}
            }
        }
        total
    }

    fn scalar(value: &str, style: ScalarStyle, tagged_str: bool) -> NodeKind {
        if style != ScalarStyle::Plain || tagged_str {
            return NodeKind::Str(value.to_string());
        }
        match value {
            "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
            "true" | "True" | "TRUE" => return NodeKind::Bool(true),
            "false" | "False" | "FALSE" => return NodeKind::Bool(false),
            ".inf" | "+.inf" | ".Inf" | "+.Inf" | ".INF" | "+.INF" => return NodeKind::Float(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => return NodeKind::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return NodeKind::Float(f64::NAN),
            _ => {}
        }
        let unsigned = value.trim_start_matches(['+', '-']);
        let neg = value.starts_with('-');
        let radix_int = |digits: &str, radix| i64::from_str_radix(digits, radix).ok().map(|n| if neg { -n } else { n });
        if let Some(h) = unsigned.strip_prefix("0x") {
            if let Some(n) = radix_int(h, 16) {
                return NodeKind::Int(n);
            }
        } else if let Some(o) = unsigned.strip_prefix("0o") {
            if let Some(n) = radix_int(o, 8) {
                return NodeKind::Int(n);
            }
        } else if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = value.parse::<i64>() {
                return NodeKind::Int(n);
            }
        }
        let looks_float = !unsigned.is_empty()
            && unsigned.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
            && unsigned.bytes().all(|b| b.is_ascii_digit() || b"._eE+-".contains(&b))
            && unsigned.bytes().any(|b| b.is_ascii_digit());
        if looks_float {
            if let Ok(f) = value.parse::<f64>() {
                return NodeKind::Float(f);
            }
        }
        NodeKind::Str(value.to_string())
    }

    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let offs = Offsets::new(text);
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut anchors: HashMap<usize, Node> = HashMap::new();
        let mut root: Option<Node> = None;
        let mut nodes = 0usize;
        let mut docs = 0usize;
        while let Some(ev) = parser.next_event() {
            let (ev, yspan) = match ev {
                Ok(e) => e,
                Err(e) => {
                    let at = offs.byte(e.marker().index());
                    let msg = match e.info() {
                        m if m.contains("recursion limit") => format!("nesting deeper than the parser allows ({m})"),
                        m => m.to_string(),
                    };
                    return Err(err(msg, at..at));
                }
            };
            let span = offs.span(&yspan);
            let complete: Option<(Node, usize)> = match ev {
                Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
                Event::DocumentStart(_) => {
                    docs += 1;
                    if docs > 1 {
                        return Err(err("a spec file holds one YAML document; found a second `---`", span));
                    }
                    None
                }
                Event::Alias(id) => match anchors.get(&id) {
                    Some(n) => {
                        nodes += count(n);
                        if nodes > MAX_NODES {
                            return Err(err(
                                format!(
                                    "aliases expand this document beyond {MAX_NODES} values \
                                     (an alias bomb?)"
                                ),
                                span,
                            ));
                        }
                        let mut n = n.clone();
                        n.span = span;
                        Some((n, 0))
                    }
                    None => return Err(err("alias to an unknown anchor", span)),
                },
                Event::Scalar(value, style, anchor, tag) => {
                    let tagged_str = tag.as_ref().is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                    Some((Node { kind: scalar(&value, style, tagged_str), span }, anchor))
                }
                Event::SequenceStart(anchor, _) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(err(format!("nesting deeper than {MAX_DEPTH} levels"), span));
                    }
                    stack.push(Frame::Seq { items: Vec::new(), start: span.start, anchor });
                    None
                }
                Event::MappingStart(anchor, _) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(err(format!("nesting deeper than {MAX_DEPTH} levels"), span));
                    }
                    stack.push(Frame::Map { entries: Vec::new(), key: None, start: span.start, anchor });
                    None
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq { items, start, anchor }) => {
                        Some((Node { kind: NodeKind::Seq(items), span: start..span.end.max(start) }, anchor))
                    }
                    _ => return Err(err("unbalanced sequence", span)),
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map { entries, start, anchor, .. }) => {
                        Some((Node { kind: NodeKind::Map(entries), span: start..span.end.max(start) }, anchor))
                    }
                    _ => return Err(err("unbalanced mapping", span)),
                },
            };
            let Some((node, anchor)) = complete else { continue };
            nodes += 1;
            if nodes > MAX_NODES {
                return Err(err(format!("document has more than {MAX_NODES} values"), node.span));
            }
            if anchor > 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                None => {
                    root = Some(node);
                }
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map { entries, key, .. }) => match key.take() {
                    None => {
                        let k = match node.kind {
                            NodeKind::Str(s) => s,
                            NodeKind::Int(i) => i.to_string(),
                            NodeKind::Bool(b) => b.to_string(),
                            NodeKind::Null => String::new(),
                            NodeKind::Float(f) => f.to_string(),
                            NodeKind::Seq(_) | NodeKind::Map(_) => {
                                return Err(err("a key must be a plain string", node.span))
                            }
                        };
                        if entries.iter().any(|e| e.key == k) {
                            return Err(err(format!("duplicate key `{k}`"), node.span));
                        }
                        *key = Some((k, node.span));
                    }
                    Some((k, key_span)) => entries.push(Entry { key: k, key_span, value: node }),
                },
            }
        }
        Ok(root.unwrap_or(Node { kind: NodeKind::Null, span: 0..0 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_yaml_build_the_same_shape() {
        let t = parse_toml("name = \"a\"\n[network]\nipv4 = \"auto\"\nports = [1, 2]\n").unwrap();
        let y = parse_yaml("name: a\nnetwork:\n  ipv4: auto\n  ports: [1, 2]\n").unwrap();
        let p = Path::parse("network.ports[1]");
        assert_eq!(t.get(&p.0).unwrap().kind, NodeKind::Int(2));
        assert_eq!(y.get(&p.0).unwrap().kind, NodeKind::Int(2));
        assert_eq!(Path::parse("a.b[3].c").to_string(), "a.b[3].c");
    }

    #[test]
    fn yaml_spans_are_bytes_even_after_multibyte_text() {
        let text = "# é ü\nname: ä\nbad: 1\n";
        let y = parse_yaml(text).unwrap();
        let span = y.key_span(&Path::parse("bad").0).unwrap();
        assert_eq!(&text[span], "bad");
    }

    #[test]
    fn yaml_alias_bomb_is_refused() {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
            s.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let e = parse_yaml(&s).unwrap_err();
        assert!(e[0].message.contains("alias"), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000) + "]".repeat(100_000).as_str();
        assert!(parse_yaml(&format!("a: {deep}")).is_err());
        assert!(parse_toml(&format!("a = {deep}")).is_err());
    }

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        let y = parse_yaml("a: 0x10\nb: '10'\nc: ~\nd: 1.5\ne: yes\n").unwrap();
        let k = |p: &str| y.get(&Path::parse(p).0).unwrap().kind.clone();
        assert_eq!(k("a"), NodeKind::Int(16));
        assert_eq!(k("b"), NodeKind::Str("10".into()));
        assert_eq!(k("c"), NodeKind::Null);
        assert_eq!(k("d"), NodeKind::Float(1.5));
        assert_eq!(k("e"), NodeKind::Str("yes".into()));
    }
}
