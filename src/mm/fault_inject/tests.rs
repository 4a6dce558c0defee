use super::*;
use alloc::string::ToString;

#[test]
fn parses_the_documented_forms() {
    let c = FaultConfig::parse("frames:1/50,seed=7").unwrap();
    assert_eq!(
        c,
        FaultConfig {
            frames: Some(Rule::Probability { num: 1, den: 50 }),
            areas: None,
            seed: 7
        }
    );
    let c = FaultConfig::parse("areas:1/20").unwrap();
    assert_eq!(c.areas, Some(Rule::Probability { num: 1, den: 20 }));
    assert_eq!((c.frames, c.seed), (None, DEFAULT_SEED));
    let c = FaultConfig::parse("frames:nth=100").unwrap();
    assert_eq!(c.frames, Some(Rule::Nth(100)));
    let c = FaultConfig::parse("frames:1/50,areas:nth=0x10,seed=0xff").unwrap();
    assert_eq!(c.areas, Some(Rule::Nth(16)));
    assert_eq!(c.seed, 255);
    assert_eq!(FaultConfig::parse("none").unwrap(), FaultConfig::NONE);
}

#[test]
fn display_round_trips() {
    for s in [
        "frames:1/50,seed=7",
        "areas:nth=3,seed=1",
        "frames:0/1,areas:2/3,seed=9",
    ] {
        let c = FaultConfig::parse(s).unwrap();
        assert_eq!(c.to_string(), s);
        assert_eq!(FaultConfig::parse(&c.to_string()).unwrap(), c);
    }
    assert_eq!(FaultConfig::NONE.to_string(), "none");
}

#[test]
fn refuses_bad_values_naming_the_item() {
    let cases = [
        ("frames", "frames", "expected TARGET:RULE"),
        ("heap:1/2", "heap:1/2", "unknown target"),
        ("frames:1/0", "frames:1/0", "B > 0"),
        ("frames:3/2", "frames:3/2", "A <= B"),
        ("frames:1/x", "frames:1/x", "denominator"),
        ("frames:nth=0", "frames:nth=0", "from 1"),
        ("frames:nth=", "frames:nth=", "not a number"),
        ("frames:7", "frames:7", "expected A/B"),
        ("frames:1/2,frames:1/3", "frames:1/3", "already has a rule"),
        ("frames:1/2,seed=x", "seed=x", "seed"),
        ("seed=3", "seed=3", "no target"),
        ("", "", "expected TARGET:RULE"),
    ];
    for (input, item, why) in cases {
        let e = FaultConfig::parse(input).unwrap_err();
        assert_eq!(e.item, item, "{input}");
        assert!(e.why.contains(why), "{input}: {}", e.why);
        assert!(e.to_string().contains(item), "{e}");
    }
}

#[test]
fn nth_fails_exactly_the_nth_call_once() {
    let a = FaultAttr::new();
    assert!(!(0..100).any(|_| a.should_fail()), "off by default");
    assert_eq!(a.calls(), 0, "off does not count");
    a.set(Some(Rule::Nth(5)), 1);
    let failed: alloc::vec::Vec<u64> = (1..=20).filter(|_| a.should_fail()).collect();
    assert_eq!(failed, [5]);
    assert_eq!((a.calls(), a.injected()), (20, 1));
    // Setting the rule again restarts the count; `injected` keeps growing.
    a.set(Some(Rule::Nth(1)), 1);
    assert!(a.should_fail());
    assert!(!a.should_fail());
    assert_eq!(a.injected(), 2);
    a.set(None, 1);
    assert!(!a.should_fail());
    assert_eq!(a.rule(), None);
}

#[test]
fn probability_is_seeded_reproducible_and_about_right() {
    let run = |seed| {
        let a = FaultAttr::new();
        a.set(Some(Rule::Probability { num: 1, den: 50 }), seed);
        let v: alloc::vec::Vec<bool> = (0..100_000).map(|_| a.should_fail()).collect();
        (v, a.injected())
    };
    let (v7, n7) = run(7);
    let (v7b, _) = run(7);
    let (v8, n8) = run(8);
    assert_eq!(v7, v7b, "same seed, same decisions");
    assert_ne!(v7, v8, "another seed, other decisions");
    for n in [n7, n8] {
        assert!((1_700..=2_300).contains(&n), "1/50 of 100000 gave {n}");
    }
    let never = FaultAttr::new();
    never.set(Some(Rule::Probability { num: 0, den: 1 }), 3);
    assert!(!(0..1000).any(|_| never.should_fail()));
    let always = FaultAttr::new();
    always.set(Some(Rule::Probability { num: 1, den: 1 }), 3);
    assert!((0..1000).all(|_| always.should_fail()));
}

#[test]
fn concurrent_callers_see_exactly_the_expected_failures() {
    let a = FaultAttr::new();
    a.set(Some(Rule::Probability { num: 1, den: 10 }), 42);
    let seen = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let n = (0..10_000).filter(|_| a.should_fail()).count() as u64;
                seen.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    // The set of call indices is 0..40000 whatever the interleaving: same count as serial.
    let serial = FaultAttr::new();
    serial.set(Some(Rule::Probability { num: 1, den: 10 }), 42);
    let want = (0..40_000).filter(|_| serial.should_fail()).count() as u64;
    assert_eq!(seen.load(Ordering::Relaxed), want);
    assert_eq!(a.injected(), want);
    assert_eq!(a.calls(), 40_000);
}

#[test]
fn a_fail_value_sets_both_targets_and_none_leaves_them_off() {
    // A private FaultConfig round trip, without the machine's global switches (other host
    // tests allocate frames and areas concurrently).
    let cfg = FaultConfig::parse("frames:1/3,areas:nth=2,seed=5").unwrap();
    let attrs = [FaultAttr::new(), FaultAttr::new()];
    for (t, a) in Target::ALL.iter().zip(&attrs) {
        a.set(cfg.rule(*t), cfg.seed);
    }
    assert_eq!(attrs[0].rule(), Some(Rule::Probability { num: 1, den: 3 }));
    assert_eq!(attrs[1].rule(), Some(Rule::Nth(2)));
    assert_eq!(attrs[0].seed(), 5);
    assert_eq!(FaultConfig::parse("none").unwrap(), FaultConfig::NONE);
    // No fail= at all: setup does nothing (and so touches no global switch).
    assert!(setup(None).is_ok());
    assert!(!active());
}
