//! Strict JSON: a document with a duplicate member name in any object is
//! refused, naming the member (as a JSON Pointer). serde_json keeps the last
//! of two equal names, so a gate and a tool could read different values from
//! one document; here that document never gets that far. One pass, building
//! the same `Value` serde_json would.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON document, refusing duplicate member names.
///
/// # Errors
///
/// The parser's message; for a duplicate, `duplicate member <pointer>`.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        path: String::new(),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A JSON Pointer token (RFC 6901: `~` → `~0`, `/` → `~1`).
fn token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

struct Strict {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            path: format!("{}/{}", self.path, items.len()),
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let path = format!("{}/{}", self.path, token(&name));
            if members.contains_key(&name) {
                return Err(A::Error::custom(format!("duplicate member {path}")));
            }
            let v = map.next_value_seed(Strict { path })?;
            members.insert(name, v);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice;

    #[test]
    fn duplicates_are_refused_anywhere_and_the_rest_parses_as_serde_json_does() {
        for doc in [
            r#"{"a":1,"b":[1,2.5,"x",null,true,{"c":{}}],"d":-3,"e":1e300}"#,
            r#"[]"#,
            r#""s""#,
            r#"{"k~/":{"k":1},"k":2}"#,
        ] {
            let want: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(from_slice(doc.as_bytes()).unwrap(), want, "{doc}");
        }
        for (doc, pointer) in [
            (r#"{"surface":"payments","surface":"deploy"}"#, "/surface"),
            (r#"{"target":{"a":1,"b":2,"a":3}}"#, "/target/a"),
            (r#"{"x":[{"y":1},{"y":1,"y":2}]}"#, "/x/1/y"),
            (r#"{"a/b":1,"a/b":2}"#, "/a~1b"),
        ] {
            let err = from_slice(doc.as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains(&format!("duplicate member {pointer}")),
                "{doc}: {err}"
            );
        }
        assert!(from_slice(b"{} {}").is_err(), "one document only");
    }
}
