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

#[test]
fn the_fuzzers_findings_stay_fixed() {
    // Each input once panicked (bench/fuzz.sh found the second after 10
    // million executions, as an overflow in learning clock skew).
    let seeds = harness::seeds();
    let fixed = harness::Fixed::new(&seeds).unwrap();
    let findings: [(&str, &str); 2] = [
        (
            "fixtures/gateway/litellm_spendlogs.csv",
            "request_id,call_type,api_key,spend,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,model,model_group,metadata,cache_hit,status,user,team_id,end_user,request_tags\n\
             chatcmpl-sup004,acompletion,38421a3dd6372becf0707bb0ec1d1be405b690420957d45c1dc25a971cae0e63,0.007485,2364,2154,210,2026-11-20 09:32:01.241,2026-11-20 09:32:02.141,claude-sonnet-4-20250\u{65e5}\u{672c}514,gpt-4o,{},False,success,,,,[]\n",
        ),
        (
            "fixtures/gateway/samples/flatkey.csv",
            "timestamp_ms,request_id,key_last4,model,endpoint,input_tokens,cached_tokens,output_tokens,cost_micros,status\r\n\
             -9223372036854775808,fk-req-0001,Ab12,gpt-4o-mini,/v1/chat/completions,1000,0,200,270,200\r\n\
             1795170180300,fk-req-0002,Ab12,gpt-4o-mini,/v1/chat/completions,1000,0,200,270,200\r\n",
        ),
    ];
    for (name, input) in findings {
        let i = seeds.iter().position(|s| s.name == name).unwrap();
        harness::execute(&seeds, &fixed, i, input.as_bytes());
    }
}
