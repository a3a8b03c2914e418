//! Property tests for the HTTP-only makes (Braiins OS REST/GraphQL, Goldshell, Proto): their
//! identification and field maps never panic on arbitrary replies, and neither does the
//! whole probe against a server answering arbitrary bytes.

use proptest::prelude::*;
use serde_json::{Map, Value};
use wattledger::collect::miners::http_makes::{
    identify_braiins_gql, identify_braiins_rest, identify_goldshell, identify_proto,
};
use wattledger::collect::miners::json::parse_lenient;
use wattledger::collect::miners::{self, finish, Identity, ReadOptions};

/// The keys a make's document is assembled under, and its identification.
type Make = (&'static [&'static str], fn(&Value) -> Identity);

fn makes() -> [Make; 4] {
    [
        (&["details", "stats", "cooling"], identify_braiins_rest),
        (&["system", "pools"], identify_braiins_gql),
        (&["status", "DEVS", "SUMMARY", "DEVDETAILS"], identify_goldshell),
        (&["system", "mining", "cooling", "pools"], identify_proto),
    ]
}

fn read_all(reply: &Value) {
    for (keys, identify) in makes() {
        let mut doc = Map::new();
        for k in keys {
            doc.insert((*k).to_owned(), reply.clone());
        }
        let doc = Value::Object(doc);
        let id = identify(&doc);
        let r = finish("127.0.0.1", 80, &id, &doc);
        assert!(r.online);
        if let Some(h) = r.hashrate_ths {
            assert!(h.is_finite() && h >= 0.0);
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(Value::String("Goldshell-SC5Pro".into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("data".to_string()),
            Just("bosminer".to_string()),
            Just("info".to_string()),
            Just("workSolver".to_string()),
            Just("realHashrate".to_string()),
            Just("mhs5S".to_string()),
            Just("miner_stats".to_string()),
            Just("real_hashrate".to_string()),
            Just("miner_identity".to_string()),
            Just("miner_model".to_string()),
            Just("mining-status".to_string()),
            Just("hashrate_ghs".to_string()),
            Just("system-info".to_string()),
            Just("MHS 20s".to_string()),
            Just("fan0".to_string()),
            Just("model".to_string()),
            "[a-z_]{1,8}",
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
    fn new_maps_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(v) = parse_lenient(&bytes) {
            read_all(&v);
        }
    }

    #[test]
    fn new_maps_never_panic_on_arbitrary_json(v in json_value()) {
        read_all(&v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A server answering every request with `200 OK` and arbitrary bytes (or JSON-looking
    /// text): the probe ends with a reading or an error, never a panic or a hang.
    #[test]
    fn probe_never_panics_on_arbitrary_http_bodies(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
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
