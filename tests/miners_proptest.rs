//! Property tests: every parser is total (arbitrary input never panics) and bounded, for
//! the cgminer family and for the HTTP-only makes (Braiins OS REST/GraphQL, Goldshell,
//! Proto), whose whole probe is also run against a server answering arbitrary bytes.

use proptest::prelude::*;
use serde_json::{Map, Value};
use wattledger::collect::miners::json::{bracket_nums, parse_lenient, select};
use wattledger::collect::miners::makes::{Api, MAKES};
use wattledger::collect::miners::profiles::{all, extract};
use wattledger::collect::miners::wire::{self, parse_http};
use wattledger::collect::miners::{self, finish, identify_cgminer, split_multi, ReadOptions};

/// Arbitrary JSON shaped like miner replies: object keys are mostly ones the parsers look
/// for (`keys`), strings are sometimes values they treat specially (`strings`).
fn json_value(keys: &'static [&'static str], strings: &'static [&'static str], depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::sample::select(strings).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(depth, 64, 6, move |inner| {
        let key = prop_oneof![
            keys.len() as u32 => prop::sample::select(keys).prop_map(str::to_string),
            1 => "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// The cgminer family's keys and quirky values.
fn cgminer_json() -> BoxedStrategy<Value> {
    json_value(
        &["summary", "stats", "version", "SUMMARY", "STATS", "VERSION", "GHS 5s", "fan1", "MM ID0", "rate_unit"],
        &["78-50-69-70", "Fan1[5] PS[0 1 2 3 4000]", "GH", "12.5 W"],
        4,
    )
}

/// The HTTP-only makes' keys (Braiins OS REST/GraphQL, Goldshell, Proto).
fn http_makes_json() -> BoxedStrategy<Value> {
    json_value(
        &[
            "data",
            "bosminer",
            "info",
            "workSolver",
            "realHashrate",
            "mhs5S",
            "miner_stats",
            "real_hashrate",
            "miner_identity",
            "miner_model",
            "mining-status",
            "hashrate_ghs",
            "system-info",
            "MHS 20s",
            "fan0",
            "model",
        ],
        &["Goldshell-SC5Pro"],
        5,
    )
}

/// Reads `reply` as every make of the registry would see it: each document key its
/// requests fill holds the reply.
fn read_as_every_make(reply: &Value) {
    for m in MAKES {
        let keys: Vec<&str> = match &m.api {
            Api::Cgminer { extra, .. } => {
                ["version", "summary", "stats", "pools"].into_iter().chain(extra.iter().copied()).collect()
            }
            Api::Btminer { commands, .. } => std::iter::once("get_version").chain(commands.iter().copied()).collect(),
            Api::Framed { requests, .. } => requests.iter().flat_map(|(k, _)| k.iter().copied()).collect(),
            Api::Http(h) => h.requests.iter().map(|r| r.key).collect(),
        };
        let mut doc = Map::new();
        for k in keys {
            doc.insert(k.to_owned(), reply.clone());
        }
        let doc = Value::Object(doc);
        let id = match &m.api {
            Api::Cgminer { identify, .. } => identify(&doc),
            Api::Btminer { identify, .. } | Api::Framed { identify, .. } => Some(identify(&doc)),
            Api::Http(h) => {
                let _ = (h.detect)(reply);
                Some((h.identify)(&doc))
            }
        };
        if let Some(id) = id {
            let r = finish("127.0.0.1", 80, &id, &doc);
            assert!(r.online);
            if let Some(h) = r.hashrate_ths {
                assert!(h.is_finite() && h >= 0.0, "{}", m.id);
            }
        }
    }
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
    fn every_field_map_is_total(doc in cgminer_json()) {
        for map in all() {
            let x = extract(map, &doc);
            if let Some(h) = x.hashrate_ths { prop_assert!(h.is_finite() && h >= 0.0); }
        }
        read_as_every_make(&doc);
        let id = identify_cgminer(&doc);
        let r = finish("h", 1, &id, &doc);
        if let Some(h) = r.hashrate_ths { prop_assert!(h.is_finite()); }
        let _ = split_multi(doc.clone(), &["version", "summary"]);
        let _ = select(&doc, "*/*/fan#");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn http_make_maps_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(v) = parse_lenient(&bytes) {
            read_as_every_make(&v);
        }
    }

    #[test]
    fn http_make_maps_never_panic_on_arbitrary_json(v in http_makes_json()) {
        read_as_every_make(&v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A server answering every request with `200 OK` and arbitrary bytes (or JSON-looking
    /// text): the probe ends with a reading or an error, never a panic or a hang.
    #[test]
    fn probe_never_panics_on_arbitrary_http_bodies(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        http_makes_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = listener.accept().await else { return };
                    let body = body.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf).await;
                        let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                        out.extend_from_slice(&body);
                        let _ = s.write_all(&out).await;
                    });
                }
            });
            let opts = ReadOptions { timeout: std::time::Duration::from_secs(2), max_reply_bytes: 1 << 16 };
            let _ = miners::probe("127.0.0.1", port, &opts).await;
            server.abort();
        });
    }
}

/// Chunk sizes and lengths as a hostile peer sends them: the largest values that parse, one
/// past them, and values around the cap.
fn extreme_len() -> BoxedStrategy<u128> {
    prop_oneof![
        Just(u64::MAX as u128),
        Just(usize::MAX as u128),
        Just(usize::MAX as u128 + 1),
        Just(u128::MAX),
        (0u128..=70_000),
        any::<u64>().prop_map(u128::from),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Chunk sizes anywhere up to `u128::MAX` and caps anywhere up to `usize::MAX`: the
    /// de-chunker answers a body within the cap or an error, and never overflows.
    #[test]
    fn chunk_lengths_never_overflow(sizes in prop::collection::vec(extreme_len(), 1..4), cap in prop_oneof![Just(usize::MAX), Just(usize::MAX - 1), 0usize..100_000]) {
        let mut raw = Vec::new();
        for s in &sizes {
            raw.extend_from_slice(format!("{s:x}\r\n").as_bytes());
            raw.extend_from_slice(&b"x".repeat((*s).min(64) as usize));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        match wattledger::collect::miners::wire::dechunk(&raw, cap) {
            Ok(body) => prop_assert!(body.len() <= cap),
            Err(e) => prop_assert!(matches!(e, wire::WireError::TooLarge { .. } | wire::WireError::NotHttp | wire::WireError::BadHttp(_)), "{e}"),
        }
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        reply.extend_from_slice(&raw);
        let _ = parse_http(&reply, cap);
        let _ = wattledger::collect::miners::wire::http_complete(&reply);
    }

    /// `Content-Length` anywhere up to `u128::MAX`: completeness and parsing stay total.
    #[test]
    fn content_lengths_never_overflow(len in extreme_len(), body in prop::collection::vec(any::<u8>(), 0..64), cap in prop_oneof![Just(usize::MAX), 0usize..100_000]) {
        let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes();
        reply.extend_from_slice(&body);
        let complete = wattledger::collect::miners::wire::http_complete(&reply);
        if (len as usize as u128) == len && len <= body.len() as u128 {
            prop_assert_eq!(complete, Some(true));
        }
        if let Ok(r) = parse_http(&reply, cap) {
            prop_assert!(r.body.len() <= body.len() && r.body.len() <= cap);
        }
    }
}
