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

/// A client log's text read as `format`.
fn read_as(text: &str, format: ClientFormat) -> Side {
    let mut side = Side::new(SideKind::Client);
    read_client(
        black_box(text.as_bytes()),
        "client",
        Some(format),
        &mut side,
    )
    .unwrap();
    side
}

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

    // The same rows as JSON Lines, each with the OpenAI SDK's usage object.
    let client_jsonl = {
        let (mut cl, mut gw, mut tr) = (Vec::new(), Vec::new(), Vec::new());
        tally_reconcile::synth::generate(
            &Spec {
                rows: ROWS,
                seed: 7,
                client_jsonl: true,
                ..Spec::default()
            },
            &mut cl,
            &mut gw,
            &mut tr,
        )
        .unwrap();
        String::from_utf8(cl).unwrap()
    };

    // Per row, so the client formats compare directly.
    let mut g = c.benchmark_group("client_rows");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ROWS));
    g.bench_function("csv", |b| {
        b.iter(|| read_as(&d.client_csv, ClientFormat::Csv));
    });
    g.bench_function("jsonl", |b| {
        b.iter(|| read_as(&client_jsonl, ClientFormat::Jsonl));
    });
    // The floor under any serde_json reader: tokenizing every line and
    // keeping nothing.
    g.bench_function("jsonl_tokenize_only", |b| {
        b.iter(|| {
            for line in black_box(client_jsonl.as_str()).lines() {
                let _: serde::de::IgnoredAny = serde_json::from_str(line).unwrap();
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(d.client_csv.len() as u64));
    g.bench_function("client_csv", |b| {
        b.iter(|| read_as(&d.client_csv, ClientFormat::Csv));
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
