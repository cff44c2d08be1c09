//! Invariants of the whole engine on generated data with ground truth.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::collections::HashMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use tally_reconcile::matching::{NONE, Pass};
use tally_reconcile::models::AliasTable;
use tally_reconcile::prices::Usd;
use tally_reconcile::report::{Class, EngineSettings, Reconciliation, reconcile};
use tally_reconcile::{Side, synth};

fn data(rows: u64, seed: u64, keys: u32) -> synth::Dataset {
    synth::dataset(&synth::Spec {
        rows,
        seed,
        keys,
        ..synth::Spec::default()
    })
    .unwrap()
}

fn sides(client: &str, gateway: &str) -> (Side, Side) {
    synth::parse_generated(client, gateway).unwrap()
}

fn run<'a>(c: &'a Side, g: &'a Side, d: &synth::Dataset) -> Reconciliation<'a> {
    reconcile(
        c,
        g,
        &d.keys,
        &AliasTable::default(),
        &d.prices,
        EngineSettings::default(),
    )
}

/// Shuffles the data lines of a CSV (header kept) with a seeded permutation.
fn shuffle(csv: &str, seed: u64) -> String {
    let mut lines: Vec<&str> = csv.lines().collect();
    let header = lines.remove(0);
    let mut x = seed | 1;
    for i in (1..lines.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = usize::try_from(x % u64::try_from(i + 1).unwrap()).unwrap();
        lines.swap(i, j);
    }
    let mut out = String::from(header);
    out.push('\n');
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn assert_one_class_each(rec: &Reconciliation<'_>) {
    let m = &rec.matching;
    for (i, &p) in m.client_partner.iter().enumerate() {
        let class = rec.client_class[i];
        if p == NONE {
            assert!(
                matches!(class, Class::MissingUsage | Class::Duplicate),
                "{class:?}"
            );
        } else {
            let j = usize::try_from(p).unwrap();
            assert_eq!(
                m.gateway_partner[j],
                u32::try_from(i).unwrap(),
                "pairs are symmetric"
            );
            assert!(class.is_pair());
            assert_eq!(
                rec.gateway_class[j], class,
                "both rows of a pair share its class"
            );
        }
    }
    for (j, &p) in m.gateway_partner.iter().enumerate() {
        if p == NONE {
            assert!(matches!(
                rec.gateway_class[j],
                Class::Unattributed | Class::Duplicate
            ));
        }
        assert_eq!(
            m.gateway_pass[j] == Pass::Duplicate,
            rec.gateway_class[j] == Class::Duplicate
        );
    }
}

/// A pair described by content, not position.
fn pair_contents(rec: &Reconciliation<'_>) -> Vec<String> {
    let mut v: Vec<String> = rec
        .matches()
        .map(|m| {
            format!(
                "{:?}|{}|{}|{}|{}|{:?}|{:?}|{:?}",
                m.pair.class,
                m.client_ts,
                m.gateway_ts,
                m.pair.key,
                m.pair.gateway_id,
                m.client_tokens,
                m.gateway_tokens,
                m.pair.computed_cost
            )
        })
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn every_row_one_class_and_order_does_not_matter(seed in 1u64..10_000, keys in 1u32..40, perm in any::<u64>()) {
        let d = data(1500, seed, keys);
        let (c1, g1) = (&d.client, &d.gateway);
        let a = run(c1, g1, &d);
        assert_one_class_each(&a);
        let (c2, g2) = sides(&shuffle(&d.client_csv, perm), &shuffle(&d.gateway_csv, perm.rotate_left(7)));
        let b = run(&c2, &g2, &d);
        assert_one_class_each(&b);
        let (sa, sb) = (a.summary(0), b.summary(0));
        prop_assert_eq!(serde_json::to_value(&sa).unwrap(), serde_json::to_value(&sb).unwrap());
        prop_assert_eq!(pair_contents(&a), pair_contents(&b));
    }

    #[test]
    fn totals_equal_the_sum_of_rows(seed in 1u64..10_000) {
        let d = data(800, seed, 20);
        let (c, g) = (&d.client, &d.gateway);
        let rec = run(c, g, &d);
        let s = rec.summary(0);
        let mut computed = Usd::ZERO;
        let mut reported = Decimal::ZERO;
        for j in 0..g.rows.len() {
            computed = computed.saturating_add(rec.gateway_cost(j).unwrap());
            reported += g.rows[j].reported_cost().unwrap_or_default();
        }
        prop_assert_eq!(s.totals.billed_computed, computed.to_decimal());
        prop_assert_eq!(s.totals.billed_reported, reported.normalize());
        let by_owner: Decimal = s.costs_by_owner.iter().map(|o| o.computed_cost).sum();
        prop_assert_eq!(by_owner, s.totals.billed_computed);
        let rows: u64 = s.costs_by_owner.iter().map(|o| o.billed_rows).sum();
        prop_assert_eq!(rows, u64::try_from(g.rows.len()).unwrap());
        let classes: u64 = s.classes.iter().map(|c| c.client_rows).sum();
        prop_assert_eq!(classes, u64::try_from(c.rows.len()).unwrap());
        prop_assert_eq!(s.client.read, s.client.accepted + s.client.duplicates + s.client.rejected);
        prop_assert_eq!(s.gateway.read, s.gateway.accepted + s.gateway.duplicates + s.gateway.rejected);
    }
}

#[test]
fn pairs_agree_with_ground_truth() {
    // Few keys make dense blocks: the hard case for time matching.
    let d = data(30_000, 42, 8);
    let (c, g) = (&d.client, &d.gateway);
    let rec = run(c, g, &d);
    let truth: HashMap<u32, u32> = d
        .truth_csv
        .lines()
        .skip(1)
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let mut right = 0usize;
    for (i, &p) in rec.matching.client_partner.iter().enumerate() {
        if p != NONE {
            let j = usize::try_from(p).unwrap();
            if truth.get(&c.rows[i].line) == Some(&g.rows[j].line) {
                right += 1;
            }
        }
    }
    let ratio = right as f64 / truth.len() as f64;
    assert!(
        ratio >= 0.999,
        "{right} of {} true pairs right ({ratio})",
        truth.len()
    );
}
