//! Text that may contain secrets.
//!
//! Invariant: a plan never holds a secret's value, only its name. `Text` is literal
//! pieces and secret references; everything shown to a user or stored as JSON is
//! either the structure itself or the redacted form with `(secret)`. Only the
//! executor substitutes values, at the moment it writes a file.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

pub const REDACTED: &str = "(secret)";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Lit(String),
    Secret(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(pub Vec<Seg>);

impl Text {
    pub fn new() -> Self {
        Text(Vec::new())
    }
    /// Append literal text.
    pub fn lit(mut self, s: impl AsRef<str>) -> Self {
        self.push(s);
        self
    }
    /// Append a secret's value (by name).
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.push_secret(name);
        self
    }
    pub fn push(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        if s.is_empty() {
            return;
        }
        if let Some(Seg::Lit(last)) = self.0.last_mut() {
            last.push_str(s);
        } else {
            self.0.push(Seg::Lit(s.to_string()));
        }
    }
    pub fn push_secret(&mut self, name: impl Into<String>) {
        self.0.push(Seg::Secret(name.into()));
    }
    pub fn append(&mut self, other: Text) {
        for seg in other.0 {
            match seg {
                Seg::Lit(s) => self.push(s),
                Seg::Secret(n) => self.push_secret(n),
            }
        }
    }
    /// Names of the secrets used, in order of appearance.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|s| match s {
            Seg::Secret(n) => Some(n.as_str()),
            Seg::Lit(_) => None,
        })
    }
    /// The text as shown to users: secrets replaced by `(secret)`.
    pub fn redacted(&self) -> String {
        self.render(|_| Some(REDACTED.to_string())).unwrap_or_default()
    }
    /// The real text, with `lookup` giving each secret's value (executor only).
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Lit(s) => out.push_str(s),
                Seg::Secret(n) => out.push_str(&lookup(n)?),
            }
        }
        Some(out)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::new().lit(s)
    }
}
impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::new().lit(s)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// JSON form: a plain string when there is no secret, else a list of strings and
/// `{"secret": NAME}` objects.
impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if self.secrets().next().is_none() {
            return s.serialize_str(&self.redacted());
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for seg in &self.0 {
            match seg {
                Seg::Lit(l) => seq.serialize_element(l)?,
                Seg::Secret(n) => {
                    let mut m = std::collections::BTreeMap::new();
                    m.insert("secret", n);
                    seq.serialize_element(&m)?
                }
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Piece {
            Lit(String),
            Secret { secret: String },
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Plain(String),
            Pieces(Vec<Piece>),
        }
        match Repr::deserialize(d)
            .map_err(|_| de::Error::custom("expected text: a string, or a list of strings and { secret = NAME }"))?
        {
            Repr::Plain(s) => Ok(Text::from(s)),
            Repr::Pieces(p) => {
                let mut t = Text::new();
                for piece in p {
                    match piece {
                        Piece::Lit(s) => t.push(s),
                        Piece::Secret { secret } => t.push_secret(secret),
                    }
                }
                Ok(t)
            }
        }
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"anyOf": [
                    {"type": "string"},
                    {"type": "object", "properties": {"secret": {"type": "string"}}, "required": ["secret"]}
                ]}}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_and_round_trip_as_references() {
        let t = Text::new().lit("pw=").secret("db").lit("\n");
        assert_eq!(t.redacted(), "pw=(secret)\n");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"["pw=",{"secret":"db"},"\n"]"#);
        assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), t);
        assert_eq!(t.render(|n| Some(format!("<{n}>"))).unwrap(), "pw=<db>\n");
        assert_eq!(serde_json::to_string(&Text::from("x")).unwrap(), r#""x""#);
    }
}
