//! One-to-one matching of client rows to gateway rows.
//!
//! A cascade of passes, each consuming its pairs before the next runs
//! (`shared/reference/matching.md`):
//!
//! 1. **id**: equal request ids (client `request_id` or `response_id` against
//!    the gateway id). When an id repeats, rows pair in time order and the
//!    surplus on a side is a *duplicate* (a retry billed twice, double logging).
//!    The gateway-minus-client clock offset is learned from these pairs: a
//!    median per key with at least [`Params::min_key_pairs`] pairs, else the
//!    global median.
//! 2. **strict**: same key, model family, route family, input and output
//!    tokens, and time within the tolerance around the learned offset.
//! 3. **loose**: same key, model family and route family, time within the
//!    tolerance. Pairs made here may differ in tokens.
//!
//! **Ids veto time pairs.** When the client's ids and the gateway's ids come
//! from one id space (the client logged the gateway's call id, or the
//! provider's response id the gateway also keeps), two rows whose ids differ
//! are provably different requests, and the time passes never pair them.
//! Whether a client id field (`request_id`, `response_id`) shares the
//! gateway's id space is learned from the data, per key: of the rows that
//! carry an id in that field on the client and an id on the gateway, at
//! least half paired by id ([`ID_SPACE_SHARE`]). A key with fewer than
//! [`Params::min_key_pairs`] such rows on either side uses the figure over
//! all keys. A gateway whose ids the client never sees pairs no row by id,
//! so its rows still pair by time.
//!
//! Within a block the assignment is the optimum of a banded order-preserving
//! dynamic programme (most pairs, then least total |Δt|), not nearest-row
//! lookups, so a busy key does not get its rows crossed. Every order in the
//! computation is fixed by the data (time, then content, then position), so
//! the same rows in any order give the same pairs up to identical rows.

/// Sentinel for "no partner".
pub const NONE: u32 = u32::MAX;

/// How a row was settled by matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    /// Not matched.
    Unmatched = 0,
    /// Matched by request id.
    Id = 1,
    /// Matched by key, model, route, tokens and time.
    Strict = 2,
    /// Matched by key, model, route and time.
    Loose = 3,
    /// Surplus row with an id already seen on its side.
    Duplicate = 4,
}

impl Pass {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Unmatched => "unmatched",
            Pass::Id => "id",
            Pass::Strict => "strict",
            Pass::Loose => "loose",
            Pass::Duplicate => "duplicate",
        }
    }
}

/// What matching needs to know about the rows of one side.
pub trait MatchView: Sync {
    /// Number of rows.
    fn len(&self) -> usize;
    /// Whether there are no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Request start, UTC ms.
    fn ts(&self, i: usize) -> i64;
    /// Canonical key id.
    fn key(&self, i: usize) -> u32;
    /// Canonical model family id (< 2²⁴).
    fn model(&self, i: usize) -> u32;
    /// Route family.
    fn route(&self, i: usize) -> u8;
    /// Input and output tokens, when both are reported.
    fn core_tokens(&self, i: usize) -> Option<(u32, u32)>;
    /// The row's ids ("" when absent): primary, secondary.
    fn ids(&self, i: usize) -> (&str, &str);
    /// Everything the block passes read of a row, in one look-up (they
    /// read millions of scattered rows; one fetch instead of eight).
    fn block_row(&self, i: usize) -> BlockRow<'_> {
        BlockRow {
            ts: self.ts(i),
            key: self.key(i),
            model: self.model(i),
            route: self.route(i),
            core_tokens: self.core_tokens(i),
            ids: self.ids(i),
        }
    }
}

/// The fields of one row that the block passes use (see
/// [`MatchView::block_row`]).
#[derive(Debug, Clone, Copy)]
pub struct BlockRow<'a> {
    /// Request start, UTC ms.
    pub ts: i64,
    /// Canonical key id.
    pub key: u32,
    /// Canonical model family id.
    pub model: u32,
    /// Route family.
    pub route: u8,
    /// Input and output tokens, when both are reported.
    pub core_tokens: Option<(u32, u32)>,
    /// Primary and secondary id.
    pub ids: (&'a str, &'a str),
}

/// Matching parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Half-width of the time window around the learned offset, in ms.
    pub tolerance_ms: i64,
    /// Id pairs a key needs before it gets its own offset.
    pub min_key_pairs: usize,
    /// Most id entries (12 bytes each) the id pass holds at once; it runs
    /// in as many partitions as keep it under this. The default, about
    /// 200 MB, means one partition up to five million rows a side and two
    /// at ten million.
    pub id_entries_per_part: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            tolerance_ms: 2000,
            min_key_pairs: 5,
            id_entries_per_part: 16 << 20,
        }
    }
}

/// A learned gateway-minus-client clock offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Offset {
    /// Canonical key id (`None` for the global offset).
    pub key: Option<u32>,
    /// Median of gateway time minus client time over id pairs, ms.
    pub offset_ms: i64,
    /// Median absolute deviation, ms.
    pub mad_ms: i64,
    /// Id pairs it was learned from.
    pub pairs: usize,
}

/// The outcome of matching.
#[derive(Debug, Clone)]
pub struct Matching {
    /// For each client row, its gateway partner or [`NONE`].
    pub client_partner: Vec<u32>,
    /// For each gateway row, its client partner or [`NONE`].
    pub gateway_partner: Vec<u32>,
    /// How each client row was settled.
    pub client_pass: Vec<Pass>,
    /// How each gateway row was settled.
    pub gateway_pass: Vec<Pass>,
    /// The global offset learned from id pairs.
    pub global_offset: Offset,
    /// Per-key offsets (keys with enough id pairs), by key id.
    pub key_offsets: Vec<Offset>,
    /// The same, indexed by key id, for lookups per row.
    offset_by_key: Vec<Option<i64>>,
    /// Whether each client id field shares the gateway's id space, over
    /// all keys (see the module documentation).
    pub id_space: [IdSpace; 2],
    /// The same per key id, `None` for keys with too few ids to say.
    id_space_by_key: Vec<[Option<bool>; 2]>,
    /// Client rows paired by id through their second id (a bit per row).
    second_id_pairs: Vec<u64>,
}

/// Share of a client id field's rows with an id on both sides that paired
/// by id, at or above which the field's ids veto time pairs.
pub const ID_SPACE_SHARE: (usize, usize) = (1, 2);

/// What the id pass showed about one client id field (`request_id` or
/// `response_id`) against the gateway's ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IdSpace {
    /// Client rows with an id in this field.
    pub client_ids: usize,
    /// Gateway rows with an id.
    pub gateway_ids: usize,
    /// Pairs made by id through this field.
    pub id_pairs: usize,
}

impl IdSpace {
    /// Whether the ids are comparable: most rows that could have paired by
    /// this field did.
    pub fn comparable(&self) -> bool {
        let could = self.client_ids.min(self.gateway_ids);
        let (num, den) = ID_SPACE_SHARE;
        self.id_pairs > 0 && self.id_pairs.saturating_mul(den) >= could.saturating_mul(num)
    }

    fn enough(&self, min: usize) -> bool {
        self.client_ids.min(self.gateway_ids) >= min.max(1)
    }
}

impl Matching {
    /// Offset applied to a key's client rows.
    pub fn offset_for(&self, key: u32) -> i64 {
        usize::try_from(key)
            .ok()
            .and_then(|k| self.offset_by_key.get(k))
            .copied()
            .flatten()
            .unwrap_or(self.global_offset.offset_ms)
    }

    /// Whether client id field `slot` (0: first id, 1: second) of a key's
    /// rows shares the gateway's id space, so that differing ids veto a
    /// time pair.
    pub fn ids_comparable(&self, key: u32, slot: usize) -> bool {
        usize::try_from(key)
            .ok()
            .and_then(|k| self.id_space_by_key.get(k))
            .and_then(|s| s.get(slot).copied().flatten())
            .or_else(|| self.id_space.get(slot).map(IdSpace::comparable))
            .unwrap_or(false)
    }

    /// Whether two rows' ids prove them different requests: the client row
    /// has an id in a field that shares the gateway's id space, the gateway
    /// row has an id, and they differ.
    pub fn ids_conflict(&self, key: u32, client_ids: (&str, &str), gateway_id: &str) -> bool {
        if gateway_id.is_empty() {
            return false;
        }
        let mut compared = false;
        for (slot, id) in [client_ids.0, client_ids.1].into_iter().enumerate() {
            if !id.is_empty() && self.ids_comparable(key, slot) {
                if id == gateway_id {
                    return false;
                }
                compared = true;
            }
        }
        compared
    }

    fn paired_by_second_id(&self, c: usize) -> bool {
        self.second_id_pairs
            .get(c / 64)
            .is_some_and(|w| w >> (c % 64) & 1 == 1)
    }

    fn mark_second_id(&mut self, c: usize) {
        if let Some(w) = self.second_id_pairs.get_mut(c / 64) {
            *w |= 1 << (c % 64);
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn idx(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

fn at(i: u32) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

/// Content tie-breaker: rows equal in time sort by what they contain, not by
/// where they stood in the file.
fn content<V: MatchView + ?Sized>(v: &V, i: usize) -> u32 {
    content_of(v.core_tokens(i), v.ids(i))
}

fn content_of(tokens: Option<(u32, u32)>, (id1, id2): (&str, &str)) -> u32 {
    let (a, b) = tokens.unwrap_or((u32::MAX, u32::MAX));
    let h = mix(u64::from(a) << 32 | u64::from(b))
        ^ fnv(id1.as_bytes())
        ^ fnv(id2.as_bytes()).rotate_left(17);
    u32::try_from(h >> 32).unwrap_or(0)
}

/// Matches client rows to gateway rows.
pub fn match_rows<C: MatchView, G: MatchView>(client: &C, gateway: &G, params: Params) -> Matching {
    let mut m = Matching {
        client_partner: vec![NONE; client.len()],
        gateway_partner: vec![NONE; gateway.len()],
        client_pass: vec![Pass::Unmatched; client.len()],
        gateway_pass: vec![Pass::Unmatched; gateway.len()],
        global_offset: Offset {
            key: None,
            offset_ms: 0,
            mad_ms: 0,
            pairs: 0,
        },
        key_offsets: Vec::new(),
        offset_by_key: Vec::new(),
        id_space: [IdSpace::default(); 2],
        id_space_by_key: Vec::new(),
        second_id_pairs: vec![0; client.len().div_ceil(64)],
    };
    id_pass(client, gateway, &mut m, params);
    learn_offsets(client, gateway, &mut m, params);
    learn_id_spaces(client, gateway, &mut m, params);
    block_pass(client, gateway, &mut m, params, true);
    block_pass(client, gateway, &mut m, params, false);
    m
}

/// An id to join on: 12 bytes (4-byte aligned), since there is one per id
/// on both sides (fifteen million at ten million rows).
#[derive(Clone, Copy)]
struct IdEntry {
    hash: [u32; 2],
    /// Row index; the top bit says the id is the row's second one.
    tagged: u32,
}

impl IdEntry {
    fn new(hash: u64, row: usize, second: bool) -> Self {
        let lo = u32::try_from(hash & 0xffff_ffff).unwrap_or(0);
        let hi = u32::try_from(hash >> 32).unwrap_or(0);
        Self {
            hash: [lo, hi],
            tagged: (idx(row) & 0x7fff_ffff) | if second { 0x8000_0000 } else { 0 },
        }
    }

    fn hash(&self) -> u64 {
        u64::from(self.hash[1]) << 32 | u64::from(self.hash[0])
    }

    fn row(&self) -> u32 {
        self.tagged & 0x7fff_ffff
    }

    fn second(&self) -> bool {
        self.tagged & 0x8000_0000 != 0
    }
}

/// The block passes run partition by partition so that only a fraction of
/// their sort entries exist at once: at ten million rows a side,
/// whole-table entries pushed peak memory past 2 GB. Partitions never split
/// a block (they go by key) or an id (the id pass partitions by the id's
/// last byte, see [`id_parts`]), so results do not change.
const PARTS: u32 = 4;

/// Id partitions for these sides (see [`Params::id_entries_per_part`]): a
/// client row has up to two ids, a gateway row one. Each partition rescans
/// both sides, so fewer is faster while memory allows.
fn id_parts(client_rows: usize, gateway_rows: usize, per_part: usize) -> u32 {
    let most = client_rows.saturating_mul(2).saturating_add(gateway_rows);
    u32::try_from(most.div_ceil(per_part.max(1)).clamp(1, 64)).unwrap_or(64)
}

fn id_part(id: &str, parts: u32) -> u32 {
    id.as_bytes().last().map_or(0, |&b| u32::from(b) % parts)
}

fn id_entries<V: MatchView>(v: &V, both: bool, (part, parts): (u32, u32)) -> Vec<IdEntry> {
    let mut out = Vec::new();
    for i in 0..v.len() {
        let (a, b) = v.ids(i);
        if !a.is_empty() && id_part(a, parts) == part {
            out.push(IdEntry::new(fnv(a.as_bytes()), i, false));
        }
        if both && !b.is_empty() && id_part(b, parts) == part {
            out.push(IdEntry::new(fnv(b.as_bytes()), i, true));
        }
    }
    out
}

fn id_of<V: MatchView>(v: &V, e: &IdEntry) -> String {
    let (a, b) = v.ids(at(e.row()));
    if e.second() {
        b.to_owned()
    } else {
        a.to_owned()
    }
}

fn id_pass<C: MatchView, G: MatchView>(client: &C, gateway: &G, m: &mut Matching, params: Params) {
    let parts = id_parts(client.len(), gateway.len(), params.id_entries_per_part);
    for part in 0..parts {
        id_pass_part(client, gateway, m, (part, parts));
    }
}

fn id_pass_part<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    m: &mut Matching,
    part: (u32, u32),
) {
    let sorted = |mut e: Vec<IdEntry>| {
        e.sort_unstable_by_key(IdEntry::hash);
        e
    };
    let (ce, ge) = crate::par::join(
        client.len() + gateway.len(),
        || sorted(id_entries(client, true, part)),
        || sorted(id_entries(gateway, false, part)),
    );
    // The common case is one row per side under a hash. Checking that the
    // two ids are really equal reads both rows' ids; in hash order those
    // reads are random (two cache misses each, millions of times), so the
    // checks run first in client row order, where both sides' reads are
    // nearly sequential, and the pairs are then made in hash order as before.
    // The entries split at a hash into two halves checked on both cores;
    // no hash group straddles the split.
    let verify = |ce: &[IdEntry], ge: &[IdEntry]| -> Vec<bool> {
        let mut singles: Vec<(IdEntry, u32, u32)> = Vec::new();
        for_each_hash_group(ce, ge, |cs, gs| {
            if let ([c], [g]) = (cs, gs) {
                let k = u32::try_from(singles.len()).unwrap_or(u32::MAX);
                singles.push((*c, g.row(), k));
            }
        });
        singles.sort_unstable_by_key(|(c, _, _)| c.row());
        let mut same = vec![false; singles.len()];
        for (c, g, k) in &singles {
            let (a, b) = client.ids(at(c.row()));
            let cid = if c.second() { b } else { a };
            if let Some(slot) = same.get_mut(at(*k)) {
                *slot = cid == gateway.ids(at(*g)).0;
            }
        }
        same
    };
    let mid = ce.get(ce.len() / 2).map_or(0, IdEntry::hash);
    let (ci, gi) = (
        ce.partition_point(|e| e.hash() < mid),
        ge.partition_point(|e| e.hash() < mid),
    );
    let (mut same, upper) = crate::par::join(
        client.len() + gateway.len(),
        || {
            verify(
                ce.get(..ci).unwrap_or_default(),
                ge.get(..gi).unwrap_or_default(),
            )
        },
        || {
            verify(
                ce.get(ci..).unwrap_or_default(),
                ge.get(gi..).unwrap_or_default(),
            )
        },
    );
    same.extend(upper);
    // Client ids that appear on the gateway are processed per id; ids seen
    // on one side only still define duplicates on that side.
    let mut k = 0;
    for_each_hash_group(&ce, &ge, |cs, gs| {
        if let ([c], [g]) = (cs, gs) {
            let (ci, gj) = (at(c.row()), at(g.row()));
            let free = m.client_pass.get(ci) == Some(&Pass::Unmatched)
                && m.gateway_pass.get(gj) == Some(&Pass::Unmatched);
            if same.get(k) == Some(&true) && free {
                pair(m, ci, gj, Pass::Id);
                if c.second() {
                    m.mark_second_id(ci);
                }
            }
            k += 1;
        } else if cs.len() + gs.len() > 1 {
            settle_hash_group(client, gateway, cs, gs, m);
        }
    });
}

/// Calls `f` with each run of equal hashes on both sides, in hash order
/// (one side's run may be empty).
fn for_each_hash_group(ce: &[IdEntry], ge: &[IdEntry], mut f: impl FnMut(&[IdEntry], &[IdEntry])) {
    let (mut i, mut j) = (0, 0);
    while i < ce.len() || j < ge.len() {
        let hc = ce.get(i).map_or(u64::MAX, IdEntry::hash);
        let hg = ge.get(j).map_or(u64::MAX, IdEntry::hash);
        let h = hc.min(hg);
        let i_end = i + ce
            .get(i..)
            .map_or(0, |s| s.iter().take_while(|e| e.hash() == h).count());
        let j_end = j + ge
            .get(j..)
            .map_or(0, |s| s.iter().take_while(|e| e.hash() == h).count());
        if i_end == i && j_end == j {
            break;
        }
        f(
            ce.get(i..i_end).unwrap_or_default(),
            ge.get(j..j_end).unwrap_or_default(),
        );
        i = i_end;
        j = j_end;
    }
}

/// One hash bucket: split by the exact id (hash collisions), then settle.
fn settle_hash_group<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    cs: &[IdEntry],
    gs: &[IdEntry],
    m: &mut Matching,
) {
    let mut cids: Vec<(String, IdEntry)> = cs.iter().map(|e| (id_of(client, e), *e)).collect();
    let mut gids: Vec<(String, IdEntry)> = gs.iter().map(|e| (id_of(gateway, e), *e)).collect();
    cids.sort_by(|a, b| a.0.cmp(&b.0));
    gids.sort_by(|a, b| a.0.cmp(&b.0));
    let mut ids: Vec<&str> = cids
        .iter()
        .chain(gids.iter())
        .map(|(s, _)| s.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let c: Vec<usize> = cids
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, e)| at(e.row()))
            .collect();
        let g: Vec<usize> = gids
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, e)| at(e.row()))
            .collect();
        settle_id(client, gateway, c, g, m);
    }
}

fn settle_id<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    mut c: Vec<usize>,
    mut g: Vec<usize>,
    m: &mut Matching,
) {
    // A client row can be reached through both of its ids; settle it once.
    c.retain(|&i| m.client_pass.get(i) == Some(&Pass::Unmatched));
    c.sort_unstable();
    c.dedup();
    g.retain(|&j| m.gateway_pass.get(j) == Some(&Pass::Unmatched));
    c.sort_by_key(|&i| (client.ts(i), content(client, i), i));
    g.sort_by_key(|&j| (gateway.ts(j), content(gateway, j), j));
    let pairs = if c.is_empty() || g.is_empty() {
        Vec::new()
    } else if c.len() == 1 && g.len() == 1 {
        vec![(0, 0)]
    } else {
        let cts: Vec<i64> = c.iter().map(|&i| client.ts(i)).collect();
        let gts: Vec<i64> = g.iter().map(|&j| gateway.ts(j)).collect();
        if c.len().saturating_mul(g.len()) <= 1 << 20 {
            assign(&cts, &gts, i64::MAX / 4, |_, _| true)
        } else {
            // Pathological (one id on thousands of rows): pair in time order.
            (0..c.len().min(g.len())).map(|k| (k, k)).collect()
        }
    };
    let mut c_paired = vec![false; c.len()];
    let mut g_paired = vec![false; g.len()];
    for &(a, b) in &pairs {
        let (Some(&ci), Some(&gj)) = (c.get(a), g.get(b)) else {
            continue;
        };
        pair(m, ci, gj, Pass::Id);
        if client.ids(ci).0 != gateway.ids(gj).0 {
            m.mark_second_id(ci);
        }
        if let Some(p) = c_paired.get_mut(a) {
            *p = true;
        }
        if let Some(p) = g_paired.get_mut(b) {
            *p = true;
        }
    }
    // Surplus rows are duplicates; with no partner at all, the earliest row of
    // a side stays in play for the later passes.
    let keep_first = pairs.is_empty();
    mark_dups(&c, &c_paired, keep_first, &mut m.client_pass);
    mark_dups(&g, &g_paired, keep_first, &mut m.gateway_pass);
}

fn mark_dups(rows: &[usize], paired: &[bool], keep_first: bool, pass: &mut [Pass]) {
    let mut kept = !keep_first;
    for (&r, &p) in rows.iter().zip(paired) {
        if p {
            continue;
        }
        if !kept {
            kept = true;
            continue;
        }
        if let Some(s) = pass.get_mut(r) {
            *s = Pass::Duplicate;
        }
    }
}

fn pair(m: &mut Matching, c: usize, g: usize, pass: Pass) {
    if let Some(p) = m.client_partner.get_mut(c) {
        *p = idx(g);
    }
    if let Some(p) = m.gateway_partner.get_mut(g) {
        *p = idx(c);
    }
    if let Some(p) = m.client_pass.get_mut(c) {
        *p = pass;
    }
    if let Some(p) = m.gateway_pass.get_mut(g) {
        *p = pass;
    }
}

/// Median and median absolute deviation of the deltas of `(key, delta)`
/// pairs, in place (the slice is reordered): no copy of five million deltas.
fn median_mad(v: &mut [(u32, i64)]) -> (i64, i64) {
    if v.is_empty() {
        return (0, 0);
    }
    let mid = v.len() / 2;
    let (_, &mut (_, med), _) = v.select_nth_unstable_by_key(mid, |e| e.1);
    let (_, &mut (_, at_mad), _) = v.select_nth_unstable_by_key(mid, |e| (e.1 - med).abs());
    (med, (at_mad - med).abs())
}

fn learn_offsets<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    m: &mut Matching,
    params: Params,
) {
    let mut by_key: Vec<(u32, i64)> = m
        .client_partner
        .iter()
        .enumerate()
        .filter(|&(i, &p)| p != NONE && m.client_pass.get(i) == Some(&Pass::Id))
        .map(|(i, &p)| (client.key(i), gateway.ts(at(p)) - client.ts(i)))
        .collect();
    let (med, mad) = median_mad(&mut by_key);
    m.global_offset = Offset {
        key: None,
        offset_ms: med,
        mad_ms: mad,
        pairs: by_key.len(),
    };
    // Grouped by key only: a median does not depend on the order within
    // a group.
    by_key.sort_unstable_by_key(|e| e.0);
    for chunk in by_key.chunk_by_mut(|a, b| a.0 == b.0) {
        if chunk.len() < params.min_key_pairs {
            continue;
        }
        let key = chunk.first().map(|&(k, _)| k);
        let (med, mad) = median_mad(chunk);
        m.key_offsets.push(Offset {
            key,
            offset_ms: med,
            mad_ms: mad,
            pairs: chunk.len(),
        });
    }
    for o in &m.key_offsets {
        if let Some(k) = o.key.and_then(|k| usize::try_from(k).ok()) {
            if m.offset_by_key.len() <= k {
                m.offset_by_key.resize(k + 1, None);
            }
            if let Some(slot) = m.offset_by_key.get_mut(k) {
                *slot = Some(o.offset_ms);
            }
        }
    }
}

/// Counts, per key and over all keys, how many rows carry ids and how many
/// paired by each client id field, and settles which fields veto time pairs.
fn learn_id_spaces<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    m: &mut Matching,
    params: Params,
) {
    // One sequential scan a side; keys are dense ids, so a table per key.
    let (by_key_c, by_key_g) = crate::par::join(
        client.len() + gateway.len(),
        || {
            let mut t: Vec<[usize; 4]> = Vec::new();
            for i in 0..client.len() {
                let (a, b) = client.ids(i);
                if a.is_empty() && b.is_empty() {
                    continue;
                }
                let paired = m.client_pass.get(i) == Some(&Pass::Id);
                let second = paired && m.paired_by_second_id(i);
                if let Some(e) = of_key(&mut t, client.key(i)) {
                    e[0] += usize::from(!a.is_empty());
                    e[1] += usize::from(!b.is_empty());
                    e[2] += usize::from(paired && !second);
                    e[3] += usize::from(second);
                }
            }
            t
        },
        || {
            let mut t: Vec<usize> = Vec::new();
            for j in 0..gateway.len() {
                if !gateway.ids(j).0.is_empty()
                    && let Some(e) = of_key(&mut t, gateway.key(j))
                {
                    *e += 1;
                }
            }
            t
        },
    );
    let keys = by_key_c.len().max(by_key_g.len());
    let mut all = [IdSpace::default(); 2];
    let mut per_key = vec![[IdSpace::default(); 2]; keys];
    for (k, spaces) in per_key.iter_mut().enumerate() {
        let c = by_key_c.get(k).copied().unwrap_or([0; 4]);
        let g = by_key_g.get(k).copied().unwrap_or(0);
        for (slot, space) in spaces.iter_mut().enumerate() {
            *space = IdSpace {
                client_ids: c.get(slot).copied().unwrap_or(0),
                gateway_ids: g,
                id_pairs: c.get(slot + 2).copied().unwrap_or(0),
            };
            if let Some(a) = all.get_mut(slot) {
                a.client_ids += space.client_ids;
                a.gateway_ids += space.gateway_ids;
                a.id_pairs += space.id_pairs;
            }
        }
    }
    m.id_space = all;
    m.id_space_by_key = per_key
        .iter()
        .map(|s| s.map(|x| x.enough(params.min_key_pairs).then(|| x.comparable())))
        .collect();
}

/// Key `key`'s entry of a table indexed by key id, grown to hold it
/// (`None` for a row with no key). Key ids are dense, so tables stay small.
fn of_key<T: Clone + Default>(table: &mut Vec<T>, key: u32) -> Option<&mut T> {
    let k = usize::try_from(key).ok().filter(|_| key != NONE)?;
    if table.len() <= k {
        table.resize(k + 1, T::default());
    }
    table.get_mut(k)
}

/// A 32-bit fingerprint of an id for the veto (0 means "no id to compare").
/// Two different ids that collide merely lose their veto.
fn veto_hash(id: &str) -> u32 {
    if id.is_empty() {
        0
    } else {
        u32::try_from(fnv(id.as_bytes()) >> 32).unwrap_or(0) | 1
    }
}

/// Whether a client entry's comparable ids and a gateway entry's id prove
/// them different requests (see [`Matching::ids_conflict`]).
fn vetoed(client: [u32; 2], gateway: [u32; 2]) -> bool {
    let g = gateway[0];
    g != 0 && client != [0, 0] && client[0] != g && client[1] != g
}

#[derive(Clone, Copy)]
struct BlockEntry {
    block: u64,
    ts: i64,
    tie: u32,
    row: u32,
    /// The exact block fields, read while the rows are scanned in order:
    /// reading them again from a block's scattered rows cost a cache miss each.
    exact: Exact,
    /// Id fingerprints for the veto: a client row's comparable ids, a
    /// gateway row's id first.
    vid: [u32; 2],
}

fn loose_block(r: &BlockRow<'_>) -> u64 {
    u64::from(r.key) << 32 | u64::from(r.model & 0x00ff_ffff) << 8 | u64::from(r.route)
}

fn strict_block(r: &BlockRow<'_>) -> Option<u64> {
    let (a, b) = r.core_tokens?;
    Some(mix(loose_block(r) ^ mix(u64::from(a) << 32 | u64::from(b))))
}

/// The partition of each row still unmatched (`u8::MAX` for the others),
/// worked out once per block pass: each partition's scan then reads one
/// byte a row instead of looking up every unmatched row's key again.
fn row_parts<V: MatchView>(v: &V, pass: &[Pass]) -> Vec<u8> {
    (0..v.len())
        .map(|i| {
            if pass.get(i) == Some(&Pass::Unmatched) {
                u8::try_from(v.key(i) % PARTS).unwrap_or(u8::MAX)
            } else {
                u8::MAX
            }
        })
        .collect()
}

fn entries<V: MatchView>(
    v: &V,
    parts: &[u8],
    strict: bool,
    part: u32,
    shift: impl Fn(u32) -> i64,
    vid: impl Fn(&BlockRow<'_>) -> [u32; 2],
) -> Vec<BlockEntry> {
    let part = u8::try_from(part).unwrap_or(u8::MAX);
    let mut out: Vec<BlockEntry> = Vec::new();
    // A part's rows are scattered (a fifth of them, or fewer), so each one
    // read is a cache miss. Reading a batch of them first, in a loop that
    // does little else, lets the processor wait for many misses at once;
    // the hashing that follows then works on what is already in cache.
    const BATCH: usize = 512;
    let mut batch: Vec<(usize, BlockRow<'_>)> = Vec::with_capacity(BATCH);
    let mut rows = parts
        .iter()
        .enumerate()
        .filter(|&(_, &p)| p == part)
        .map(|(i, _)| i)
        .peekable();
    while rows.peek().is_some() {
        batch.clear();
        let mut touched = 0u8;
        for i in rows.by_ref().take(BATCH) {
            let r = v.block_row(i);
            // The first byte of the id brings its cache line in too.
            touched ^= r.ids.0.as_bytes().first().copied().unwrap_or(0);
            batch.push((i, r));
        }
        std::hint::black_box(touched);
        out.extend(batch.iter().filter_map(|(i, r)| {
            let block = if strict {
                strict_block(r)?
            } else {
                loose_block(r)
            };
            Some(BlockEntry {
                block,
                ts: r.ts + shift(r.key),
                tie: content_of(r.core_tokens, r.ids),
                row: idx(*i),
                exact: exact(r, strict),
                vid: vid(r),
            })
        }));
    }
    out.sort_unstable_by_key(|e| (e.block, e.ts, e.tie, e.row));
    out
}

/// What must be equal for two rows to share a block.
type Exact = (u32, u32, u8, Option<(u32, u32)>);

fn exact(r: &BlockRow<'_>, strict: bool) -> Exact {
    (
        r.key,
        r.model,
        r.route,
        if strict { r.core_tokens } else { None },
    )
}

fn block_pass<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    m: &mut Matching,
    params: Params,
    strict: bool,
) {
    // Rows paired in one partition belong to no other: the partitions
    // worked out before the first stay right for all of them.
    let (cp, gp) = crate::par::join(
        client.len() + gateway.len(),
        || row_parts(client, &m.client_pass),
        || row_parts(gateway, &m.gateway_pass),
    );
    for part in 0..PARTS {
        block_pass_part(client, gateway, m, params, strict, part, (&cp, &gp));
    }
}

fn block_pass_part<C: MatchView, G: MatchView>(
    client: &C,
    gateway: &G,
    m: &mut Matching,
    params: Params,
    strict: bool,
    part: u32,
    (client_parts, gateway_parts): (&[u8], &[u8]),
) {
    let offsets = &*m;
    let (ce, ge) = crate::par::join(
        client.len() + gateway.len(),
        || {
            entries(
                client,
                client_parts,
                strict,
                part,
                |k| offsets.offset_for(k),
                |r| {
                    let h = |slot: usize, id: &str| {
                        if id.is_empty() || !offsets.ids_comparable(r.key, slot) {
                            0
                        } else {
                            veto_hash(id)
                        }
                    };
                    [h(0, r.ids.0), h(1, r.ids.1)]
                },
            )
        },
        || {
            entries(
                gateway,
                gateway_parts,
                strict,
                part,
                |_| 0,
                |r| [veto_hash(r.ids.0), 0],
            )
        },
    );
    let pass = if strict { Pass::Strict } else { Pass::Loose };
    let (mut i, mut j) = (0, 0);
    let mut found = Vec::new();
    let (mut cts, mut gts): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    while i < ce.len() && j < ge.len() {
        let (Some(c0), Some(g0)) = (ce.get(i), ge.get(j)) else {
            break;
        };
        if c0.block < g0.block {
            i += ce
                .get(i..)
                .map_or(1, |s| s.iter().take_while(|e| e.block == c0.block).count());
            continue;
        }
        if g0.block < c0.block {
            j += ge
                .get(j..)
                .map_or(1, |s| s.iter().take_while(|e| e.block == g0.block).count());
            continue;
        }
        let b = c0.block;
        let cn = ce
            .get(i..)
            .map_or(0, |s| s.iter().take_while(|e| e.block == b).count());
        let gn = ge
            .get(j..)
            .map_or(0, |s| s.iter().take_while(|e| e.block == b).count());
        let cb = ce.get(i..i + cn).unwrap_or_default();
        let gb = ge.get(j..j + gn).unwrap_or_default();
        i += cn;
        j += gn;
        // Block keys are hashes (or truncate the model id): verify the exact fields.
        if let ([x], [y]) = (cb, gb) {
            // One row a side (most strict blocks): the assignment is the pair
            // itself when it is within the window; no buffers, no DP.
            let tol = params.tolerance_ms;
            if x.exact == y.exact
                && !vetoed(x.vid, y.vid)
                && y.ts >= x.ts.saturating_sub(tol)
                && y.ts <= x.ts.saturating_add(tol)
            {
                found.push((at(x.row), at(y.row)));
            }
            continue;
        }
        cts.clear();
        cts.extend(cb.iter().map(|e| e.ts));
        gts.clear();
        gts.extend(gb.iter().map(|e| e.ts));
        let feasible = |a: usize, bb: usize| matches!((cb.get(a), gb.get(bb)), (Some(x), Some(y)) if x.exact == y.exact && !vetoed(x.vid, y.vid));
        for (a, bb) in assign(&cts, &gts, params.tolerance_ms, feasible) {
            if let (Some(x), Some(y)) = (cb.get(a), gb.get(bb)) {
                found.push((at(x.row), at(y.row)));
            }
        }
    }
    for (c, g) in found {
        pair(m, c, g, pass);
    }
}

const MATCH: u8 = 0;
const SKIP_CLIENT: u8 = 1;
const SKIP_GATEWAY: u8 = 2;

/// Optimal order-preserving one-to-one assignment of two time-sorted lists:
/// client `a` may pair with gateway `b` when `|g[b] - c[a]| <= tol` and
/// `feasible(a, b)`. Maximises the number of pairs, then minimises the sum
/// of |Δt|. Banded: time and memory O(n·k), k the window occupancy.
pub fn assign(
    c: &[i64],
    g: &[i64],
    tol: i64,
    feasible: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let n = c.len();
    let m = g.len();
    if n == 0 || m == 0 {
        return Vec::new();
    }
    // Window of client a: gateway rows [lo, hi). Both ends only move forward.
    let mut lo = Vec::with_capacity(n);
    let mut hi = Vec::with_capacity(n);
    let (mut a, mut b) = (0usize, 0usize);
    for &t in c {
        while g.get(a).is_some_and(|&x| x < t.saturating_sub(tol)) {
            a += 1;
        }
        b = b.max(a);
        while g.get(b).is_some_and(|&x| x <= t.saturating_add(tol)) {
            b += 1;
        }
        lo.push(a);
        hi.push(b);
    }
    // F_i(j): best value using the first i clients and the first j gateways.
    // Row i is kept for j in [lo_i, hi_i]; beyond hi_i it is constant.
    const PAIR: i128 = 1 << 64;
    let mut offsets = Vec::with_capacity(n + 1);
    let mut choices: Vec<u8> = Vec::new();
    let mut prev: Vec<i128> = Vec::new();
    let (mut plo, mut phi) = (0usize, usize::MAX);
    let mut cur: Vec<i128> = Vec::new();
    for i in 0..n {
        let (l, h) = (
            lo.get(i).copied().unwrap_or(0),
            hi.get(i).copied().unwrap_or(0),
        );
        let prev_at = |j: usize| -> i128 {
            if phi == usize::MAX {
                0
            } else {
                prev.get(j.min(phi).saturating_sub(plo))
                    .copied()
                    .unwrap_or(0)
            }
        };
        offsets.push(choices.len());
        cur.clear();
        cur.push(prev_at(l));
        choices.push(SKIP_CLIENT);
        let ci = c.get(i).copied().unwrap_or(0);
        for j in l + 1..=h {
            let mut best = i128::MIN;
            let mut ch = SKIP_CLIENT;
            if feasible(i, j - 1) {
                let dt = i128::from((g.get(j - 1).copied().unwrap_or(0) - ci).abs());
                best = prev_at(j - 1) + PAIR - dt;
                ch = MATCH;
            }
            let v = prev_at(j);
            if v > best {
                best = v;
                ch = SKIP_CLIENT;
            }
            let v = cur.last().copied().unwrap_or(i128::MIN);
            if v > best {
                best = v;
                ch = SKIP_GATEWAY;
            }
            cur.push(best);
            choices.push(ch);
        }
        std::mem::swap(&mut prev, &mut cur);
        plo = l;
        phi = h;
    }
    offsets.push(choices.len());
    // Walk back from (n, m).
    let mut out = Vec::new();
    let mut i = n;
    let mut j = m;
    while i > 0 {
        let r = i - 1;
        let (l, h) = (
            lo.get(r).copied().unwrap_or(0),
            hi.get(r).copied().unwrap_or(0),
        );
        j = j.min(h);
        if j <= l {
            i -= 1;
            continue;
        }
        let ch = offsets
            .get(r)
            .and_then(|&o| choices.get(o + (j - l)))
            .copied()
            .unwrap_or(SKIP_CLIENT);
        match ch {
            MATCH => {
                out.push((r, j - 1));
                i -= 1;
                j -= 1;
            }
            SKIP_CLIENT => i -= 1,
            _ => j -= 1,
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plain in-memory side for tests.
    #[derive(Default, Clone)]
    pub(crate) struct Rows {
        pub ts: Vec<i64>,
        pub key: Vec<u32>,
        pub model: Vec<u32>,
        pub tokens: Vec<Option<(u32, u32)>>,
        pub ids: Vec<(String, String)>,
    }

    impl Rows {
        fn push(&mut self, ts: i64, key: u32, tokens: Option<(u32, u32)>, id: &str) {
            self.ts.push(ts);
            self.key.push(key);
            self.model.push(0);
            self.tokens.push(tokens);
            self.ids.push((id.to_owned(), String::new()));
        }
    }

    impl MatchView for Rows {
        fn len(&self) -> usize {
            self.ts.len()
        }
        fn ts(&self, i: usize) -> i64 {
            self.ts[i]
        }
        fn key(&self, i: usize) -> u32 {
            self.key[i]
        }
        fn model(&self, i: usize) -> u32 {
            self.model[i]
        }
        fn route(&self, _: usize) -> u8 {
            0
        }
        fn core_tokens(&self, i: usize) -> Option<(u32, u32)> {
            self.tokens[i]
        }
        fn ids(&self, i: usize) -> (&str, &str) {
            (&self.ids[i].0, &self.ids[i].1)
        }
    }

    fn brute(c: &[i64], g: &[i64], tol: i64) -> (usize, i64) {
        // Exhaustive best (pairs, -cost) over all one-to-one assignments.
        fn go(i: usize, used: &mut Vec<bool>, c: &[i64], g: &[i64], tol: i64) -> (usize, i64) {
            if i == c.len() {
                return (0, 0);
            }
            let mut best = go(i + 1, used, c, g, tol);
            for j in 0..g.len() {
                if !used[j] && (g[j] - c[i]).abs() <= tol {
                    used[j] = true;
                    let (n, cost) = go(i + 1, used, c, g, tol);
                    used[j] = false;
                    let cand = (n + 1, cost + (g[j] - c[i]).abs());
                    if cand.0 > best.0 || (cand.0 == best.0 && cand.1 < best.1) {
                        best = cand;
                    }
                }
            }
            best
        }
        go(0, &mut vec![false; g.len()], c, g, tol)
    }

    proptest! {
        #[test]
        fn banded_dp_is_optimal(mut c in prop::collection::vec(0i64..60, 0..7), mut g in prop::collection::vec(0i64..60, 0..7), tol in 0i64..15) {
            c.sort_unstable();
            g.sort_unstable();
            let pairs = assign(&c, &g, tol, |_, _| true);
            let mut seen_c = std::collections::HashSet::new();
            let mut seen_g = std::collections::HashSet::new();
            for &(a, b) in &pairs {
                prop_assert!(seen_c.insert(a) && seen_g.insert(b), "not one-to-one");
                prop_assert!((g[b] - c[a]).abs() <= tol);
            }
            let cost: i64 = pairs.iter().map(|&(a, b)| (g[b] - c[a]).abs()).sum();
            prop_assert_eq!((pairs.len(), cost), brute(&c, &g, tol));
        }
    }

    #[test]
    fn dp_beats_nearest_lookup() {
        // Nearest-row lookup gives gateway 105 to both clients; the optimum
        // pairs 100↔95 and 110↔105.
        let pairs = assign(&[100, 110], &[95, 105], 10, |_, _| true);
        assert_eq!(pairs, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn cascade_ids_duplicates_offsets_and_blocks() {
        let mut c = Rows::default();
        let mut g = Rows::default();
        // Five id pairs on key 1, gateway 300 ms late: learns the offset.
        for k in 0..5 {
            c.push(k * 10_000, 1, Some((10, 5)), &format!("id{k}"));
            g.push(k * 10_000 + 300, 1, Some((10, 5)), &format!("id{k}"));
        }
        // A retry billed twice: one client row, two gateway rows with its id.
        c.push(60_000, 1, Some((10, 5)), "retry");
        g.push(60_300, 1, Some((10, 5)), "retry");
        g.push(61_900, 1, Some((10, 5)), "retry");
        // No ids: strict match 2.2 s apart raw, 1.9 s after the offset... within 2 s.
        c.push(100_000, 1, Some((7, 7)), "");
        g.push(102_200, 1, Some((7, 7)), "");
        // Loose: tokens differ.
        c.push(200_000, 1, Some((7, 7)), "");
        g.push(200_400, 1, Some((9, 9)), "");
        // Another key: never paired with key 1.
        c.push(300_000, 2, Some((1, 1)), "");
        g.push(300_000, 3, Some((1, 1)), "");
        let m = match_rows(&c, &g, Params::default());
        assert_eq!(m.global_offset.offset_ms, 300);
        assert_eq!(m.offset_for(1), 300);
        assert_eq!(&m.client_pass[..5], &[Pass::Id; 5]);
        assert_eq!(m.client_pass[5], Pass::Id);
        assert_eq!(m.client_partner[5], 5, "retry pairs with the nearer row");
        assert_eq!(m.gateway_pass[6], Pass::Duplicate);
        assert_eq!((m.client_pass[6], m.client_partner[6]), (Pass::Strict, 7));
        assert_eq!((m.client_pass[7], m.client_partner[7]), (Pass::Loose, 8));
        assert_eq!(m.client_pass[8], Pass::Unmatched);
        assert_eq!(m.gateway_pass[9], Pass::Unmatched);
    }

    #[test]
    fn a_lone_pair_outside_the_window_stays_apart() {
        // One row a side in a block (the common strict case), no ids: paired
        // inside the 2 s window on either side, not a millisecond beyond.
        for (dt, paired) in [
            (2_000, true),
            (-2_000, true),
            (2_001, false),
            (-2_001, false),
        ] {
            let mut c = Rows::default();
            let mut g = Rows::default();
            c.push(50_000, 4, Some((3, 3)), "");
            g.push(50_000 + dt, 4, Some((3, 3)), "");
            let m = match_rows(&c, &g, Params::default());
            let want = if paired {
                Pass::Strict
            } else {
                Pass::Unmatched
            };
            assert_eq!(m.client_pass[0], want, "{dt} ms");
        }
    }

    #[test]
    fn the_id_pass_gives_the_same_pairs_in_any_number_of_partitions() {
        // Ids ending in every byte, retries, ids on one side only, and rows
        // without ids, so partitions split the work every which way.
        let mut c = Rows::default();
        let mut g = Rows::default();
        let mut x: u64 = 7;
        for k in 0..400i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = format!("req-{}{}", x % 1000, char::from(b'a' + (x % 26) as u8));
            let key = (x % 3) as u32;
            let id_c = if x.is_multiple_of(5) { "" } else { id.as_str() };
            c.push(k * 1_000, key, Some((10, 2)), id_c);
            if !x.is_multiple_of(7) {
                g.push(k * 1_000 + 250, key, Some((10, 2)), &id);
            }
            if x.is_multiple_of(11) {
                g.push(k * 1_000 + 900, key, Some((10, 2)), &id);
            }
        }
        let one = match_rows(&c, &g, Params::default());
        assert!(one.client_pass.iter().filter(|p| **p == Pass::Id).count() > 250);
        for per_part in [1, 97, 300] {
            let params = Params {
                id_entries_per_part: per_part,
                ..Params::default()
            };
            assert!(id_parts(c.len(), g.len(), per_part) > 1);
            let many = match_rows(&c, &g, params);
            assert_eq!(many.client_partner, one.client_partner, "{per_part}");
            assert_eq!(many.client_pass, one.client_pass, "{per_part}");
            assert_eq!(many.gateway_pass, one.gateway_pass, "{per_part}");
        }
    }

    /// A key's worth of rows that pair by id, so the id spaces are learned.
    fn id_paired(c: &mut Rows, g: &mut Rows, key: u32, n: i64) {
        for k in 0..n {
            let id = format!("call-{key}-{k}");
            c.push(k * 10_000, key, Some((10, 5)), &id);
            g.push(k * 10_000 + 300, key, Some((10, 5)), &id);
        }
    }

    #[test]
    fn differing_comparable_ids_veto_a_time_pair() {
        // The case: the client logged the gateway's call id, both
        // sides lost a row, and the two survivors sit 970 ms apart with equal
        // key, model and route. Their ids prove them different requests.
        let mut c = Rows::default();
        let mut g = Rows::default();
        id_paired(&mut c, &mut g, 1, 20);
        c.push(500_000, 1, Some((10, 5)), "call-lost-on-gateway");
        g.push(500_970, 1, Some((10, 7)), "call-no-client-line");
        let m = match_rows(&c, &g, Params::default());
        assert!(m.id_space[0].comparable());
        assert_eq!(m.client_pass[20], Pass::Unmatched);
        assert_eq!(m.gateway_pass[20], Pass::Unmatched);
        // The same two rows with no id on the client pair by time.
        c.ids[20].0 = String::new();
        let m = match_rows(&c, &g, Params::default());
        assert_eq!((m.client_pass[20], m.client_partner[20]), (Pass::Loose, 20));
    }

    #[test]
    fn ids_the_client_never_sees_still_pair_by_time() {
        // The client logs its own ids, the gateway its own: none pair by id,
        // so the ids say nothing and every row pairs by time.
        let mut c = Rows::default();
        let mut g = Rows::default();
        for k in 0..30 {
            c.push(k * 10_000, 1, Some((10, 5)), &format!("app-{k}"));
            g.push(k * 10_000 + 400, 1, Some((10, 5)), &format!("gw-{k}"));
        }
        let m = match_rows(&c, &g, Params::default());
        assert!(!m.id_space[0].comparable());
        assert!(m.client_pass.iter().all(|p| *p == Pass::Strict));
    }

    #[test]
    fn a_key_with_few_ids_borrows_the_verdict_of_all_keys() {
        // Key 2 has one row a side, too few to judge alone; key 1 shows the
        // client's ids are the gateway's, so key 2's differing ids veto too.
        let mut c = Rows::default();
        let mut g = Rows::default();
        id_paired(&mut c, &mut g, 1, 20);
        c.push(900_000, 2, Some((10, 5)), "call-a");
        g.push(900_500, 2, Some((10, 5)), "call-b");
        let m = match_rows(&c, &g, Params::default());
        assert_eq!(m.client_pass[20], Pass::Unmatched);
        // A key whose own rows show unrelated ids keeps pairing by time even
        // though other keys' ids are comparable.
        for k in 0..10 {
            c.push(1_000_000 + k * 10_000, 3, Some((4, 4)), &format!("app-{k}"));
            g.push(
                1_000_000 + k * 10_000 + 100,
                3,
                Some((4, 4)),
                &format!("gw-{k}"),
            );
        }
        let m = match_rows(&c, &g, Params::default());
        assert!(!m.ids_comparable(3, 0));
        assert!((21..31).all(|i| m.client_pass[i] == Pass::Strict));
    }

    #[test]
    fn a_response_id_in_the_second_field_is_learned_on_its_own() {
        // The client's first id is its own, the second is the provider's
        // response id the gateway keeps: only the second field vetoes.
        let mut c = Rows::default();
        let mut g = Rows::default();
        for k in 0..20i64 {
            c.push(k * 10_000, 1, Some((10, 5)), &format!("app-{k}"));
            c.ids[usize::try_from(k).unwrap()].1 = format!("chatcmpl-{k}");
            g.push(k * 10_000 + 300, 1, Some((10, 5)), &format!("chatcmpl-{k}"));
        }
        c.push(500_000, 1, Some((10, 5)), "app-x");
        c.ids[20].1 = "chatcmpl-x".into();
        g.push(500_500, 1, Some((10, 5)), "chatcmpl-y");
        c.push(600_000, 1, Some((10, 5)), "app-y");
        g.push(600_500, 1, Some((10, 5)), "chatcmpl-z");
        let m = match_rows(&c, &g, Params::default());
        assert!(!m.ids_comparable(1, 0) && m.ids_comparable(1, 1));
        assert_eq!(m.client_pass[20], Pass::Unmatched, "response ids differ");
        assert_eq!(m.client_pass[21], Pass::Strict, "no response id logged");
    }

    proptest! {
        #[test]
        fn no_time_pair_joins_rows_with_conflicting_comparable_ids(
            rows in prop::collection::vec((0i64..40, 0u32..3, 0u8..4, 0u8..3, 0u8..3), 1..80),
            extra in prop::collection::vec((0i64..40, 0u32..3, 0u8..4, 0u8..3), 0..40),
        ) {
            // Rows on both sides (some ids shared, some lost on one side,
            // some with no id), crowded into a few seconds on three keys.
            let mut c = Rows::default();
            let mut g = Rows::default();
            for (n, &(t, key, toks, cid, gid)) in rows.iter().enumerate() {
                let id = format!("r{n}");
                let cid = match cid { 0 => id.clone(), 1 => String::new(), _ => format!("c{n}") };
                let gid = match gid { 0 => id.clone(), 1 => String::new(), _ => format!("g{n}") };
                c.push(t * 100, key, Some((u32::from(toks), 1)), &cid);
                g.push(t * 100 + 50, key, Some((u32::from(toks % 2), 1)), &gid);
            }
            for (n, &(t, key, toks, kind)) in extra.iter().enumerate() {
                let id = if kind == 0 { String::new() } else { format!("x{n}") };
                if kind < 2 {
                    c.push(t * 100 + 7, key, Some((u32::from(toks), 1)), &id);
                } else {
                    g.push(t * 100 + 7, key, Some((u32::from(toks), 1)), &id);
                }
            }
            let m = match_rows(&c, &g, Params::default());
            for (i, &p) in m.client_partner.iter().enumerate() {
                if p == NONE || m.client_pass[i] == Pass::Id {
                    continue;
                }
                let (a, b) = c.ids(i);
                prop_assert!(
                    !m.ids_conflict(c.key[i], (a, b), g.ids(at(p)).0),
                    "client {} ({:?}) paired with gateway {} ({:?})", i, (a, b), p, g.ids(at(p)).0
                );
            }
        }
    }

    #[test]
    fn client_double_logging_with_no_gateway_row_keeps_one() {
        let mut c = Rows::default();
        let g = Rows::default();
        c.push(1000, 1, None, "dup");
        c.push(1000, 1, None, "dup");
        let m = match_rows(&c, &g, Params::default());
        let mut passes = m.client_pass.clone();
        passes.sort();
        assert_eq!(passes, vec![Pass::Unmatched, Pass::Duplicate]);
    }
}
