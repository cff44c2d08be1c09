//! A bounded fuzz run over every input the engine reads (issue 16): no
//! mutant of any fixture, profile, catalog, registry or alias table may
//! panic. The long run is `bench/fuzz.sh`.

#[path = "../fuzz/harness.rs"]
mod harness;

#[test]
fn no_mutant_of_any_input_panics() {
    let seeds = harness::seeds();
    // Bounded for CI; `bench/fuzz.sh` runs millions.
    let n = 20_000;
    let out = harness::run(&seeds, n, 16);
    if let Some((seed, msg, input)) = &out.first {
        panic!(
            "{} of {} executions panicked; the first, a mutant of {seed}: {msg}\ninput: {:?}",
            out.panics,
            out.executions,
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(out.executions, n);
}

#[test]
fn the_harness_finds_a_panic_when_there_is_one() {
    // The fuzzer is only evidence if it would catch one: a panicking
    // execution is counted and kept.
    let seeds = harness::seeds();
    let out = harness::run_with(&seeds, 10, 1, |_, _, input| {
        assert!(input.len() > usize::MAX / 2, "planted panic");
    });
    assert_eq!(out.panics, 10);
    assert!(out.first.is_some_and(|f| f.1.contains("planted panic")));
}
