//! Row identity across exports, for idempotent ingestion.
//!
//! Exports overlap and get re-downloaded, so the store needs to know whether
//! a row it is offered is one it already holds. A row's dedup key is its
//! request id **and its UTC day** when it has one (`id:2026-11-20:abc`: ids
//! are unique per day, not forever; an app whose ids repeat across days
//! once lost those rows as "duplicates", issue 19), otherwise a hash of its
//! canonical content; either way followed by the **occurrence ordinal** of
//! that id or hash within the file (`matching.md`). The ordinal is what keeps two genuinely
//! identical requests (a retry billed twice under one id, two identical
//! calls in the same millisecond) as two rows, so the engine can still
//! report the duplicate, while offering the same export again adds nothing.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::record::{Side, TokenKind};

/// The dedup key of every accepted row of `side`, in row order.
///
/// `side` should hold one file (one batch): ordinals count within it.
pub fn dedup_keys(side: &Side) -> Vec<String> {
    Ordinals::default().keys(side)
}

/// Occurrence counts of a file read in parts: the keys of each part, in
/// order, are those [`dedup_keys`] gives the whole file.
///
/// Each id or content hash is counted under 64 bits of its SHA-256, not
/// its text: a 200 MB push's counts then take about 17 bytes a row, which
/// is what keeps its memory under 100 MB. Two different bases sharing 64
/// bits in one file (odds about 3 in 100 million at a million rows) would
/// only give the second an ordinal of #1 instead of #0: still the same key
/// every time that file is ingested, so ingest stays idempotent.
#[derive(Debug, Default)]
pub struct Ordinals {
    seen: HashMap<u64, u32>,
}

impl Ordinals {
    /// The keys of the next part's rows, in row order.
    pub fn keys(&mut self, side: &Side) -> Vec<String> {
        self.seen.reserve(side.rows.len());
        let mut out = Vec::with_capacity(side.rows.len());
        for r in &side.rows {
            let (id1, id2) = side.ids.get(r.ids);
            let id = if id1.is_empty() { id2 } else { id1 };
            let base = if id.is_empty() {
                content_hash(side, r)
            } else {
                let day = crate::time::format_ms(r.ts_ms);
                format!("id:{}:{id}", day.get(..10).unwrap_or(&day))
            };
            let digest = Sha256::digest(base.as_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
            let n = self.seen.entry(u64::from_le_bytes(b)).or_insert(0);
            out.push(format!("{base}#{n}"));
            *n += 1;
        }
        out
    }
}

/// `h:` and 32 hex digits (128 bits of SHA-256) of the row's canonical
/// fields: time, key, models, route and labels, token counts, reported
/// cost and flags. The line number is not part of it: the same row sits on
/// another line in an overlapping export.
fn content_hash(side: &Side, r: &crate::record::Row) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        // Length-prefixed, so no two field lists hash the same bytes.
        h.update(u64::try_from(b.len()).unwrap_or(u64::MAX).to_le_bytes());
        h.update(b);
    };
    field(&r.ts_ms.to_le_bytes());
    field(side.strings.get(r.key).as_bytes());
    field(side.strings.get(r.model).as_bytes());
    field(crate::record::route_identity(side.strings.get(r.route)).as_bytes());
    for k in TokenKind::ALL {
        field(&r.tokens.get(k).map_or(u64::MAX, u64::from).to_le_bytes());
    }
    let cost = r.reported_cost().map(|c| c.normalize().to_string());
    field(cost.as_deref().unwrap_or("-").as_bytes());
    field(&[r.flags]);
    let digest = h.finalize();
    format!(
        "h:{}",
        crate::keys::hex(digest.get(..16).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SideKind;

    fn parse(csv: &str) -> Side {
        let mut s = Side::new(SideKind::Client);
        crate::parse::client::read_client(csv.as_bytes(), "c.csv", None, &mut s).unwrap();
        s
    }

    const HEAD: &str = "ts,key,model,route,request_id,input_tokens,output_tokens\n";

    #[test]
    fn ids_count_occurrences_and_rows_without_ids_hash_their_content() {
        let s = parse(&format!(
            "{HEAD}2026-11-20T10:00:00Z,a,m,chat,r1,1,1\n\
             2026-11-20T10:00:01Z,a,m,chat,r1,1,1\n\
             2026-11-20T10:00:02Z,a,m,chat,,5,5\n\
             2026-11-20T10:00:02Z,a,m,chat,,5,5\n\
             2026-11-20T10:00:02Z,a,m,chat,,5,6\n"
        ));
        let k = dedup_keys(&s);
        assert_eq!(k[0], "id:2026-11-20:r1#0");
        assert_eq!(k[1], "id:2026-11-20:r1#1");
        // Two identical rows: same hash, ordinals 0 and 1, so both are kept.
        assert!(k[2].starts_with("h:") && k[2].ends_with("#0"), "{}", k[2]);
        assert_eq!(k[3], k[2].replace("#0", "#1"));
        // One token differs: another hash.
        assert_ne!(k[4].split('#').next(), k[2].split('#').next());
    }

    #[test]
    fn an_id_used_again_on_another_day_is_another_row() {
        let k = dedup_keys(&parse(&format!(
            "{HEAD}2026-11-20T23:59:59Z,a,m,chat,req-1,1,1\n\
             2026-11-21T00:00:01Z,a,m,chat,req-1,1,1\n"
        )));
        assert_eq!(k, ["id:2026-11-20:req-1#0", "id:2026-11-21:req-1#0"]);
    }

    #[test]
    fn an_overlapping_export_gives_the_shared_rows_the_same_keys() {
        let rows = [
            "2026-11-20T10:00:00Z,a,m,chat,r1,1,1\n",
            "2026-11-20T10:00:01Z,a,m,chat,,2,2\n",
            "2026-11-20T10:00:02Z,b,m,chat,r3,3,3\n",
            "2026-11-20T10:00:03Z,b,m,chat,,4,4\n",
        ];
        let first = dedup_keys(&parse(&format!("{HEAD}{}", rows[..3].concat())));
        let second = dedup_keys(&parse(&format!("{HEAD}{}", rows[1..].concat())));
        assert_eq!(first[1..], second[..2]);
        assert!(!first.contains(&second[2]));
    }

    #[test]
    fn a_file_read_in_parts_gets_the_keys_of_the_whole() {
        let lines: Vec<String> = (0..40)
            .map(|i| format!("2026-11-20T10:00:{:02}Z,a,m,chat,r{},1,1\n", i % 7, i % 5))
            .collect();
        let whole = dedup_keys(&parse(&format!("{HEAD}{}", lines.concat())));
        let mut ordinals = Ordinals::default();
        let mut parts = Vec::new();
        for chunk in lines.chunks(9) {
            parts.extend(ordinals.keys(&parse(&format!("{HEAD}{}", chunk.concat()))));
        }
        assert_eq!(parts, whole);
        assert!(whole.contains(&"id:2026-11-20:r0#7".to_owned()));
    }
}
