//! A mutation fuzzer for every input the engine reads (issue 16: no input
//! reaches a panic), on stable Rust and with no dependency: each execution
//! takes one seed from `fixtures/` or `profiles/`, mutates it (bytes
//! flipped, cut, repeated, spliced with another seed, or given a token
//! known to hurt parsers: multibyte text, huge and negative numbers,
//! impossible dates, quotes, control characters), and runs it through the
//! whole engine with the other inputs as seeds: parse, registry, aliases,
//! catalog, mapping file, reconcile, summary and every report line. A
//! panic anywhere is caught and counted with the input that caused it.
//!
//! Shared by the bounded run in `tests/fuzz.rs` (CI) and the long run in
//! `examples/fuzz.rs` (`bench/fuzz.sh`), through `#[path]`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tally_reconcile::keys::{KeyRegistry, OwnerEntry};
use tally_reconcile::models::AliasTable;
use tally_reconcile::parse::client::read_client;
use tally_reconcile::parse::mapping::{Profile, choose, read_mapped};
use tally_reconcile::prices::PriceBook;
use tally_reconcile::report::{EngineSettings, reconcile};
use tally_reconcile::report_lines::{RecordSink, Tabular};
use tally_reconcile::{Side, SideKind};

/// What a seed is, so the harness knows how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client usage log (format detected).
    Client,
    /// A gateway export (profile detected among the built-ins).
    Gateway,
    /// A gateway mapping file (TOML), then used on every gateway seed.
    Mapping,
    /// A client log in another shape, read through every client profile.
    MappedClient,
    /// A client mapping file (TOML), then used on every mapped client seed.
    ClientMapping,
    /// The price catalog in Tally's TOML.
    Prices,
    /// LiteLLM's price map (JSON).
    LitellmPrices,
    /// The key registry, TOML.
    KeysToml,
    /// The key registry, CSV.
    KeysCsv,
    /// Owners and their contacts, TOML.
    Owners,
    /// The model alias table.
    Aliases,
}

/// One seed input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Its file name (what parsers report in errors).
    pub name: &'static str,
    /// How it is read.
    pub kind: Kind,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

macro_rules! seed {
    ($kind:ident, $path:literal) => {
        Seed {
            name: $path,
            kind: Kind::$kind,
            bytes: include_bytes!(concat!("../../", $path)).to_vec(),
        }
    };
}

/// Every input of the repository's fixtures and profiles.
pub fn seeds() -> Vec<Seed> {
    vec![
        seed!(Client, "fixtures/client/app.jsonl"),
        seed!(Client, "fixtures/client/batch.csv"),
        seed!(Client, "fixtures/gateway/samples/client.jsonl"),
        seed!(MappedClient, "fixtures/client/samples/otel_spans.jsonl"),
        seed!(
            MappedClient,
            "fixtures/client/samples/langfuse_observations.json"
        ),
        seed!(MappedClient, "fixtures/litellm_day/app.jsonl"),
        seed!(ClientMapping, "profiles/client/otlp.toml"),
        seed!(ClientMapping, "profiles/client/langfuse.toml"),
        seed!(ClientMapping, "profiles/client/langfuse-export.toml"),
        seed!(ClientMapping, "fixtures/litellm_day/app-mapping.toml"),
        seed!(Gateway, "fixtures/litellm_day/spendlogs.csv"),
        seed!(Gateway, "fixtures/gateway/litellm_spendlogs.csv"),
        seed!(Gateway, "fixtures/gateway/openrouter.csv"),
        seed!(Gateway, "fixtures/gateway/samples/cloudflare.json"),
        seed!(Gateway, "fixtures/gateway/samples/flatkey.csv"),
        seed!(Gateway, "fixtures/gateway/samples/helicone.jsonl"),
        seed!(Gateway, "fixtures/gateway/samples/litellm_spend_logs.json"),
        seed!(Gateway, "fixtures/gateway/samples/portkey.jsonl"),
        seed!(Mapping, "profiles/cloudflare.toml"),
        seed!(Mapping, "profiles/flatkey.toml"),
        seed!(Mapping, "profiles/helicone.toml"),
        seed!(Mapping, "profiles/litellm-json.toml"),
        seed!(Mapping, "profiles/litellm.toml"),
        seed!(Mapping, "profiles/openrouter.toml"),
        seed!(Mapping, "profiles/portkey.toml"),
        seed!(Prices, "fixtures/prices.toml"),
        Seed {
            name: "litellm_prices.json",
            kind: Kind::LitellmPrices,
            bytes: LITELLM_PRICES.as_bytes().to_vec(),
        },
        seed!(KeysToml, "fixtures/keys.toml"),
        Seed {
            name: "keys.csv",
            kind: Kind::KeysCsv,
            bytes: KEYS_CSV.as_bytes().to_vec(),
        },
        Seed {
            name: "owners.toml",
            kind: Kind::Owners,
            bytes: OWNERS_TOML.as_bytes().to_vec(),
        },
        seed!(Aliases, "fixtures/aliases.toml"),
    ]
}

/// LiteLLM's `model_prices_and_context_window.json` shape, a few entries.
const LITELLM_PRICES: &str = r#"{
 "sample_spec": {"max_tokens": "set to max_output_tokens", "input_cost_per_token": 0.0},
 "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "cache_read_input_token_cost": 7.5e-08, "litellm_provider": "openai", "mode": "chat"},
 "claude-3-5-sonnet-20241022": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07, "litellm_provider": "anthropic", "mode": "chat"},
 "text-embedding-3-small": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "embedding"}
}"#;

const KEYS_CSV: &str = "id,team,service,env,alias,sha256,last4\n\
key_support_prod,support,support-bot,prod,support-bot-prod,,Ab12\n\
key_search,search,search-api,prod,search-api-prod,,Cd34\n";

const OWNERS_TOML: &str = "[[owner]]\nteam = \"support\"\nservice = \"support-bot\"\nenv = \"prod\"\ncontact = \"support-oncall@example.com\"\n";

/// Tokens that have broken parsers before, or would.
const DICTIONARY: &[&str] = &[
    "é",
    "gé-4o-mini-a",
    "日本語",
    "🎉",
    "\u{0}",
    "\u{1b}[31m",
    "\u{7}",
    "\r",
    "\n",
    "\r\n",
    "\t",
    "\"",
    "\"\"",
    ",",
    ";",
    "'",
    "\\",
    "\\u0000",
    "\\ud800",
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "[]",
    "{}",
    "0",
    "-0",
    "-1",
    "1e308",
    "-1e308",
    "1e-400",
    "NaN",
    "inf",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "4294967295",
    "4294967296",
    "0.0000000000000000000000001",
    "1.7976931348623157e308",
    "0x10",
    "1_000",
    "2026-13-45T99:99:99Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "-2026-11-20",
    "2026-02-29",
    "2026-11-20T10:00:00+25:00",
    "1700000000000000000",
    "-1700000000",
    "=1+1",
    "sk-proj-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "*",
    "**",
    "@20240620",
    "-0613",
    "-2024-08-06",
    "/",
    "//",
    "a.b.c",
    "$",
    "=",
    "[[price]]",
    "[aliases]",
    "[[key]]",
    "[[owner]]",
];

/// A small, fast, seeded generator (xorshift64*): runs are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is moved off the fixed point).
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

/// A copy of `input` with one to four mutations; `other` is spliced from.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] =
                    [0u8, 0x7f, 0x80, 0xc3, 0xe2, 0xf0, 0xff, b'"', b',', b'\n'][rng.below(10)];
            }
            2 => {
                let end = (at + rng.below(64)).min(len);
                out.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(256)).min(len);
                let piece = out[at..end].to_vec();
                let times = 1 + rng.below(3);
                for _ in 0..times {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + rng.below(512)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            5 => out.truncate(at),
            6 => {
                // Replace a run of digits or letters with a dictionary token.
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                let mut end = at;
                while end < len && out[end].is_ascii_alphanumeric() {
                    end += 1;
                }
                out.splice(at..end, tok.iter().copied());
            }
            _ => {
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                out.splice(at..at, tok.iter().copied());
            }
        }
    }
    out
}

/// Counts cells, so the report lines are really rendered.
struct CountingSink(usize);

impl RecordSink for CountingSink {
    fn text(&mut self, s: &str) {
        self.0 = self.0.wrapping_add(s.len());
    }
    fn plain(&mut self, s: &str) {
        self.0 = self.0.wrapping_add(s.len());
    }
}

fn render<T: Tabular>(lines: impl Iterator<Item = T>, sink: &mut CountingSink) {
    for l in lines {
        l.write(sink);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unmutated inputs, parsed once: each execution replaces one of them.
/// Sides hold the first lines of each seed, so an execution is small.
pub struct Fixed {
    profiles: Vec<Profile>,
    client_profiles: Vec<Profile>,
    registry: KeyRegistry,
    aliases: AliasTable,
    prices: PriceBook,
    client: Side,
    gateway: Side,
}

/// The first lines of a seed (a JSON document stays whole).
fn head(seed: &Seed, lines: usize) -> &[u8] {
    if seed.name.ends_with(".json") {
        return &seed.bytes;
    }
    nth_newline(&seed.bytes, lines).map_or(&seed.bytes[..], |n| &seed.bytes[..n])
}

fn first_of(seeds: &[Seed], kind: Kind) -> String {
    seeds
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| text(&s.bytes))
        .unwrap_or_default()
}

fn read_gateways<'a>(
    seeds: &'a [Seed],
    profiles: &[Profile],
    replaced: Option<(usize, &'a [u8])>,
) -> Side {
    let mut gateway = Side::keeping_raw(SideKind::Gateway);
    for (i, s) in seeds
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == Kind::Gateway)
    {
        let bytes = match replaced {
            Some((r, b)) if r == i => b,
            _ => head(s, 16),
        };
        if let Ok(p) = choose(profiles, bytes, s.name) {
            let _ = read_mapped(bytes, s.name, p, &mut gateway);
        }
    }
    gateway
}

/// Reads every mapped client seed (`replaced` stands in for one) through
/// every client profile, then Tally's own format, into `client`.
fn read_mapped_clients(
    seeds: &[Seed],
    profiles: &[Profile],
    replaced: Option<(usize, &[u8])>,
    client: &mut Side,
) {
    for (i, s) in seeds
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == Kind::MappedClient)
    {
        let bytes = match replaced {
            Some((r, b)) if r == i => b,
            _ => head(s, 16),
        };
        for p in profiles {
            let _ = read_mapped(bytes, s.name, p, client);
        }
        let _ = read_client(bytes, s.name, None, client);
    }
}

impl Fixed {
    /// Parses every seed once; a seed that does not parse is a bug in the
    /// fixtures, reported as such.
    pub fn new(seeds: &[Seed]) -> Result<Self, String> {
        let profiles = Profile::builtins().map_err(|e| e.to_string())?;
        let registry = KeyRegistry::from_toml(&first_of(seeds, Kind::KeysToml), "keys.toml")
            .map_err(|e| e.to_string())?;
        let aliases = AliasTable::from_toml(&first_of(seeds, Kind::Aliases), "aliases.toml")
            .map_err(|e| e.to_string())?;
        let prices = PriceBook::from_toml(&first_of(seeds, Kind::Prices), "prices.toml")
            .map_err(|e| e.to_string())?;
        let mut client = Side::keeping_raw(SideKind::Client);
        for s in seeds.iter().filter(|s| s.kind == Kind::Client) {
            read_client(head(s, 16), s.name, None, &mut client).map_err(|e| e.to_string())?;
        }
        let mut client_profiles = Profile::client_builtins().map_err(|e| e.to_string())?;
        for s in seeds.iter().filter(|s| s.kind == Kind::ClientMapping) {
            client_profiles
                .push(Profile::from_toml(&text(&s.bytes), s.name).map_err(|e| e.to_string())?);
        }
        read_mapped_clients(seeds, &client_profiles, None, &mut client);
        let gateway = read_gateways(seeds, &profiles, None);
        Ok(Fixed {
            profiles,
            client_profiles,
            registry,
            aliases,
            prices,
            client,
            gateway,
        })
    }
}

/// Runs the whole engine with seed `index` replaced by `input`. Errors are
/// the expected outcome for most mutants; only a panic is a finding.
pub fn execute(seeds: &[Seed], fixed: &Fixed, index: usize, input: &[u8]) {
    let Some(seed) = seeds.get(index) else { return };
    let mut client = None;
    let mut gateway = None;
    let mut registry = None;
    let mut aliases = None;
    let mut prices = None;
    match seed.kind {
        Kind::Client => {
            let mut side = Side::keeping_raw(SideKind::Client);
            let _ = read_client(input, seed.name, None, &mut side);
            client = Some(side);
        }
        Kind::Gateway => {
            gateway = Some(read_gateways(seeds, &fixed.profiles, Some((index, input))))
        }
        Kind::MappedClient => {
            let mut side = Side::keeping_raw(SideKind::Client);
            read_mapped_clients(
                seeds,
                &fixed.client_profiles,
                Some((index, input)),
                &mut side,
            );
            client = Some(side);
        }
        Kind::ClientMapping => {
            // A mutated client mapping, tried on every mapped client seed.
            let Ok(p) = Profile::from_toml(&text(input), "client-mapping.toml") else {
                return;
            };
            let mut side = Side::keeping_raw(SideKind::Client);
            read_mapped_clients(seeds, std::slice::from_ref(&p), None, &mut side);
            client = Some(side);
        }
        Kind::Mapping => {
            // A mutated mapping file is tried first, on every gateway seed.
            let Ok(p) = Profile::from_toml(&text(input), "mapping.toml") else {
                return;
            };
            let mut side = Side::keeping_raw(SideKind::Gateway);
            for s in seeds.iter().filter(|s| s.kind == Kind::Gateway) {
                let _ = read_mapped(head(s, 16), s.name, &p, &mut side);
            }
            gateway = Some(side);
        }
        Kind::Prices => match PriceBook::from_toml(&text(input), "prices.toml") {
            Ok(p) => prices = Some(p),
            Err(_) => return,
        },
        Kind::LitellmPrices => {
            match PriceBook::from_litellm_json(&text(input), "litellm.json", 1_700_000_000_000) {
                Ok((p, _)) => prices = Some(p),
                Err(_) => return,
            }
        }
        Kind::KeysToml | Kind::KeysCsv => {
            let r = if seed.kind == Kind::KeysCsv {
                KeyRegistry::from_csv(input, "keys.csv")
            } else {
                KeyRegistry::from_toml(&text(input), "keys.toml")
            };
            match r {
                Ok(r) => registry = Some(r),
                Err(_) => return,
            }
        }
        Kind::Owners => {
            // Owners only carry contacts into the service: parsing is all.
            let _ = OwnerEntry::from_toml(&text(input), "owners.toml");
            return;
        }
        Kind::Aliases => match AliasTable::from_toml(&text(input), "aliases.toml") {
            Ok(a) => aliases = Some(a),
            Err(_) => return,
        },
    }
    let client = client.as_ref().unwrap_or(&fixed.client);
    let gateway = gateway.as_ref().unwrap_or(&fixed.gateway);
    let _ = tally_reconcile::identity::dedup_keys(client);
    let _ = tally_reconcile::identity::dedup_keys(gateway);
    let r = reconcile(
        client,
        gateway,
        registry.as_ref().unwrap_or(&fixed.registry),
        aliases.as_ref().unwrap_or(&fixed.aliases),
        prices.as_ref().unwrap_or(&fixed.prices),
        EngineSettings::default(),
    );
    let summary = r.summary(1_764_000_000_000);
    let mut sink = CountingSink(0);
    render(r.pairs(), &mut sink);
    render(r.missing_usage(), &mut sink);
    render(r.unattributed(), &mut sink);
    render(r.duplicates(), &mut sink);
    render(r.discrepancies(), &mut sink);
    render(summary.costs_by_owner.iter(), &mut sink);
    render(
        client.rejects.iter().chain(gateway.rejects.iter()),
        &mut sink,
    );
    let _ = serde_json::to_string(&summary);
    let _ = r.offsets();
    std::hint::black_box(sink.0);
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Executions run.
    pub executions: u64,
    /// Executions that panicked.
    pub panics: u64,
    /// The first panic: the seed's name, its message and the input.
    pub first: Option<(String, String, Vec<u8>)>,
}

thread_local! {
    /// Set while this thread runs a mutant: its panic is recorded here
    /// instead of printed.
    static CAUGHT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once) a panic hook that records a mutant's panic message for
/// its thread, and leaves every other panic to the default hook (a failing
/// test still prints its message).
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let fuzzing = CAUGHT.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(slot) => {
                        *slot = format!("{info}");
                        true
                    }
                    None => false,
                }
            });
            if !fuzzing {
                default(info);
            }
        }));
    });
}

/// Runs `executions` mutants from `seed`, catching and counting panics.
pub fn run(seeds: &[Seed], executions: u64, seed: u64) -> Outcome {
    match Fixed::new(seeds) {
        Ok(fixed) => run_with(seeds, executions, seed, |s, i, b| execute(s, &fixed, i, b)),
        Err(e) => Outcome {
            first: Some(("the seeds".to_owned(), e, Vec::new())),
            panics: 1,
            ..Outcome::default()
        },
    }
}

/// [`run`] with another execution (the harness's own test plants a panic).
pub fn run_with(
    seeds: &[Seed],
    executions: u64,
    seed: u64,
    exec: impl Fn(&[Seed], usize, &[u8]),
) -> Outcome {
    install_hook();
    let mut rng = Rng::new(seed);
    let mut out = Outcome::default();
    for _ in 0..executions {
        let i = rng.below(seeds.len());
        let other = &seeds[rng.below(seeds.len())].bytes;
        // Small inputs run fast: most executions take a short prefix of
        // the seed's lines, some the whole seed.
        let base = &seeds[i].bytes;
        let base = if rng.below(16) == 0 {
            base.as_slice()
        } else {
            let cut = nth_newline(base, 2 + rng.below(12)).unwrap_or(base.len());
            &base[..cut]
        };
        let input = mutate(&mut rng, base, other);
        out.executions += 1;
        CAUGHT.with(|c| *c.borrow_mut() = Some(String::new()));
        let result = catch_unwind(AssertUnwindSafe(|| exec(seeds, i, &input)));
        let msg = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default();
        if result.is_err() {
            out.panics += 1;
            if out.first.is_none() {
                out.first = Some((seeds[i].name.to_owned(), msg, input));
            }
        }
    }
    out
}

fn nth_newline(b: &[u8], n: usize) -> Option<usize> {
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'\n')
        .nth(n)
        .map(|(i, _)| i + 1)
}
