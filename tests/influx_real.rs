//! The writers against real servers: v1 `/write` to InfluxDB 1.6 (read back with
//! plain InfluxQL, independently of our reader), v2 `/api/v2/write` to
//! VictoriaMetrics (read back through its export API), and the real servers'
//! answers to what goes wrong: unknown database, missing v2 API, bad lines, wrong
//! credentials (a private influxd with authentication), 413 (a private influxd with
//! a small body limit), nothing listening.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use wattledger::config::Secret;
use wattledger::model::{FieldValue, Point};
use wattledger::ship::influx::{Auth, InfluxWriter, RetryPolicy, Target, WriterOptions};
use wattledger::ship::lineproto::encode_batch;
use wattledger::ship::{WriteError, Writer};
use wattledger::store::writer_from_config;
use wattledger::store::{open_store, SeriesQuery, StoreError};

const T0: i64 = 1_700_000_000_123_456_789;

fn options(gzip: bool) -> WriterOptions {
    WriterOptions {
        timeout: Duration::from_secs(5),
        gzip,
        retry: RetryPolicy { max_retries: 1, initial_backoff: Duration::from_millis(20), ..RetryPolicy::default() },
    }
}

fn v1(url: &str, db: &str, auth: Auth, gzip: bool) -> InfluxWriter {
    InfluxWriter::new(url, Target::V1 { database: db.into(), retention_policy: None }, auth, options(gzip)).unwrap()
}

fn hostile_points() -> Vec<Point> {
    vec![
        Point::new("gpu power,x", T0)
            .tag("host", "rig 1,a=b")
            .tag("path", "C:\\gpu \"0\"")
            .field("power w", 251.5)
            .field("energy_j", 9_007_199_254_740_993i64) // 2^53 + 1: not exact as a float
            .field("ok", true)
            .field("note", "say \"hi\" \\ bye,\nnext=line")
            .field("whole", 3.0),
        Point::new("gpu power,x", T0 + 1).tag("host", "rig 2").field("power w", -0.5),
    ]
}

#[tokio::test]
async fn v1_write_reads_back_through_influxql_with_types_and_escaping() {
    for gzip in [true, false] {
        let db = common::TestDb::create().await;
        let w = v1(&db.url, &db.name, Auth::None, gzip);
        w.write_lines(&encode_batch(&hostile_points()).unwrap()).await.unwrap();

        let types = common::influxql_get(&db.url, &db.name, r#"SHOW FIELD KEYS FROM "gpu power,x""#).await;
        assert_eq!(
            types["results"][0]["series"][0]["values"],
            json!([
                ["energy_j", "integer"],
                ["note", "string"],
                ["ok", "boolean"],
                ["power w", "float"],
                ["whole", "float"]
            ]),
            "{types}"
        );
        let rows = common::influxql_get(
            &db.url,
            &db.name,
            r#"SELECT "power w","energy_j","ok","note","whole" FROM "gpu power,x" GROUP BY *"#,
        )
        .await;
        let series = &rows["results"][0]["series"];
        assert_eq!(series[0]["tags"], json!({"host": "rig 1,a=b", "path": "C:\\gpu \"0\""}), "{rows}");
        assert_eq!(
            series[0]["values"],
            json!([[T0, 251.5, 9_007_199_254_740_993i64, true, "say \"hi\" \\ bye,\nnext=line", 3]])
        );
        assert_eq!(series[1]["tags"], json!({"host": "rig 2", "path": ""}));
        assert_eq!(series[1]["values"], json!([[T0 + 1, -0.5, null, null, null, null]]));

        // And through our own reader, typed.
        let store = open_store(&common::store_config(&db.store_toml())).await.unwrap();
        let got = store
            .read(&SeriesQuery {
                measurement: "gpu power,x".into(),
                fields: vec!["energy_j".into(), "whole".into(), "note".into()],
                tag_filters: vec![("path".into(), "C:\\gpu \"0\"".into())],
                start_ns: T0,
                end_ns: T0 + 10,
            })
            .await
            .unwrap();
        assert_eq!(
            got[0].values[0],
            vec![
                Some(FieldValue::Int(9_007_199_254_740_993)),
                Some(FieldValue::Float(3.0)),
                Some(FieldValue::Str("say \"hi\" \\ bye,\nnext=line".into()))
            ]
        );
    }
}

/// Polls VictoriaMetrics' export API until `want` series of `prefix` are visible.
/// The series named `prefix_*`, once `want` of them hold `samples` samples each: VictoriaMetrics
/// makes a series searchable before all of one write's samples are (seen under load in CI).
async fn vm_export(vm: &str, prefix: &str, want: usize, samples: usize) -> Vec<serde_json::Value> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = client
            .post(format!("{vm}/api/v1/export"))
            .form(&[("match[]", format!("{{__name__=~\"{prefix}_.*\"}}"))])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let complete = rows.iter().filter(|r| r["values"].as_array().is_some_and(|v| v.len() >= samples)).count();
        if complete >= want || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn v2_write_reaches_victoria_metrics_with_token_and_gzip() {
    let vm = common::server_url("WATTLEDGER_TEST_VM_URL");
    let m = common::unique_name("wlv2");
    let now_ms = wattledger::model::now_ns() / 1_000_000;
    let t_ns = now_ms * 1_000_000;
    let cfg = common::store_config(&format!(
        "kind = \"influxdb\"\nurl = \"{vm}\"\napi = \"v2\"\norg = \"site\"\nbucket = \"wattledger\"\ntoken = \"test-token\"\n"
    ));
    let w = writer_from_config(&cfg).unwrap();
    assert!(w.describe().starts_with("influxdb v2"), "{}", w.describe());
    let points = vec![
        Point::new(&m, t_ns)
            .tag("host", "rig a")
            .tag("gpu", "0")
            .field("power_w", 251.25)
            .field("energy_j", 123_456i64)
            .field("ok", true),
        Point::new(&m, t_ns + 1_000_000_000)
            .tag("host", "rig a")
            .tag("gpu", "0")
            .field("power_w", 252.5)
            .field("energy_j", 123_999i64)
            .field("ok", false),
    ];
    w.write_lines(&encode_batch(&points).unwrap()).await.unwrap();
    let rows = vm_export(&vm, &m, 3, 2).await;
    let find = |name: &str| {
        rows.iter()
            .find(|r| r["metric"]["__name__"] == format!("{m}_{name}"))
            .unwrap_or_else(|| panic!("{m}_{name} not exported: {rows:?}"))
            .clone()
    };
    let power = find("power_w");
    assert_eq!(power["metric"]["host"], "rig a");
    assert_eq!(power["metric"]["gpu"], "0");
    assert_eq!(power["values"], json!([251.25, 252.5]));
    assert_eq!(power["timestamps"], json!([now_ms, now_ms + 1000]));
    assert_eq!(find("energy_j")["values"], json!([123456, 123999]));
    assert_eq!(find("ok")["values"], json!([1, 0]));
}

#[tokio::test]
async fn real_influxdb_errors_are_clear() {
    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let body = encode_batch(&hostile_points()).unwrap();

    // Unknown database: 404 with a hint.
    let err = v1(&url, "wl_no_such_db_x", Auth::None, true).write_lines(&body).await.unwrap_err();
    assert!(matches!(err, WriteError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("database not found") && err.to_string().contains("CREATE DATABASE"), "{err}");

    // InfluxDB 1.6 has no /api/v2/write.
    let v2 = InfluxWriter::new(&url, Target::V2 { org: None, bucket: "b".into() }, Auth::None, options(true)).unwrap();
    let err = v2.write_lines(&body).await.unwrap_err();
    assert!(matches!(err, WriteError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("/api/v2/write"), "{err}");

    // Hostile line protocol: the server's 400 message comes through, not retried.
    let db = common::TestDb::create().await;
    let w = v1(&db.url, &db.name, Auth::None, true);
    for bad in ["m v=1 1\nm,x v=1 2\n", "m v=\"unterminated 3\n", "m v=1u 4\n"] {
        let err = w.write_lines(bad).await.unwrap_err();
        assert!(matches!(err, WriteError::Rejected { .. }), "{bad:?}: {err}");
        assert!(err.to_string().contains("unable to parse"), "{bad:?}: {err}");
    }
    // The valid line of the first batch was kept (InfluxDB 1.x writes the good lines).
    let rows = common::influxql_get(&db.url, &db.name, r#"SELECT "v" FROM "m""#).await;
    assert_eq!(rows["results"][0]["series"][0]["values"], json!([[1, 1]]), "{rows}");

    // Type conflict: a 400 with InfluxDB's own words.
    w.write_lines("c v=1i 1\n").await.unwrap();
    let err = w.write_lines("c v=1.5 2\n").await.unwrap_err();
    assert!(err.to_string().contains("field type conflict"), "{err}");

    // Nothing listening: retried, then retryable.
    let dead = "http://127.0.0.1:9";
    let err = v1(dead, "x", Auth::None, true).write_lines(&body).await.unwrap_err();
    assert!(err.is_retryable() && err.to_string().contains("cannot reach"), "{err}");
    let store = open_store(&common::store_config(&format!(
        "kind = \"influxdb\"\nurl = \"{dead}\"\napi = \"v1\"\ndatabase = \"x\"\n"
    )))
    .await
    .unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().starts_with("cannot reach InfluxDB at http://127.0.0.1:9: ")
            && err.to_string().ends_with("is it running?"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_credentials_against_influxdb_with_authentication() {
    let server = common::PrivateInfluxd::with_admin("wl").await;
    let body = encode_batch(&hostile_points()).unwrap();

    let good = Auth::Basic { username: "admin".into(), password: Secret::new("right-pw") };
    v1(&server.url, "wl", good, true).write_lines(&body).await.unwrap();

    for auth in [
        Auth::Basic { username: "admin".into(), password: Secret::new("wrong-pw") },
        Auth::None,
        Auth::Token(Secret::new("not-a-token")),
    ] {
        let err = v1(&server.url, "wl", auth.clone(), true).write_lines(&body).await.unwrap_err();
        assert!(matches!(err, WriteError::Auth { status: 401, .. }), "{auth:?}: {err}");
        assert!(!err.to_string().contains("wrong-pw"));
    }

    let cfg = |pw: &str| {
        common::store_config(&format!(
            "kind = \"influxdb\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"wl\"\nusername = \"admin\"\npassword = \"{pw}\"\n",
            server.url
        ))
    };
    let err = open_store(&cfg("wrong-pw")).await.unwrap().ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Auth(_)), "{err}");
    assert!(err.to_string().contains("credentials"), "{err}");
    let store = open_store(&cfg("right-pw")).await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.tag_values("gpu power,x", "host").await.unwrap(), ["rig 1,a=b", "rig 2"]);
}

#[tokio::test]
async fn a_real_413_splits_the_batch_and_loses_nothing() {
    // influxd answers 413 to bodies over max-body-size (counted after gunzip).
    let server = common::PrivateInfluxd::start(false, 2_000).await;
    common::influxql_post(&server.url, "CREATE DATABASE wl").await;
    let points: Vec<Point> = (0..200)
        .map(|i| {
            Point::new("split", T0 + i)
                .tag("host", format!("rig-{}", i % 7))
                .field("power_w", i as f64)
                .field("note", "x".repeat(20))
        })
        .collect();
    let body = encode_batch(&points).unwrap();
    assert!(body.len() > 10_000);
    v1(&server.url, "wl", Auth::None, true).write_lines(&body).await.unwrap();
    let rows = common::influxql_get(&server.url, "wl", r#"SELECT count("power_w"), sum("power_w") FROM "split""#).await;
    assert_eq!(rows["results"][0]["series"][0]["values"][0][1], json!(200), "{rows}");
    assert_eq!(rows["results"][0]["series"][0]["values"][0][2], json!((0..200).sum::<i32>()));

    // A single line over the limit is refused, with the reason.
    let huge = encode_batch(&[Point::new("split", T0).field("note", "y".repeat(5_000))]).unwrap();
    let err = v1(&server.url, "wl", Auth::None, false).write_lines(&huge).await.unwrap_err();
    assert!(matches!(err, WriteError::Rejected { .. }) && err.to_string().contains("too large"), "{err}");
}
