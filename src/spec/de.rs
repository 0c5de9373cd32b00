//! A serde `Deserializer` over the spanned `Node` tree.
//!
//! Invariant: every error leaves here with the path and span of the innermost node
//! that caused it, and unknown keys never stop deserialization: they are all recorded
//! (with "did you mean") and skipped, so one run reports every unknown key of a file.

use super::node::{Entry, Node, NodeKind, Path, PathSeg, Span};
use crate::diag::{did_you_mean, Problem};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::cell::RefCell;
use std::fmt;

#[derive(Debug, Clone)]
pub struct DeError {
    pub message: String,
    pub path: Option<Path>,
    pub span: Option<Span>,
    pub help: Option<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), path: None, span: None, help: None }
    }
}

/// Deserialize `T` from `node`, recording unknown keys in `unknown`.
pub fn from_node<'de, T: de::Deserialize<'de>>(
    node: &Node,
    base: Path,
    unknown: &RefCell<Vec<Problem>>,
) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, path: base, unknown })
}

pub struct NodeDe<'a> {
    node: &'a Node,
    path: Path,
    unknown: &'a RefCell<Vec<Problem>>,
}

impl<'a> NodeDe<'a> {
    fn locate(&self, mut e: DeError) -> DeError {
        if e.span.is_none() {
            e.span = Some(self.node.span.clone());
            e.path = Some(self.path.clone());
        }
        e
    }
    fn child(&self, node: &'a Node, seg: PathSeg) -> NodeDe<'a> {
        let mut path = self.path.clone();
        path.0.push(seg);
        NodeDe { node, path, unknown: self.unknown }
    }
    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            NodeKind::Null => de::Unexpected::Unit,
            NodeKind::Bool(b) => de::Unexpected::Bool(*b),
            NodeKind::Int(i) => de::Unexpected::Signed(*i),
            NodeKind::Float(f) => de::Unexpected::Float(*f),
            NodeKind::Str(s) => de::Unexpected::Str(s),
            NodeKind::Seq(_) => de::Unexpected::Seq,
            NodeKind::Map(_) => de::Unexpected::Map,
        }
    }
}

macro_rules! forward {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.deserialize_any(v)
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(*b),
            NodeKind::Int(i) if *i >= 0 => v.visit_u64(*i as u64),
            NodeKind::Int(i) => v.visit_i64(*i),
            NodeKind::Float(f) => v.visit_f64(*f),
            NodeKind::Str(s) => v.visit_str(s),
            NodeKind::Seq(items) => v.visit_seq(SeqAcc { de: &self, items: items.iter(), i: 0 }),
            NodeKind::Map(entries) => v.visit_map(MapAcc::new(&self, entries, None)),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let NodeKind::Map(entries) = &self.node.kind else {
            let e = de::Error::invalid_type(self.unexpected(), &"a table");
            let mut e: DeError = e;
            e.message = format!(
                "{}, expected a table ({})",
                e.message.split(", expected").next().unwrap_or(""),
                describe(name)
            );
            return Err(self.locate(e));
        };
        let r = v.visit_map(MapAcc::new(&self, entries, Some(fields)));
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let bad_variant = |name: &str, span: &Span| -> DeError {
            DeError {
                message: format!("unknown value `{name}`"),
                path: Some(self.path.clone()),
                span: Some(span.clone()),
                help: Some(match did_you_mean(name, variants.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? allowed: {}", list(variants)),
                    None => format!("allowed: {}", list(variants)),
                }),
            }
        };
        match &self.node.kind {
            NodeKind::Str(s) => {
                if !variants.contains(&s.as_str()) {
                    return Err(bad_variant(s, &self.node.span));
                }
                v.visit_enum(EnumAcc { de: &self, variant: s, value: None }).map_err(|e| self.locate(e))
            }
            NodeKind::Map(entries) if entries.len() == 1 => {
                let e = &entries[0];
                if !variants.contains(&e.key.as_str()) {
                    return Err(bad_variant(&e.key, &e.key_span));
                }
                let child = self.child(&e.value, PathSeg::Key(e.key.clone()));
                v.visit_enum(EnumAcc { de: &self, variant: &e.key, value: Some(child) }).map_err(|e| self.locate(e))
            }
            _ => Err(self.locate(DeError {
                message: format!("expected one of {}, found {}", list(variants), self.node.type_name()),
                path: None,
                span: None,
                help: None,
            })),
        }
    }

    forward! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_i128 deserialize_u128
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }
}

/// Locate an error that a custom `Deserialize` raised after reading its value.
fn at(mut e: DeError, span: Span, path: Path) -> DeError {
    if e.span.is_none() {
        e.span = Some(span);
        e.path = Some(path);
    }
    e
}

/// "CaddySite" → "caddy site": type names in messages read as words.
fn describe(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn list(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

struct SeqAcc<'b, 'a> {
    de: &'b NodeDe<'a>,
    items: std::slice::Iter<'a, Node>,
    i: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_, '_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let child = self.de.child(node, PathSeg::Index(self.i));
        self.i += 1;
        let (span, path) = (child.node.span.clone(), child.path.clone());
        seed.deserialize(child).map(Some).map_err(|e| at(e, span, path))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAcc<'b, 'a> {
    de: &'b NodeDe<'a>,
    entries: std::slice::Iter<'a, Entry>,
    fields: Option<&'static [&'static str]>,
    current: Option<&'a Entry>,
}

impl<'b, 'a> MapAcc<'b, 'a> {
    fn new(de: &'b NodeDe<'a>, entries: &'a [Entry], fields: Option<&'static [&'static str]>) -> Self {
        MapAcc { de, entries: entries.iter(), fields, current: None }
    }
}

impl<'de> de::MapAccess<'de> for MapAcc<'_, '_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for entry in self.entries.by_ref() {
            if let Some(fields) = self.fields {
                if !fields.contains(&entry.key.as_str()) {
                    let help = match did_you_mean(&entry.key, fields.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("allowed here: {}", list(fields)),
                    };
                    self.de.unknown.borrow_mut().push(Problem {
                        message: format!("unknown key `{}`", entry.key),
                        path: Some(self.de.path.key(&entry.key)),
                        span: Some(entry.key_span.clone()),
                        help: Some(help),
                        label: Some("unknown key".into()),
                    });
                    continue;
                }
            }
            self.current = Some(entry);
            let key: de::value::StrDeserializer<'_, DeError> = entry.key.as_str().into_deserializer();
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self.current.take().ok_or_else(|| de::Error::custom("value without key"))?;
        let child = self.de.child(&entry.value, PathSeg::Key(entry.key.clone()));
        let (span, path) = (child.node.span.clone(), child.path.clone());
        seed.deserialize(child).map_err(|e| at(e, span, path))
    }
}

struct EnumAcc<'b, 'a> {
    de: &'b NodeDe<'a>,
    variant: &'a str,
    value: Option<NodeDe<'a>>,
}

impl<'de, 'b, 'a> de::EnumAccess<'de> for EnumAcc<'b, 'a> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let key: de::value::StrDeserializer<'_, DeError> = self.variant.into_deserializer();
        Ok((seed.deserialize(key)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for EnumAcc<'_, '_> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(_) => Err(de::Error::custom(format!("`{}` takes no value", self.variant))),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(v) => seed.deserialize(v),
            None => Err(self.de.locate(de::Error::custom(format!(
                "`{}` needs a value: write it as `{{ {} = ... }}`",
                self.variant, self.variant
            )))),
        }
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(d) => de::Deserializer::deserialize_seq(d, v),
            None => Err(de::Error::custom("expected a list")),
        }
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], v: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(d) => de::Deserializer::deserialize_struct(d, "", fields, v),
            None => Err(de::Error::custom("expected a table")),
        }
    }
}
