//! `tally generate`: write a seeded dataset with ground truth.

use std::fs::File;
use std::io::{BufWriter, Write};

use tally_reconcile::synth;

use crate::app::error::{AppResult as Result, Context};

/// What to generate (the CLI maps `tally generate`'s flags into it).
#[derive(Debug, Clone)]
pub struct Request {
    /// Client rows.
    pub rows: u64,
    /// Seed: the same seed gives the same bytes.
    pub seed: u64,
    /// Number of keys.
    pub keys: u32,
    /// Output folder.
    pub out: std::path::PathBuf,
    /// Write the client log as client.jsonl (OpenAI SDK usage objects).
    pub client_jsonl: bool,
    /// Percent the gateway bills over the catalog.
    pub gateway_markup_pct: u32,
    /// The generated day's start, UTC ms (`None`: 2026-11-20).
    pub start_ms: Option<i64>,
}

/// Writes client.csv (or client.jsonl), gateway.csv, keys.toml,
/// prices.toml and truth.csv.
pub fn run(args: &Request) -> Result<synth::Truth> {
    std::fs::create_dir_all(&args.out).or_io(|| format!("creating {}", args.out.display()))?;
    let open = |name: &str| -> Result<BufWriter<File>> {
        let p = args.out.join(name);
        Ok(BufWriter::with_capacity(
            1 << 20,
            File::create(&p).or_io(|| format!("creating {}", p.display()))?,
        ))
    };
    let spec = synth::Spec {
        rows: args.rows,
        seed: args.seed,
        keys: args.keys.max(1),
        client_jsonl: args.client_jsonl,
        gateway_markup_pct: args.gateway_markup_pct,
        start_ms: args.start_ms.unwrap_or(synth::Spec::default().start_ms),
        ..synth::Spec::default()
    };
    let (mut c, mut g, mut t) = (
        open(if args.client_jsonl {
            "client.jsonl"
        } else {
            "client.csv"
        })?,
        open("gateway.csv")?,
        open("truth.csv")?,
    );
    let truth = synth::generate(&spec, &mut c, &mut g, &mut t).or_io(|| "writing the dataset")?;
    for w in [&mut c, &mut g, &mut t] {
        w.flush().or_io(|| "writing the dataset")?;
    }
    let mut k = open("keys.toml")?;
    synth::write_keys(&spec, &mut k).or_io(|| "writing keys.toml")?;
    k.flush().or_io(|| "writing keys.toml")?;
    let mut p = open("prices.toml")?;
    synth::write_prices(&mut p).or_io(|| "writing prices.toml")?;
    p.flush().or_io(|| "writing prices.toml")?;
    Ok(truth)
}
