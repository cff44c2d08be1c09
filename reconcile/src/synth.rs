//! Seeded synthetic datasets with ground truth, for tests and benchmarks.
//!
//! Mirrors the shape in `shared/reference/matching.md`: a day of traffic,
//! keys drawn from a Zipf law, gateway time = client time + ~N(300 ms,
//! 200 ms), 1 % of client rows missing on the gateway, 0.5 % extra gateway
//! rows, 0.2 % token mismatches, response ids logged on half the client
//! rows. The client log is Tally CSV, the gateway export LiteLLM CSV; the
//! truth file lists `client_line,gateway_line` of every true pair.

use std::io::{self, Write};

use crate::keys::sha256_hex;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Client rows.
    pub rows: u64,
    /// RNG seed.
    pub seed: u64,
    /// Number of keys.
    pub keys: u32,
    /// Start of the day, UTC ms.
    pub start_ms: i64,
    /// Length of the period, ms.
    pub span_ms: i64,
    /// Client log as JSON Lines (OpenAI SDK `usage` objects) instead of CSV.
    pub client_jsonl: bool,
    /// The gateway bills this many percent over the catalog, so every
    /// priced pair disagrees on cost: the day a price changed unnoticed.
    pub gateway_markup_pct: u32,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            rows: 10_000,
            seed: 1,
            keys: 200,
            // 2026-11-20T00:00:00Z
            start_ms: 1_795_132_800_000,
            span_ms: 86_400_000,
            client_jsonl: false,
            gateway_markup_pct: 0,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    /// Client rows written.
    pub client_rows: u64,
    /// Gateway rows written.
    pub gateway_rows: u64,
    /// True pairs.
    pub pairs: u64,
    /// Client rows with no gateway row.
    pub missing: u64,
    /// Gateway rows with no client row.
    pub extra: u64,
    /// Pairs whose tokens differ.
    pub token_mismatches: u64,
}

/// splitmix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Uniform in [0, 1) with 53 bits, as an integer fraction of 2⁵³.
    fn unit_u53(&mut self) -> u64 {
        self.next() >> 11
    }

    fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }

    /// Approximately normal (sum of four uniforms), mean 0, sd ≈ `sd`.
    fn normal_ms(&mut self, sd: i64) -> i64 {
        let s: i64 = (0..4)
            .map(|_| i64::try_from(self.below(1000)).unwrap_or(0))
            .sum();
        // Sum of 4 U(0,1000): mean 2000, sd ≈ 577.
        (s - 2000) * sd / 577
    }
}

/// Models the generator uses, with prices per million (input, cached, output).
pub const MODELS: [(&str, &str, &str, &str); 6] = [
    ("gpt-4o", "2.5", "1.25", "10"),
    ("gpt-4o-mini", "0.15", "0.075", "0.6"),
    ("claude-sonnet-4", "3", "0.3", "15"),
    ("gpt-4.1", "2", "0.5", "8"),
    ("o3-mini", "1.1", "0.55", "4.4"),
    ("text-embedding-3-small", "0.02", "0.02", "0"),
];

const TEAMS: [&str; 5] = ["search", "support", "growth", "platform", "research"];

fn secret(seed: u64, k: u32) -> String {
    format!(
        "sk-synth-{seed:08x}-{k:06}-{:016x}",
        u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
    )
}

/// Writes the key registry for a spec.
pub fn write_keys(spec: &Spec, w: &mut impl Write) -> io::Result<()> {
    for k in 0..spec.keys {
        let team = TEAMS
            .get(usize::try_from(k).unwrap_or(0) % TEAMS.len())
            .copied()
            .unwrap_or("t");
        writeln!(
            w,
            "[[key]]\nid = \"key-{k:04}\"\nsha256 = [\"{}\"]\nteam = \"{team}\"\nservice = \"svc-{k:04}\"\nenv = \"prod\"\ncontact = \"{team}-oncall@example.com\"\n",
            sha256_hex(&secret(spec.seed, k))
        )?;
    }
    Ok(())
}

/// Writes a price catalog covering [`MODELS`].
pub fn write_prices(w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "currency = \"USD\"\n")?;
    for (m, i, c, o) in MODELS {
        writeln!(
            w,
            "[[price]]\nmodel = \"{m}\"\neffective_from = \"2026-01-01\"\ninput = \"{i}\"\ncached_input = \"{c}\"\noutput = \"{o}\"\n"
        )?;
    }
    Ok(())
}

/// Formats UTC ms as `2026-11-20T10:00:00.123Z`, or LiteLLM's
/// `2026-11-20 10:00:00.123` (space, no zone) when `iso` is false.
fn fmt_ts(ms: i64, iso: bool, out: &mut Vec<u8>) {
    let mut s = String::with_capacity(24);
    crate::time::write_ms(ms, &mut s);
    if !iso {
        s.pop();
        s = s.replacen('T', " ", 1);
    }
    out.extend_from_slice(s.as_bytes());
}

struct Zipf {
    cdf: Vec<u64>,
}

impl Zipf {
    fn new(n: u32) -> Self {
        let mut acc = 0u128;
        let weights: Vec<u128> = (1..=u128::from(n.max(1)))
            .map(|k| (1u128 << 60) / (k * 100 + k * k))
            .collect();
        let total: u128 = weights.iter().sum();
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w;
                u64::try_from(acc * (1u128 << 53) / total.max(1)).unwrap_or(u64::MAX)
            })
            .collect();
        Self { cdf }
    }

    fn sample(&self, r: &mut Rng) -> u32 {
        let u = r.unit_u53();
        u32::try_from(self.cdf.partition_point(|&c| c <= u)).unwrap_or(0)
    }
}

/// Header of the generated client log.
pub const CLIENT_HEADER: &str = "ts,key,model,route,request_id,response_id,team,service,env,input_tokens,cached_input_tokens,output_tokens";
/// Header of the generated gateway export (LiteLLM spend logs).
pub const GATEWAY_HEADER: &str = "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status";

/// Generates the client log, the gateway export and the truth file.
pub fn generate(
    spec: &Spec,
    client: &mut impl Write,
    gateway: &mut impl Write,
    truth: &mut impl Write,
) -> io::Result<Truth> {
    let mut r = Rng(spec.seed ^ 0x5eed);
    let zipf = Zipf::new(spec.keys);
    let hashes: Vec<String> = (0..spec.keys)
        .map(|k| sha256_hex(&secret(spec.seed, k)))
        .collect();
    if !spec.client_jsonl {
        writeln!(client, "{CLIENT_HEADER}")?;
    }
    writeln!(gateway, "{GATEWAY_HEADER}")?;
    writeln!(truth, "client_line,gateway_line")?;
    let mut out = Truth::default();
    let mut cbuf = Vec::with_capacity(256);
    let mut gbuf = Vec::with_capacity(256);
    let step = spec.span_ms / i64::try_from(spec.rows.max(1)).unwrap_or(1);
    let mut t = spec.start_ms;
    let mut gline = 1u64;
    // Days other than the default one carry their day in their ids, so a
    // month generated day by day never reuses one (the default day's bytes
    // stay as they were).
    let day = if spec.start_ms == Spec::default().start_ms {
        String::new()
    } else {
        format!("d{}", spec.start_ms.div_euclid(crate::time::DAY_MS))
    };
    for n in 0..spec.rows {
        // Poisson-ish arrivals: exponential-like gaps around the mean step.
        t += i64::try_from(r.below(u64::try_from(step.max(1) * 2).unwrap_or(2))).unwrap_or(0);
        let k = zipf.sample(&mut r);
        let ku = usize::try_from(k).unwrap_or(0);
        let (model, _, _, _) = MODELS
            .get(usize::try_from(r.below(6)).unwrap_or(0))
            .copied()
            .unwrap_or(MODELS[0]);
        let route = if model.starts_with("text-embedding") {
            "/v1/embeddings"
        } else if r.chance(300_000) {
            "/v1/responses"
        } else {
            "/v1/chat/completions"
        };
        let input = 50 + r.below(4000);
        let cached = if r.chance(250_000) { input / 2 } else { 0 };
        let output = if route == "/v1/embeddings" {
            0
        } else {
            1 + r.below(800)
        };
        let id = format!("chatcmpl-{day}{:x}{:08x}", spec.seed, n);
        let log_id = r.chance(500_000);
        let team = TEAMS.get(ku % TEAMS.len()).copied().unwrap_or("t");
        cbuf.clear();
        let row = ClientRow {
            t,
            k,
            model,
            route,
            response_id: if log_id { id.as_str() } else { "" },
            team,
            tokens: [input, cached, output],
        };
        if spec.client_jsonl {
            row.jsonl(&mut cbuf);
        } else {
            row.csv(&mut cbuf);
        }
        client.write_all(&cbuf)?;
        out.client_rows += 1;
        // A CSV's first row is its line 2, a JSON Lines file's line 1.
        let cline = n + if spec.client_jsonl { 1 } else { 2 };
        if r.chance(10_000) {
            out.missing += 1;
        } else {
            let (gi, go) = if r.chance(2_000) {
                out.token_mismatches += 1;
                (input + 1 + r.below(50), output + r.below(20))
            } else {
                (input, output)
            };
            let gt = t + 300 + r.normal_ms(200);
            write_gateway_row(
                &mut gbuf,
                spec.gateway_markup_pct,
                &id,
                hashes.get(ku).map_or("", String::as_str),
                model,
                route,
                gi,
                cached,
                go,
                gt,
            );
            gateway.write_all(&gbuf)?;
            gline += 1;
            out.gateway_rows += 1;
            out.pairs += 1;
            writeln!(truth, "{cline},{gline}")?;
        }
        if r.chance(5_000) {
            // Extra gateway traffic on the same hot keys: no client row.
            let xk = usize::try_from(zipf.sample(&mut r)).unwrap_or(0);
            let xt = t + i64::try_from(r.below(5000)).unwrap_or(0);
            let xid = format!("chatcmpl-x{day}{:x}{:08x}", spec.seed, n);
            write_gateway_row(
                &mut gbuf,
                spec.gateway_markup_pct,
                &xid,
                hashes.get(xk).map_or("", String::as_str),
                model,
                route,
                50 + r.below(4000),
                0,
                1 + r.below(800),
                xt,
            );
            gateway.write_all(&gbuf)?;
            gline += 1;
            out.gateway_rows += 1;
            out.extra += 1;
        }
    }
    Ok(out)
}

/// One generated client row.
struct ClientRow<'a> {
    t: i64,
    k: u32,
    model: &'a str,
    route: &'a str,
    response_id: &'a str,
    team: &'a str,
    /// Input (cached included), cached input, output.
    tokens: [u64; 3],
}

impl ClientRow<'_> {
    /// Tally's CSV columns ([`CLIENT_HEADER`]).
    fn csv(&self, buf: &mut Vec<u8>) {
        let [input, cached, output] = self.tokens;
        fmt_ts(self.t, true, buf);
        let _ = writeln!(
            buf,
            ",key-{:04},{},{},,{},{},svc-{:04},prod,{input},{cached},{output}",
            self.k, self.model, self.route, self.response_id, self.team, self.k
        );
    }

    /// A JSON Lines row as an app logs what the OpenAI SDK returned: the
    /// response's `usage` object as is (Chat Completions and embeddings:
    /// `prompt_tokens`…; Responses: `input_tokens`…), with attribution
    /// beside it.
    fn jsonl(&self, buf: &mut Vec<u8>) {
        let [input, cached, output] = self.tokens;
        buf.extend_from_slice(b"{\"ts\":\"");
        fmt_ts(self.t, true, buf);
        let _ = write!(
            buf,
            "\",\"key\":\"key-{:04}\",\"model\":\"{}\",\"route\":\"{}\",\"response_id\":{},\"team\":\"{}\",\"service\":\"svc-{:04}\",\"env\":\"prod\",\"stream\":false,\"usage\":",
            self.k,
            self.model,
            self.route,
            if self.response_id.is_empty() {
                "null".to_owned()
            } else {
                format!("\"{}\"", self.response_id)
            },
            self.team,
            self.k
        );
        let _ = if self.route == "/v1/responses" {
            writeln!(
                buf,
                "{{\"input_tokens\":{input},\"input_tokens_details\":{{\"cached_tokens\":{cached}}},\"output_tokens\":{output},\"output_tokens_details\":{{\"reasoning_tokens\":0}},\"total_tokens\":{}}}}}",
                input + output
            )
        } else if self.route == "/v1/embeddings" {
            writeln!(
                buf,
                "{{\"prompt_tokens\":{input},\"total_tokens\":{input}}}}}"
            )
        } else {
            writeln!(
                buf,
                "{{\"prompt_tokens\":{input},\"completion_tokens\":{output},\"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":{cached},\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}",
                input + output
            )
        };
    }
}

/// A generated dataset, in memory, with its files' text and parsed sides.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// client.csv.
    pub client_csv: String,
    /// gateway.csv (LiteLLM spend logs).
    pub gateway_csv: String,
    /// truth.csv.
    pub truth_csv: String,
    /// The client side, parsed.
    pub client: crate::Side,
    /// The gateway side, parsed.
    pub gateway: crate::Side,
    /// The key registry.
    pub keys: crate::keys::KeyRegistry,
    /// The price catalog.
    pub prices: crate::prices::PriceBook,
    /// What was generated.
    pub truth: Truth,
}

fn gen_err(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Read {
        file: "(generated)".to_owned(),
        detail: e.to_string(),
    }
}

/// Parses generated files as `tally reconcile` would (client CSV, LiteLLM).
pub fn parse_generated(
    client_csv: &str,
    gateway_csv: &str,
) -> Result<(crate::Side, crate::Side), crate::Error> {
    use crate::parse::{client::read_client, mapping};
    let mut client = crate::Side::new(crate::SideKind::Client);
    read_client(client_csv.as_bytes(), "client.csv", None, &mut client)?;
    let mut gateway = crate::Side::new(crate::SideKind::Gateway);
    let profiles = mapping::Profile::builtins()?;
    let litellm = mapping::choose(&profiles, gateway_csv.as_bytes(), "gateway.csv")?;
    mapping::read_mapped(gateway_csv.as_bytes(), "gateway.csv", litellm, &mut gateway)?;
    Ok((client, gateway))
}

/// Generates a dataset in memory and parses it (for tests and benchmarks).
pub fn dataset(spec: &Spec) -> Result<Dataset, crate::Error> {
    let (mut c, mut g, mut t, mut k, mut p) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let truth = generate(spec, &mut c, &mut g, &mut t).map_err(gen_err)?;
    write_keys(spec, &mut k).map_err(gen_err)?;
    write_prices(&mut p).map_err(gen_err)?;
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(gen_err);
    let (client_csv, gateway_csv, truth_csv) = (text(c)?, text(g)?, text(t)?);
    let (client, gateway) = parse_generated(&client_csv, &gateway_csv)?;
    Ok(Dataset {
        keys: crate::keys::KeyRegistry::from_toml(&text(k)?, "keys.toml")?,
        prices: crate::prices::PriceBook::from_toml(&text(p)?, "prices.toml")?,
        client_csv,
        gateway_csv,
        truth_csv,
        client,
        gateway,
        truth,
    })
}

#[expect(clippy::too_many_arguments, reason = "one flat CSV row")]
fn write_gateway_row(
    buf: &mut Vec<u8>,
    markup_pct: u32,
    id: &str,
    key_hash: &str,
    model: &str,
    route: &str,
    input: u64,
    cached: u64,
    output: u64,
    ts: i64,
) {
    buf.clear();
    let price = MODELS
        .iter()
        .find(|m| m.0 == model)
        .copied()
        .unwrap_or(MODELS[0]);
    let pi: rust_decimal::Decimal = price.1.parse().unwrap_or_default();
    let pc: rust_decimal::Decimal = price.2.parse().unwrap_or_default();
    let po: rust_decimal::Decimal = price.3.parse().unwrap_or_default();
    let spend = (rust_decimal::Decimal::from(input - cached) * pi
        + rust_decimal::Decimal::from(cached) * pc
        + rust_decimal::Decimal::from(output) * po)
        / rust_decimal::Decimal::from(1_000_000)
        * (rust_decimal::Decimal::ONE + rust_decimal::Decimal::new(i64::from(markup_pct), 2));
    let call = if route.contains("embed") {
        "aembedding"
    } else if route.contains("responses") {
        "aresponses"
    } else {
        "acompletion"
    };
    let _ = write!(
        buf,
        "{id},{call},{key_hash},{},{},{input},{output},",
        spend.normalize(),
        input + output
    );
    fmt_ts(ts, false, buf);
    buf.push(b',');
    fmt_ts(ts + 800, false, buf);
    let meta = if cached > 0 {
        format!(
            "\"{{\"\"usage_object\"\":{{\"\"prompt_tokens_details\"\":{{\"\"cached_tokens\"\":{cached}}}}}}}\""
        )
    } else {
        "{}".to_owned()
    };
    let _ = writeln!(buf, ",openai/{model},{model},{meta},False,success");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_truth_adds_up() {
        let spec = Spec {
            rows: 2000,
            ..Spec::default()
        };
        let run = || {
            let (mut c, mut g, mut t) = (Vec::new(), Vec::new(), Vec::new());
            let truth = generate(&spec, &mut c, &mut g, &mut t).unwrap();
            (c, g, t, truth)
        };
        let a = run();
        let b = run();
        assert_eq!(a, b);
        let truth = a.3;
        assert_eq!(truth.client_rows, truth.pairs + truth.missing);
        assert_eq!(truth.gateway_rows, truth.pairs + truth.extra);
        let lines = String::from_utf8(a.2).unwrap().lines().count() - 1;
        assert_eq!(u64::try_from(lines).unwrap(), truth.pairs);
    }

    #[test]
    fn timestamps_format_like_chrono() {
        for ms in [0i64, 1_763_596_800_123, 951_782_400_000, -1] {
            let mut b = Vec::new();
            fmt_ts(ms, true, &mut b);
            assert_eq!(String::from_utf8(b).unwrap(), crate::time::format_ms(ms));
        }
    }
}
