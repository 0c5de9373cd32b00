//! Property tests: no input makes the spec reader panic, hang or overflow the stack.

mod support;
use container::spec::{parse_bytes, Format};
use proptest::prelude::*;

fn both(bytes: &[u8]) {
    for f in [Format::Toml, Format::Yaml] {
        // Any outcome is fine; a panic fails the property.
        let _ = parse_bytes("fuzz", bytes, f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        both(&bytes);
    }

    #[test]
    fn spec_shaped_text_never_panics(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("name = \"web\"".to_string()),
                Just("name: web".to_string()),
                Just("[network]".to_string()),
                Just("network:".to_string()),
                Just("  ipv4: auto".to_string()),
                Just("ipv4 = \"auto\"".to_string()),
                Just("[[mounts]]".to_string()),
                Just("- target: /x".to_string()),
                Just("[services.php]".to_string()),
                Just("a: &a [*a]".to_string()),
                "[a-z_\\[\\]{}:=\"'\\-, .0-9/]{0,40}",
            ],
            0..24,
        )
    ) {
        both(lines.join("\n").as_bytes());
    }
}

/// Spec errors always carry a span inside the text they came from.
#[test]
fn every_problem_points_inside_its_file() {
    let samples = [
        "name = 1\n[network]\nipv4 = 3\n",
        "name: web\nnetwork: {ipv4: 1.2.3}\nmounts: [{target: x}]\n",
        "name = \"web\"\nfiles = [{ path = \"/a\" }]\n",
        "name: web\nprocesses: {a: {command: []}}\n",
    ];
    for (i, s) in samples.iter().enumerate() {
        let f = if i % 2 == 0 { Format::Toml } else { Format::Yaml };
        let errs = parse_bytes("t", s.as_bytes(), f).unwrap_err();
        assert!(!errs.is_empty());
        for (_, p) in &errs.problems {
            let span = p.span.clone().expect("every problem has a span");
            assert!(span.end <= s.len(), "{p:?} outside {s:?}");
        }
    }
}
