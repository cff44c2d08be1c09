//! String interning: rows hold 4-byte symbols instead of strings, which keeps
//! ten million rows per side within the memory budget.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (rustc's): a multiply-rotate per word. Interned strings are
/// short and trusted enough (a hostile export can only slow its own parse),
/// and SipHash was 10 % of parse time.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(w) ^ (u64::try_from(rest.len()).unwrap_or(0) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(u64::try_from(i).unwrap_or(u64::MAX));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A symbol: an index into an [`Interner`]. [`Sym::NONE`] means "absent".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sym(pub u32);

impl Sym {
    /// The absent value.
    pub const NONE: Sym = Sym(u32::MAX);

    /// Whether the symbol stands for a value.
    pub fn is_some(self) -> bool {
        self != Self::NONE
    }

    /// The symbol as an index, `None` when absent.
    pub fn index(self) -> Option<usize> {
        if self.is_some() {
            usize::try_from(self.0).ok()
        } else {
            None
        }
    }
}

/// Slots of the look-up cache in front of an [`Interner`]'s map.
const CACHE: usize = 1 << 10;

/// Maps strings to dense symbols and back.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    map: FxHashMap<Box<str>, Sym>,
    strings: Vec<Box<str>>,
    /// Recently seen symbols, by a cheap hash of the string's length and
    /// ends: a parser interns three strings a row, nearly all seen before,
    /// and hashing a 64-character key hash in full cost more than the
    /// compare that confirms a hit here.
    cache: Vec<Sym>,
}

/// Length and the first and last eight bytes, mixed: enough to spread the
/// strings of an export, far cheaper than hashing them whole.
fn quick_slot(s: &str) -> usize {
    let b = s.as_bytes();
    let word = |w: Option<&[u8; 8]>| w.map_or(0, |w| u64::from_le_bytes(*w));
    let (head, tail) = if b.len() >= 8 {
        (word(b.first_chunk()), word(b.last_chunk()))
    } else {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        (u64::from_le_bytes(w), 0)
    };
    let len = u64::try_from(b.len()).unwrap_or(0);
    let h = (head ^ tail.rotate_left(29) ^ len.rotate_left(53)).wrapping_mul(SEED);
    usize::try_from(h >> 54).unwrap_or(0) % CACHE
}

impl Interner {
    /// The symbol for `s`, adding it if new. The empty string is absent.
    pub fn intern(&mut self, s: &str) -> Sym {
        if s.is_empty() {
            return Sym::NONE;
        }
        let slot = quick_slot(s);
        if let Some(&sym) = self.cache.get(slot)
            && sym.is_some()
            && self.get(sym) == s
        {
            return sym;
        }
        if self.cache.is_empty() {
            self.cache = vec![Sym::NONE; CACHE];
        }
        if let Some(&sym) = self.map.get(s) {
            if let Some(c) = self.cache.get_mut(slot) {
                *c = sym;
            }
            return sym;
        }
        let sym = Sym(u32::try_from(self.strings.len()).unwrap_or(u32::MAX - 1));
        self.strings.push(s.into());
        self.map.insert(s.into(), sym);
        if let Some(c) = self.cache.get_mut(slot) {
            *c = sym;
        }
        sym
    }

    /// The string of a symbol; "" for [`Sym::NONE`].
    pub fn get(&self, sym: Sym) -> &str {
        sym.index()
            .and_then(|i| self.strings.get(i))
            .map_or("", |s| s)
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether nothing was interned.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// All strings in symbol order.
    pub fn iter(&self) -> impl Iterator<Item = (Sym, &str)> {
        self.strings
            .iter()
            .enumerate()
            .map(|(i, s)| (Sym(u32::try_from(i).unwrap_or(u32::MAX - 1)), &**s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Strings that share their length and both ends (one cache slot)
        /// still get a symbol each, the same one every time.
        #[test]
        fn every_string_keeps_its_own_symbol(
            middles in proptest::collection::vec("[a-c]{0,3}", 1..60),
            order in proptest::collection::vec(0usize..60, 1..200),
        ) {
            let text = |m: &str| format!("key-0123{m:-<3}abcdefgh");
            let mut i = Interner::default();
            let mut seen: std::collections::HashMap<String, Sym> = Default::default();
            for k in order.iter().copied().chain(0..middles.len()).map(|k| k % middles.len()) {
                let s = text(&middles[k]);
                let sym = i.intern(&s);
                proptest::prop_assert_eq!(i.get(sym), s.as_str());
                proptest::prop_assert_eq!(*seen.entry(s).or_insert(sym), sym);
            }
            proptest::prop_assert_eq!(i.len(), seen.len());
        }
    }
}
