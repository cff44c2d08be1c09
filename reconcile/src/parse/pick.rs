//! Pulls a few dotted paths out of a JSON text without building the
//! document.
//!
//! LiteLLM's `metadata` cell is a JSON object on every row (kilobytes in real
//! exports) of which a mapping wants two or three numbers. Parsing each cell
//! into a `serde_json::Value` allocated every key and value of it; this walks
//! the text once, descends only into the keys on a wanted path and skips the
//! rest without allocating.
//!
//! The answers are those of [`super::mapping`]'s `walk` over the parsed
//! document: a path's segments are followed first; a key that itself
//! contains dots (`"a.b"`) is taken when the segments find nothing, the
//! deepest such key first; a string holding JSON is parsed when the path goes
//! on into it; a numeric segment indexes an array. Leaves read as `walk`
//! reads them: strings as they are, numbers and booleans as JSON writes them,
//! objects and arrays as compact JSON, null as absent. (With a key written
//! twice in one object, a path found under either is kept, the later one
//! first, where the parsed document would keep only the later object.)

use std::fmt::{self, Write as _};

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A trie of wanted paths.
#[derive(Debug, Default, Clone)]
pub(crate) struct Picker {
    nodes: Vec<Node>,
    paths: usize,
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// Segment and child node.
    children: Vec<(String, usize)>,
    /// Paths that end at this node.
    ends: Vec<usize>,
    /// Paths through this node with two or more segments left: the
    /// remaining segments joined with dots, as one key of this object.
    dotted: Vec<(String, usize)>,
    /// Segments consumed to reach this node.
    depth: usize,
}

/// What one cell gave: per path, the best text found so far.
#[derive(Debug, Default)]
pub(crate) struct Found {
    text: String,
    /// Per path: rank (deeper is better) and span in `text`.
    vals: Vec<Option<(usize, usize, usize)>>,
}

impl Found {
    /// Whether no path was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.vals.iter().all(Option::is_none)
    }

    /// The text found for path `id`, if any.
    pub(crate) fn get(&self, id: usize) -> Option<&str> {
        let &(_, start, end) = self.vals.get(id)?.as_ref()?;
        self.text.get(start..end)
    }

    fn offer(&mut self, id: usize, rank: usize, text: impl fmt::Display) {
        if self
            .vals
            .get(id)
            .is_some_and(|v| v.is_some_and(|(r, ..)| r > rank))
        {
            return;
        }
        let start = self.text.len();
        // Writing into a String cannot fail.
        let _ = write!(self.text, "{text}");
        if let Some(slot) = self.vals.get_mut(id) {
            *slot = Some((rank, start, self.text.len()));
        }
    }
}

impl Picker {
    /// Adds a path (its segments); returns its id.
    pub(crate) fn add(&mut self, path: &[String]) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let id = self.paths;
        self.paths += 1;
        let mut cur = 0;
        for (i, seg) in path.iter().enumerate() {
            let rest = path.get(i..).unwrap_or_default();
            if rest.len() >= 2
                && let Some(n) = self.nodes.get_mut(cur)
            {
                n.dotted.push((rest.join("."), id));
            }
            let next = self
                .nodes
                .get(cur)
                .and_then(|n| n.children.iter().find(|(s, _)| s == seg))
                .map(|&(_, c)| c);
            cur = match next {
                Some(c) => c,
                None => {
                    let c = self.nodes.len();
                    self.nodes.push(Node {
                        depth: i + 1,
                        ..Node::default()
                    });
                    if let Some(n) = self.nodes.get_mut(cur) {
                        n.children.push((seg.clone(), c));
                    }
                    c
                }
            };
        }
        if let Some(n) = self.nodes.get_mut(cur) {
            n.ends.push(id);
        }
        id
    }

    /// Reads `cell` into `out` (cleared first). A cell that is not JSON
    /// gives nothing, as a parse failure did before.
    pub(crate) fn pick(&self, cell: &str, out: &mut Found) {
        out.text.clear();
        out.vals.clear();
        out.vals.resize(self.paths, None);
        if self.nodes.is_empty() {
            return;
        }
        if pick_from(self, 0, cell, out).is_err() {
            // A cell that fails part-way must not give half its values.
            out.vals.iter_mut().for_each(|v| *v = None);
        }
    }
}

fn pick_from(
    p: &Picker,
    node: usize,
    text: &str,
    out: &mut Found,
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Visit { p, node, out }.deserialize(&mut de)?;
    de.end()
}

struct Visit<'p, 'o> {
    p: &'p Picker,
    node: usize,
    out: &'o mut Found,
}

/// An object key, borrowed from the text when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s))
            }
        }
        d.deserialize_str(V)
    }
}

impl Visit<'_, '_> {
    fn node(&self) -> Option<&Node> {
        self.p.nodes.get(self.node)
    }

    /// A value at a node where some path ends, or that is not an object,
    /// array or string: read it whole and answer from the document.
    fn whole(self, v: &Value) {
        let Some(n) = self.p.nodes.get(self.node) else {
            return;
        };
        let depth = n.depth;
        for &id in &n.ends {
            if let Some(t) = super::mapping::text_of(v) {
                self.out.offer(id, usize::MAX, t);
            }
        }
        // Paths going on below a node that is also a leaf: the document
        // walk settles them (found through this node, so they outrank any
        // dotted key above it).
        let mut below = Vec::new();
        collect_below(self.p, self.node, &mut Vec::new(), &mut below);
        for (id, rest) in below {
            if let Some(t) = super::mapping::walk(v, &rest) {
                self.out.offer(id, depth, t);
            }
        }
    }
}

/// Every path passing below `node`, with its segments from there.
fn collect_below(
    p: &Picker,
    node: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(usize, Vec<String>)>,
) {
    let Some(n) = p.nodes.get(node) else { return };
    for (seg, child) in &n.children {
        prefix.push(seg.clone());
        if let Some(c) = p.nodes.get(*child) {
            for &id in &c.ends {
                out.push((id, prefix.clone()));
            }
        }
        collect_below(p, *child, prefix, out);
        prefix.pop();
    }
}

impl<'de> DeserializeSeed<'de> for Visit<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // A pure leaf holding a number or a string (a token count): read
        // it as such, without a document.
        if let Some(n) = self.node()
            && n.children.is_empty()
            && !n.ends.is_empty()
        {
            return d.deserialize_any(Leaf(self));
        }
        if self.node().is_none_or(|n| !n.ends.is_empty()) {
            let v = Value::deserialize(d)?;
            self.whole(&v);
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

/// Reads a leaf's scalar as `walk` would write it; anything else goes
/// through the document.
struct Leaf<'p, 'o>(Visit<'p, 'o>);

impl Leaf<'_, '_> {
    fn offer(self, text: impl fmt::Display) {
        let Visit { p, node, out } = self.0;
        if let Some(n) = p.nodes.get(node) {
            for &id in &n.ends {
                out.offer(id, usize::MAX, &text);
            }
        }
    }
}

impl<'de> Visitor<'de> for Leaf<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.offer(v);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.offer(v);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As a parsed document writes it (1.0, 1e-7, ...).
        if let Some(n) = serde_json::Number::from_f64(v) {
            self.offer(n);
        }
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.offer(v);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.offer(v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.0.whole(&v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.0.whole(&v);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Visit<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(n) = self.p.nodes.get(self.node) else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let k = key.as_str();
            if let Some(&(_, child)) = n.children.iter().find(|(s, _)| s == k) {
                map.next_value_seed(Visit {
                    p: self.p,
                    node: child,
                    out: &mut *self.out,
                })?;
            } else if k.contains('.') && n.dotted.iter().any(|(j, _)| j == k) {
                let v: Value = map.next_value()?;
                if let Some(t) = super::mapping::text_of(&v) {
                    for (_, id) in n.dotted.iter().filter(|(j, _)| j == k) {
                        self.out.offer(*id, n.depth, &t);
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let children = self.p.nodes.get(self.node).map(|n| n.children.as_slice());
        let mut i = 0usize;
        loop {
            let child = children.and_then(|c| {
                c.iter()
                    .find(|(s, _)| s.parse::<usize>().ok() == Some(i))
                    .map(|&(_, c)| c)
            });
            let more = match child {
                Some(node) => seq
                    .next_element_seed(Visit {
                        p: self.p,
                        node,
                        out: &mut *self.out,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        // A string holding JSON, with the path going on into it. Text that
        // is not JSON gives nothing, as in the document walk.
        let mut inner = Found::default();
        inner.vals.resize(self.p.paths, None);
        if pick_from(self.p, self.node, s, &mut inner).is_ok() {
            for (id, v) in inner.vals.iter().enumerate() {
                if let (Some((rank, ..)), Some(t)) = (v, inner.get(id)) {
                    self.out.offer(id, *rank, t);
                }
            }
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    /// What the picker finds for each path, and what walking the parsed
    /// document finds.
    fn both(doc: &str, paths: &[Vec<String>]) -> (Vec<Option<String>>, Vec<Option<String>>) {
        let mut picker = Picker::default();
        let ids: Vec<usize> = paths.iter().map(|p| picker.add(p)).collect();
        let mut found = Found::default();
        picker.pick(doc, &mut found);
        let picked = ids
            .iter()
            .map(|&i| found.get(i).map(str::to_owned))
            .collect();
        let walked = match serde_json::from_str::<Value>(doc) {
            Ok(v) => paths
                .iter()
                .map(|p| super::super::mapping::walk(&v, p).map(|c| c.into_owned()))
                .collect(),
            Err(_) => vec![None; paths.len()],
        };
        (picked, walked)
    }

    #[test]
    fn litellm_metadata_shapes() {
        let doc = r#"{"user_api_key":"x","usage_object":{"prompt_tokens_details":{"cached_tokens":695},"cache_read_input_tokens":null},
            "additional_usage_values":"{\"cache_creation_input_tokens\": 12}",
            "a.b":{"c":1},"a.b.c":7,"a":{"b":{"x":1}},"list":[{"n":1.50},{"n":-2}],"flag":true,"obj":{"z":[1,2],"y":"s"}}"#;
        let paths: Vec<Vec<String>> = [
            "usage_object.prompt_tokens_details.cached_tokens",
            "usage_object.cache_read_input_tokens",
            "additional_usage_values.cache_creation_input_tokens",
            "a.b.c",
            "a.b.x",
            "list.1.n",
            "list.0.n",
            "list.2.n",
            "flag",
            "obj",
            "obj.y",
            "missing.deep.path",
        ]
        .iter()
        .map(|p| segs(p))
        .collect();
        let (picked, walked) = both(doc, &paths);
        assert_eq!(picked, walked);
        assert_eq!(picked[0].as_deref(), Some("695"));
        assert_eq!(picked[2].as_deref(), Some("12"));
        // `a.b.c` is not under a.b by segments, so the dotted key answers.
        assert_eq!(picked[3].as_deref(), Some("7"));
        assert_eq!(picked[6].as_deref(), Some("1.5"));
        assert_eq!(picked[9].as_deref(), Some(r#"{"y":"s","z":[1,2]}"#));
    }

    #[test]
    fn segments_outrank_dotted_keys_and_deeper_dotted_keys_outrank_shallower() {
        let ab = vec![segs("a.b")];
        let abc = vec![segs("a.b.c")];
        for (doc, paths, want) in [
            (r#"{"a.b":2,"a":{"b":1}}"#, &ab, "1"),
            (r#"{"a":{"b":1},"a.b":2}"#, &ab, "1"),
            (r#"{"a.b.c":1,"a":{"b.c":2}}"#, &abc, "2"),
            (r#"{"a":{"b.c":2},"a.b.c":1}"#, &abc, "2"),
            (r#"{"a":{"b":{}},"a.b.c":1}"#, &abc, "1"),
        ] {
            let (picked, walked) = both(doc, paths);
            assert_eq!(picked, walked, "{doc}");
            assert_eq!(picked[0].as_deref(), Some(want), "{doc}");
        }
    }

    #[test]
    fn text_that_is_not_json_gives_nothing() {
        let paths = vec![segs("a.b")];
        assert_eq!(both(r#"{"a":{"b":1}"#, &paths).0, vec![None]);
        assert_eq!(both(r#"{"a":"{not json"}"#, &paths).0, vec![None]);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec!["a", "b", "0", "a.b", "b.a", "a.b.a"]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            (-1000.0f64..1000.0).prop_map(Value::from),
            "[a-z ]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner.clone(), 0..4).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
                // A string holding JSON, as LiteLLM writes some metadata.
                inner.prop_map(|v| Value::String(v.to_string())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any document, any paths: the picker answers as the walk does.
        #[test]
        fn agrees_with_walking_the_parsed_document(
            doc in json_value(),
            paths in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec!["a", "b", "0", "1"]), 1..4),
                1..4,
            ),
        ) {
            let paths: Vec<Vec<String>> = paths
                .iter()
                .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
                .collect();
            let (picked, walked) = both(&doc.to_string(), &paths);
            prop_assert_eq!(picked, walked);
        }
    }
}
