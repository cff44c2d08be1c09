//! Names a person typed, checked against the names Tally knows: a quota
//! scoped to a team no owner has would never fire, so it is refused with
//! the closest known names instead of being accepted silently.

/// Edit distance (insertions, deletions, substitutions), by characters,
/// case-insensitively.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        if let Some(c) = cur.first_mut() {
            *c = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            if let Some(c) = cur.get_mut(j + 1) {
                *c = sub.min(del).min(ins);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(b.len()).copied().unwrap_or(0)
}

/// Up to three known names closest to `want` (within a third of its
/// length, at least two edits), closest first, then by name.
pub fn closest<'a>(want: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let limit = (want.chars().count() / 3).max(2);
    let mut near: Vec<(usize, &str)> = known
        .into_iter()
        .filter(|k| !k.is_empty())
        .map(|k| (distance(want, k), k))
        .filter(|(d, _)| *d <= limit)
        .collect();
    near.sort_unstable();
    near.dedup_by(|a, b| a.1 == b.1);
    near.into_iter().take(3).map(|(_, k)| k).collect()
}

/// "`suport` is no team Tally knows (did you mean `support`?)", or with
/// no close name, how many there are.
pub fn unknown<'a>(what: &str, want: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let near = closest(want, known.iter().copied());
    let hint = if near.is_empty() {
        let mut all: Vec<&str> = known.into_iter().filter(|k| !k.is_empty()).collect();
        all.sort_unstable();
        all.dedup();
        match all.len() {
            0 => "none is registered yet".to_owned(),
            n if n <= 8 => format!("known: {}", all.join(", ")),
            n => format!("{n} are known; `tally keys import` and `tally owners import` add more"),
        }
    } else {
        format!(
            "did you mean {}?",
            near.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    };
    format!("`{want}` is no {what} Tally knows ({hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_name_and_a_stranger_finds_none() {
        let teams = ["support", "search", "billing"];
        assert_eq!(closest("suport", teams), ["support"]);
        assert_eq!(closest("SUPPORT", teams), ["support"]);
        assert_eq!(closest("searhc", teams), ["search"]);
        assert!(closest("marketing", teams).is_empty());
        let m = unknown("team", "suport", teams);
        assert!(m.contains("did you mean `support`?"), "{m}");
        let m = unknown("team", "marketing", teams);
        assert!(m.contains("known: billing, search, support"), "{m}");
        let m = unknown("team", "x", []);
        assert!(m.contains("none is registered yet"), "{m}");
    }
}
