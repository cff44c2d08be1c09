//! The engine's phases on their own, single-threaded, on 100,000 generated
//! rows a side (`cargo bench -p tally-reconcile`): parsing each input format
//! (bytes per second) and matching + classifying + pricing (rows per second).
//! `bench/run.sh` times the whole command against DuckDB; this is the tight
//! loop for working on one phase.
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark on generated data: a failure is a broken bench"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_reconcile::models::AliasTable;
use tally_reconcile::parse::client::{ClientFormat, read_client};
use tally_reconcile::parse::mapping::{Profile, read_mapped};
use tally_reconcile::report::{EngineSettings, reconcile};
use tally_reconcile::synth::{Spec, dataset};
use tally_reconcile::{Side, SideKind};

const ROWS: u64 = 100_000;

fn engine(c: &mut Criterion) {
    let d = dataset(&Spec {
        rows: ROWS,
        seed: 7,
        ..Spec::default()
    })
    .unwrap();
    let litellm = Profile::builtins()
        .unwrap()
        .into_iter()
        .find(|p| p.name == "litellm")
        .unwrap();

    let mut g = c.benchmark_group("parse");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(d.client_csv.len() as u64));
    g.bench_function("client_csv", |b| {
        b.iter(|| {
            let mut side = Side::new(SideKind::Client);
            read_client(
                black_box(d.client_csv.as_bytes()),
                "client.csv",
                Some(ClientFormat::Csv),
                &mut side,
            )
            .unwrap();
            side
        });
    });
    g.throughput(Throughput::Bytes(d.gateway_csv.len() as u64));
    g.bench_function("litellm_csv", |b| {
        b.iter(|| {
            let mut side = Side::new(SideKind::Gateway);
            read_mapped(
                black_box(d.gateway_csv.as_bytes()),
                "gateway.csv",
                &litellm,
                &mut side,
            )
            .unwrap();
            side
        });
    });
    g.finish();

    let mut g = c.benchmark_group("reconcile");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ROWS));
    let aliases = AliasTable::default();
    g.bench_function("match_classify_price", |b| {
        b.iter(|| {
            let rec = reconcile(
                &d.client,
                &d.gateway,
                &d.keys,
                &aliases,
                &d.prices,
                EngineSettings::default(),
            );
            black_box(rec.client_class.len())
        });
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
