//! Property tests: every parser is total (arbitrary input never panics) and bounded.

use proptest::prelude::*;
use serde_json::Value;
use wattledger::collect::miners::json::{bracket_nums, parse_lenient, select};
use wattledger::collect::miners::profiles::{all, extract};
use wattledger::collect::miners::wire::parse_http;
use wattledger::collect::miners::{finish, identify_cgminer, split_multi};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![Just("78-50-69-70"), Just("Fan1[5] PS[0 1 2 3 4000]"), Just("GH"), Just("12.5 W")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("summary".to_string()),
            Just("stats".to_string()),
            Just("version".to_string()),
            Just("SUMMARY".to_string()),
            Just("STATS".to_string()),
            Just("VERSION".to_string()),
            Just("GHS 5s".to_string()),
            Just("fan1".to_string()),
            Just("MM ID0".to_string()),
            Just("rate_unit".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lenient_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_lenient(&bytes);
    }

    #[test]
    fn lenient_json_on_json_like_text(s in "[{}\\[\\]\":,0-9a-z \\x00]{0,200}") {
        let _ = parse_lenient(s.as_bytes());
    }

    #[test]
    fn http_parser_never_panics_and_respects_the_cap(bytes in prop::collection::vec(any::<u8>(), 0..1024), cap in 0usize..256) {
        if let Ok(r) = parse_http(&bytes, cap) {
            prop_assert!(r.body.len() <= cap);
        }
        let mut framed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        framed.extend_from_slice(&bytes);
        if let Ok(r) = parse_http(&framed, cap) {
            prop_assert!(r.body.len() <= cap);
        }
    }

    #[test]
    fn bracket_strings_never_panic(s in "[ -~]{0,200}", key in "[A-Za-z#]{0,6}") {
        let _ = bracket_nums(&s, &key);
    }

    #[test]
    fn every_field_map_is_total(doc in json_value()) {
        for map in all() {
            let x = extract(map, &doc);
            if let Some(h) = x.hashrate_ths { prop_assert!(h.is_finite() && h >= 0.0); }
        }
        let id = identify_cgminer(&doc);
        let r = finish("h", 1, &id, &doc);
        if let Some(h) = r.hashrate_ths { prop_assert!(h.is_finite()); }
        let _ = split_multi(&doc, &["version", "summary"]);
        let _ = select(&doc, "*/*/fan#");
    }
}
