//! A JSON Lines client row read as a projection: one pass over its text
//! that keeps only the members [`super::client::extract`] reads, borrowing
//! their strings, and skips the rest unparsed, instead of building a tree
//! of every member. Rows outside the shape it handles (tags, OpenTelemetry
//! attributes, a `usage_format` hint, a member that should be a value but
//! is an object, nesting deeper than `usage.*.*`) are left to the tree
//! reader, so both give the same row or the same reject.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The top-level members a client row is read from, in `Projected::top`
/// order.
pub(crate) const TOP: [&str; 19] = [
    "request_id",
    "response_id",
    "ts",
    "ts_end",
    "key",
    "model",
    "response_model",
    "route",
    "team",
    "service",
    "env",
    "status",
    "http_status",
    "stream",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// Where a member of [`TOP`] is kept.
fn slot(name: &str) -> Option<usize> {
    Some(match name {
        "request_id" => 0,
        "response_id" => 1,
        "ts" => 2,
        "ts_end" => 3,
        "key" => 4,
        "model" => 5,
        "response_model" => 6,
        "route" => 7,
        "team" => 8,
        "service" => 9,
        "env" => 10,
        "status" => 11,
        "http_status" => 12,
        "stream" => 13,
        "input_tokens" => 14,
        "cached_input_tokens" => 15,
        "cache_write_tokens" => 16,
        "output_tokens" => 17,
        "reasoning_tokens" => 18,
        _ => return None,
    })
}

/// A member that sends the row to the tree reader.
fn needs_tree(key: &str) -> bool {
    matches!(key, "tags" | "usage_format" | "attributes") || key.starts_with("gen_ai.")
}

/// A value as read, rendered only when asked for (most numbers of a
/// usage object are never read).
#[derive(Debug, Clone, Default)]
pub(crate) enum Lit<'a> {
    /// null, or absent.
    #[default]
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Lit<'a> {
    /// As `text_of` renders the tree's value.
    pub(crate) fn text(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Lit::Null => return None,
            Lit::Str(s) => Cow::Borrowed(s.as_ref()),
            Lit::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Lit::U64(n) => Cow::Owned(n.to_string()),
            Lit::I64(n) => Cow::Owned(n.to_string()),
            // As the tree holds it: a `Number`, printed the same way.
            Lit::F64(f) => Cow::Owned(serde_json::Number::from_f64(*f)?.to_string()),
        })
    }
}

/// Members of `usage` read as values (and whose presence `shape_of`
/// asks about), then those read as objects.
const USAGE_LEAVES: [&str; 6] = [
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];
const USAGE_PARENTS: [&str; 5] = [
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cache_creation",
];
/// Members read inside a parent.
const USAGE_INNER: [&str; 6] = [
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "thinking_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
];

fn index_of(names: &[&str], k: &str) -> Option<usize> {
    names.iter().position(|n| *n == k)
}

/// The members of `usage` that are ever read.
#[derive(Debug, Default)]
pub(crate) struct Usage<'a> {
    leaves: [Lit<'a>; USAGE_LEAVES.len()],
    /// Which leaves and parents are present (even null): bit i for leaf i,
    /// bit 8 + j for parent j.
    present: u16,
    inner: [[Lit<'a>; USAGE_INNER.len()]; USAGE_PARENTS.len()],
}

/// The members of one row that matter, in one pass.
#[derive(Debug, Default)]
pub(crate) struct Projected<'a> {
    /// [`TOP`]'s members, present or not (null is absent, as in the tree).
    top: [Lit<'a>; TOP.len()],
    /// Whether `usage` is an object (absent and null are not).
    pub(crate) has_usage: bool,
    /// `usage`'s members, when it is (the last of a repeated member
    /// counts, as in the tree).
    usage: Usage<'a>,
}

impl<'a> Projected<'a> {
    /// Reads `text` as one row; false when the tree reader must (a shape
    /// it does not handle, or text that is not one JSON object: the tree
    /// reader then says why).
    ///
    /// Reads into a fresh `self`, in place: it is a couple of kilobytes,
    /// and copying it per row cost more than tokenizing the row.
    pub(crate) fn fill(&mut self, text: &'a str) -> bool {
        let mut de = serde_json::Deserializer::from_str(text);
        de.deserialize_map(RowVisitor(self)).is_ok() && de.end().is_ok()
    }

    /// Top-level member `i` of [`TOP`], with its name.
    pub(crate) fn get_at(&self, i: usize) -> Option<(Cow<'_, str>, &'static str)> {
        Some((self.top.get(i)?.text()?, TOP.get(i)?))
    }

    /// Whether `usage` has a member `k` (even null), as `shape_of` asks.
    pub(crate) fn usage_has(&self, k: &str) -> bool {
        let u = &self.usage;
        if !self.has_usage {
            return false;
        }
        let bit = index_of(&USAGE_LEAVES, k).or_else(|| index_of(&USAGE_PARENTS, k).map(|j| 8 + j));
        bit.is_some_and(|b| u.present & (1 << b) != 0)
    }

    /// The value at `path` inside `usage` (one or two names).
    pub(crate) fn usage_at(&self, path: &[&str]) -> Option<Cow<'_, str>> {
        let u = self.has_usage.then_some(&self.usage)?;
        match path {
            [k] => u.leaves.get(index_of(&USAGE_LEAVES, k)?)?.text(),
            [k, inner] => u
                .inner
                .get(index_of(&USAGE_PARENTS, k)?)?
                .get(index_of(&USAGE_INNER, inner)?)?
                .text(),
            _ => None,
        }
    }
}

/// A member name, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value; an object or array is declined (the tree renders those as
/// JSON text, which the projection does not).
struct Scalar<'a>(Lit<'a>);

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::Str(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::Str(Cow::Owned(v))))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::Bool(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::U64(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::I64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::F64(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar(Lit::Null))
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A parent member of `usage`, read into its slots: an object's known
/// members are values; a value holds no members.
struct Parent<'p, 'a>(&'p mut [Lit<'a>; USAGE_INNER.len()]);

impl<'de> DeserializeSeed<'de> for Parent<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        *self.0 = Default::default();
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Parent<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = m.next_key()? {
            match index_of(&USAGE_INNER, &k).and_then(|i| self.0.get_mut(i)) {
                Some(slot) => *slot = m.next_value::<Scalar<'de>>()?.0,
                None => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// `usage`, read into a row's slots: null, or an object.
struct UsageSeed<'p, 'a>(&'p mut Projected<'a>);

impl<'de> DeserializeSeed<'de> for UsageSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsageSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a usage object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let p = self.0;
        p.has_usage = true;
        let u = &mut p.usage;
        *u = Usage::default();
        while let Some(Key(k)) = m.next_key()? {
            if let Some(i) = index_of(&USAGE_LEAVES, &k) {
                let v = m.next_value::<Scalar<'de>>()?.0;
                if let Some(slot) = u.leaves.get_mut(i) {
                    *slot = v;
                }
                u.present |= 1 << i;
            } else if let Some(slots) = index_of(&USAGE_PARENTS, &k).and_then(|j| {
                u.present |= 1 << (8 + j);
                u.inner.get_mut(j)
            }) {
                m.next_value_seed(Parent(slots))?;
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.has_usage = false;
        Ok(())
    }
}

/// A row, read into its slots.
struct RowVisitor<'p, 'a>(&'p mut Projected<'a>);

impl<'de> Visitor<'de> for RowVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let p = self.0;
        while let Some(Key(k)) = m.next_key()? {
            if let Some(i) = slot(&k) {
                let Scalar(v) = m.next_value()?;
                if let Some(s) = p.top.get_mut(i) {
                    *s = v;
                }
            } else if k == "usage" {
                m.next_value_seed(UsageSeed(&mut *p))?;
            } else if needs_tree(&k) {
                return Err(de::Error::custom("left to the tree reader"));
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_member_has_its_own_slot() {
        for (i, name) in TOP.iter().enumerate() {
            assert_eq!(slot(name), Some(i), "{name}");
        }
    }
}
