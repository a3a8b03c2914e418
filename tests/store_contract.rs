//! The store contract: one set of checks that every [`Store`] implementation must
//! pass, run here against the embedded SQLite store and against a real InfluxDB
//! (the shared influxd 1.6 test server, v1 writes + InfluxQL reads, one fresh
//! database per test).

mod common;

use std::collections::BTreeMap;

use wattledger::model::{FieldValue, Point};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{Aggregate, GroupedQuery, RowVisitor, SeriesQuery, Store, StoreError};

const T0: i64 = 1_700_000_000_000_000_000;
const S: i64 = 1_000_000_000;

/// What a store may legitimately do differently.
#[derive(Clone, Copy)]
struct Caps {
    /// InfluxDB 1.x has no unsigned integers; its store writes them as integers.
    unsigned: bool,
}

fn q(measurement: &str, fields: &[&str], filters: &[(&str, &str)], start_ns: i64, end_ns: i64) -> SeriesQuery {
    SeriesQuery {
        measurement: measurement.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        tag_filters: filters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        start_ns,
        end_ns,
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn overwrite_merges_and_replays_are_idempotent(store: &dyn Store) {
    let a = Point::new("merge", T0).tag("host", "h1").field("a", 1.5).field("b", 2i64);
    let b = Point::new("merge", T0).tag("host", "h1").field("b", 3i64).field("c", "x");
    let later = Point::new("merge", T0 + S).tag("host", "h1").field("a", 9.0);
    store.write(&[a.clone(), later.clone()]).await.unwrap();
    store.write(std::slice::from_ref(&b)).await.unwrap();
    // Replaying the whole history changes nothing.
    store.write(&[a.clone(), later.clone()]).await.unwrap();
    store.write(std::slice::from_ref(&b)).await.unwrap();
    let got = store.read(&q("merge", &["a", "b", "c"], &[], T0, T0 + 10 * S)).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let s = &got[0];
    assert_eq!(s.tags, tags(&[("host", "h1")]));
    assert_eq!(s.fields, ["a", "b", "c"]);
    assert_eq!(s.times_ns, [T0, T0 + S]);
    assert_eq!(
        s.values[0],
        vec![Some(FieldValue::Float(1.5)), Some(FieldValue::Int(3)), Some(FieldValue::Str("x".into()))]
    );
    assert_eq!(s.values[1], vec![Some(FieldValue::Float(9.0)), None, None]);
}

async fn tag_filters_select_series(store: &dyn Store) {
    let mut pts = Vec::new();
    for (host, gpu, v) in [("a", "0", 1.0), ("a", "1", 2.0), ("b", "0", 3.0)] {
        pts.push(Point::new("filt", T0).tag("host", host).tag("gpu", gpu).field("power_w", v));
        pts.push(Point::new("filt", T0 + S).tag("host", host).tag("gpu", gpu).field("power_w", v + 10.0));
    }
    pts.push(Point::new("other", T0).tag("host", "a").field("power_w", 99.0));
    store.write(&pts).await.unwrap();
    let all = store.read(&q("filt", &["power_w"], &[], T0, T0 + 2 * S)).await.unwrap();
    let keys: Vec<_> = all.iter().map(|s| s.tags.clone()).collect();
    assert_eq!(
        keys,
        vec![
            tags(&[("gpu", "0"), ("host", "a")]),
            tags(&[("gpu", "0"), ("host", "b")]),
            tags(&[("gpu", "1"), ("host", "a")]),
        ],
        "series sorted by tag set"
    );
    let host_a = store.read(&q("filt", &["power_w"], &[("host", "a")], T0, T0 + 2 * S)).await.unwrap();
    assert_eq!(host_a.len(), 2);
    let one = store.read(&q("filt", &["power_w"], &[("host", "a"), ("gpu", "1")], T0, T0 + 2 * S)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].times_ns, [T0, T0 + S]);
    assert_eq!(one[0].values, vec![vec![Some(FieldValue::Float(2.0))], vec![Some(FieldValue::Float(12.0))]]);
    let none = store.read(&q("filt", &["power_w"], &[("host", "zzz")], T0, T0 + 2 * S)).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
    let missing = store.read(&q("no_such_measurement", &["power_w"], &[], T0, T0 + 2 * S)).await.unwrap();
    assert!(missing.is_empty());
}

async fn time_range_is_start_inclusive_end_exclusive(store: &dyn Store) {
    let pts: Vec<Point> = (0..5).map(|i| Point::new("range", T0 + i * S).field("v", i)).collect();
    store.write(&pts).await.unwrap();
    let got = store.read(&q("range", &["v"], &[], T0 + S, T0 + 3 * S)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].times_ns, [T0 + S, T0 + 2 * S]);
    assert_eq!(got[0].values, vec![vec![Some(FieldValue::Int(1))], vec![Some(FieldValue::Int(2))]]);
    let empty = store.read(&q("range", &["v"], &[], T0 + 10 * S, T0 + 20 * S)).await.unwrap();
    assert!(empty.is_empty());
    // Written out of order, read back in time order.
    let rev: Vec<Point> = (0..5).rev().map(|i| Point::new("range_rev", T0 + i * S).field("v", i)).collect();
    store.write(&rev).await.unwrap();
    let got = store.read(&q("range_rev", &["v"], &[], T0, T0 + 5 * S)).await.unwrap();
    assert_eq!(got[0].times_ns, (0..5).map(|i| T0 + i * S).collect::<Vec<_>>());
}

async fn field_types_survive(store: &dyn Store, caps: Caps) {
    let big = (1i64 << 62) + 1; // not representable as f64
    let p = Point::new("types", T0)
        .field("f", -0.1)
        .field("i", big)
        .field("neg", -7i64)
        .field("u", 42u64)
        .field("yes", true)
        .field("no", false)
        .field("s", "quote \" backslash \\ comma, equals= newline\n unicode é 🔋")
        .field("whole_float", 3.0);
    store.write(&[p]).await.unwrap();
    let names = ["f", "i", "neg", "u", "yes", "no", "s", "whole_float"];
    let got = store.read(&q("types", &names, &[], T0, T0 + 1)).await.unwrap();
    assert_eq!(got.len(), 1);
    let unsigned = if caps.unsigned { FieldValue::UInt(42) } else { FieldValue::Int(42) };
    assert_eq!(
        got[0].values[0],
        vec![
            Some(FieldValue::Float(-0.1)),
            Some(FieldValue::Int(big)),
            Some(FieldValue::Int(-7)),
            Some(unsigned),
            Some(FieldValue::Bool(true)),
            Some(FieldValue::Bool(false)),
            Some(FieldValue::Str("quote \" backslash \\ comma, equals= newline\n unicode é 🔋".into())),
            Some(FieldValue::Float(3.0)),
        ]
    );
}

async fn escaping_heavy_names_round_trip(store: &dyn Store) {
    let m = "m e,a=s \"q\"";
    let p = Point::new(m, T0)
        .tag("t k,=", "v a,l=ue \"q\" C:\\x é")
        .tag("site", "s 1")
        .field("f i,e=ld", 1i64)
        .field("plain", "x");
    store.write(&[p]).await.unwrap();
    let got =
        store.read(&q(m, &["f i,e=ld", "plain"], &[("t k,=", "v a,l=ue \"q\" C:\\x é")], T0, T0 + 1)).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].tags, tags(&[("site", "s 1"), ("t k,=", "v a,l=ue \"q\" C:\\x é")]));
    assert_eq!(got[0].values, vec![vec![Some(FieldValue::Int(1)), Some(FieldValue::Str("x".into()))]]);
    assert_eq!(store.tag_values(m, "t k,=").await.unwrap(), ["v a,l=ue \"q\" C:\\x é"]);
}

async fn tag_values_are_distinct_and_sorted(store: &dyn Store) {
    let pts: Vec<Point> = ["rig-b", "rig-a", "rig-c", "rig-a"]
        .iter()
        .enumerate()
        .map(|(i, h)| Point::new("tv", T0 + i as i64).tag("host", *h).tag("site", "x").field("v", 1.0))
        .collect();
    store.write(&pts).await.unwrap();
    store.write(&[Point::new("tv_other", T0).tag("host", "elsewhere").field("v", 1.0)]).await.unwrap();
    assert_eq!(store.tag_values("tv", "host").await.unwrap(), ["rig-a", "rig-b", "rig-c"]);
    assert_eq!(store.tag_values("tv", "site").await.unwrap(), ["x"]);
    assert!(store.tag_values("tv", "nope").await.unwrap().is_empty());
    assert!(store.tag_values("no_such_measurement", "host").await.unwrap().is_empty());
}

async fn rows_without_selected_fields_are_left_out(store: &dyn Store) {
    store
        .write(&[
            Point::new("sparse", T0).field("a", 1.0),
            Point::new("sparse", T0 + S).field("b", 2.0),
            Point::new("sparse", T0 + 2 * S).field("a", 3.0).field("b", 4.0),
        ])
        .await
        .unwrap();
    let got = store.read(&q("sparse", &["a"], &[], T0, T0 + 10 * S)).await.unwrap();
    assert_eq!(got[0].times_ns, [T0, T0 + 2 * S]);
    // No fields named: every field, sorted by name.
    let all = store.read(&q("sparse", &[], &[], T0, T0 + 10 * S)).await.unwrap();
    assert_eq!(all[0].fields, ["a", "b"]);
    assert_eq!(all[0].times_ns.len(), 3);
    assert_eq!(all[0].values[1], vec![None, Some(FieldValue::Float(2.0))]);
}

async fn invalid_points_are_refused_and_nothing_is_written(store: &dyn Store) {
    let good = Point::new("invalid", T0).tag("host", "h").field("v", 1.0);
    for bad in [
        Point::new("invalid", T0 + 1).field("v", f64::NAN),
        Point::new("invalid", T0 + 1),
        Point::new("invalid", T0 + 1).tag("host", "ends\\").field("v", 1.0),
    ] {
        let err = store.write(&[good.clone(), bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    assert!(store.read(&q("invalid", &["v"], &[], T0, T0 + S)).await.unwrap().is_empty());
}

async fn ping_answers(store: &dyn Store) {
    store.ping().await.unwrap();
}

/// Runs every contract check; each uses its own measurement names.
async fn contract(store: &dyn Store, caps: Caps) {
    ping_answers(store).await;
    overwrite_merges_and_replays_are_idempotent(store).await;
    tag_filters_select_series(store).await;
    time_range_is_start_inclusive_end_exclusive(store).await;
    field_types_survive(store, caps).await;
    escaping_heavy_names_round_trip(store).await;
    tag_values_are_distinct_and_sorted(store).await;
    rows_without_selected_fields_are_left_out(store).await;
    invalid_points_are_refused_and_nothing_is_written(store).await;
}

#[tokio::test]
async fn embedded_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("sub/store.db")).unwrap();
    contract(&store, Caps { unsigned: true }).await;
}

#[tokio::test]
async fn embedded_store_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.write(&[Point::new("persist", T0).tag("host", "a").field("v", 1.0)]).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    store.write(&[Point::new("persist", T0).tag("host", "a").field("w", 2i64)]).await.unwrap();
    let got = store.read(&q("persist", &["v", "w"], &[], T0, T0 + 1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].values, vec![vec![Some(FieldValue::Float(1.0)), Some(FieldValue::Int(2))]]);
}

#[tokio::test]
async fn influxdb_store_passes_the_contract() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    contract(store.as_ref(), Caps { unsigned: false }).await;
}

#[tokio::test]
async fn influxdb_store_reads_ranges_larger_than_one_chunk() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    large_range(store.as_ref()).await;
}

#[tokio::test]
async fn embedded_store_reads_large_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.db")).unwrap();
    large_range(&store).await;
}

/// 25,000 rows in two series: more than InfluxQL's 10,000-row chunks.
async fn large_range(store: &dyn Store) {
    let n = 12_500i64;
    let pts: Vec<Point> = (0..n)
        .flat_map(|i| {
            ["a", "b"].map(|h| Point::new("big", T0 + i * S).tag("host", h).field("v", i).field("w", i as f64 / 2.0))
        })
        .collect();
    store.write(&pts).await.unwrap();
    let got = store.read(&q("big", &["v", "w"], &[], T0, T0 + n * S)).await.unwrap();
    assert_eq!(got.len(), 2);
    for s in &got {
        assert_eq!(s.times_ns.len(), n as usize);
        assert!(s.times_ns.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            s.values[n as usize - 1],
            vec![Some(FieldValue::Int(n - 1)), Some(FieldValue::Float((n - 1) as f64 / 2.0))]
        );
    }
}

/// Folds a streaming read without keeping rows: per series its tags, row count,
/// last time (rows of a series must come in time order), and sum of `v`.
#[derive(Default)]
struct Folded {
    series: Vec<(BTreeMap<String, String>, usize, i64, i64)>,
    out_of_order: usize,
}

impl RowVisitor for Folded {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        assert_eq!(series, self.series.len(), "series are numbered in order of first appearance");
        self.series.push((tags.clone(), 0, i64::MIN, 0));
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let s = &mut self.series[series];
        if time_ns <= s.2 {
            self.out_of_order += 1;
        }
        s.1 += 1;
        s.2 = time_ns;
        if let Some(FieldValue::Int(v)) = values[0] {
            s.3 += v;
        }
    }
}

/// A streaming read sees the same rows as `read`, each series in time order,
/// across InfluxQL's chunks, with the tag filter applied.
async fn streaming_read_folds_every_row(store: &dyn Store) {
    let n = 12_500i64;
    let pts: Vec<Point> = (0..n)
        .flat_map(|i| {
            ["a", "b", "c"].map(|h| {
                Point::new("stream", T0 + i * S)
                    .tag("host", h)
                    .tag("wl", if h == "c" { "y" } else { "x" })
                    .field("v", i)
            })
        })
        .collect();
    store.write(&pts).await.unwrap();
    let mut folded = Folded::default();
    store.read_each(&q("stream", &["v", "missing"], &[("wl", "x")], T0, T0 + n * S), &mut folded).await.unwrap();
    assert_eq!(folded.out_of_order, 0);
    folded.series.sort_by(|a, b| a.0.cmp(&b.0));
    let want_sum = n * (n - 1) / 2;
    assert_eq!(
        folded.series,
        vec![
            (tags(&[("host", "a"), ("wl", "x")]), n as usize, T0 + (n - 1) * S, want_sum),
            (tags(&[("host", "b"), ("wl", "x")]), n as usize, T0 + (n - 1) * S, want_sum),
        ]
    );
    // A streaming read names its fields.
    let err = store.read_each(&q("stream", &[], &[], T0, T0 + S), &mut Folded::default()).await.unwrap_err();
    assert!(err.to_string().contains("name the fields"), "{err}");
}

#[tokio::test]
async fn embedded_store_streams_reads() {
    let store = EmbeddedStore::open_in_memory().unwrap();
    streaming_read_folds_every_row(&store).await;
}

#[tokio::test]
async fn influxdb_store_streams_reads() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    streaming_read_folds_every_row(store.as_ref()).await;
}

/// One bucket of a grouped read: its start and its aggregates.
type Bucket = (i64, Vec<Option<f64>>);

/// Collects a grouped read: per series tags, its buckets in order of arrival.
#[derive(Default)]
struct Buckets {
    tags: Vec<BTreeMap<String, String>>,
    rows: BTreeMap<usize, Vec<Bucket>>,
}

impl RowVisitor for Buckets {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.tags.len() <= series {
            self.tags.resize(series + 1, BTreeMap::new());
        }
        self.tags[series] = tags.clone();
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let v = values.iter().map(|v| v.as_ref().and_then(FieldValue::as_f64)).collect();
        self.rows.entry(series).or_default().push((time_ns, v));
    }
}

impl Buckets {
    fn by_tags(self) -> BTreeMap<BTreeMap<String, String>, Vec<Bucket>> {
        let Buckets { tags, rows } = self;
        rows.into_iter().map(|(i, r)| (tags[i].clone(), r)).collect()
    }
}

/// The ledger's shape: per series and 1 h bucket, sums of a float and an integer
/// field, a max, counts, and min/max of another field, with the tag filter and
/// range applied, buckets without rows left out and a field absent from a
/// bucket reading as none.
async fn grouped_reads_sum_per_series_and_bucket(store: &dyn Store) {
    const H: i64 = 3600 * S;
    let t0 = T0 - T0.rem_euclid(H);
    let mut pts = Vec::new();
    // Host a: a point every 10 min for 3 h; host b: only in the first hour;
    // host c: another workload.
    for (host, wl, hours) in [("a", "x", 3), ("b", "x", 1), ("c", "y", 3)] {
        for i in 0..hours * 6 {
            let mut p = Point::new("grouped", t0 + i * 600 * S)
                .tag("host", host)
                .tag("wl", wl)
                .field("e", 1.5 * (i + 1) as f64)
                .field("n", i)
                .field("gap", if i == 7 { 30.0 } else { 90.0 });
            if i % 2 == 0 {
                p = p.field("busy", 60.0);
            }
            pts.push(p);
        }
    }
    store.write(&pts).await.unwrap();
    let q = GroupedQuery {
        measurement: "grouped".into(),
        tag_filters: vec![("wl".into(), "x".into())],
        // The range starts after the first point: it is not counted.
        start_ns: t0 + 1,
        end_ns: t0 + 3 * H,
        bucket_ns: H,
        aggregates: vec![
            (Aggregate::Sum, "e".into()),
            (Aggregate::Sum, "n".into()),
            (Aggregate::Max, "e".into()),
            (Aggregate::Count, "busy".into()),
            (Aggregate::Min, "gap".into()),
            (Aggregate::Max, "gap".into()),
            (Aggregate::Count, "absent".into()),
        ],
    };
    let mut got = Buckets::default();
    store.read_grouped(&q, &mut got).await.unwrap();
    let got = got.by_tags();
    assert_eq!(got.len(), 2, "{got:?}");
    let a = &got[&tags(&[("host", "a"), ("wl", "x")])];
    // Hour 0 holds points 1..=5 (point 0 is before the range), hour 1 points
    // 6..=11, hour 2 points 12..=17.
    let e = |r: std::ops::RangeInclusive<i64>| r.map(|i| 1.5 * (i + 1) as f64).sum::<f64>();
    let n = |r: std::ops::RangeInclusive<i64>| r.sum::<i64>() as f64;
    assert_eq!(
        a.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![t0, t0 + H, t0 + 2 * H],
        "buckets are stamped at their start, in order"
    );
    assert_eq!(a[0].1[..4], [Some(e(1..=5)), Some(n(1..=5)), Some(9.0), Some(2.0)]);
    assert_eq!(a[1].1[..6], [Some(e(6..=11)), Some(n(6..=11)), Some(18.0), Some(3.0), Some(30.0), Some(90.0)]);
    assert_eq!(a[2].1[4..], [Some(90.0), Some(90.0), None]);
    let b = &got[&tags(&[("host", "b"), ("wl", "x")])];
    assert_eq!(b.len(), 1, "empty buckets are left out: {b:?}");
}

/// `series_keys` names every series with a row in the range (a superset is
/// allowed, so only what must be there and what must not is checked: a series of
/// another workload, or with rows only far outside the range).
async fn series_keys_find_the_series_of_a_range(store: &dyn Store) {
    const D: i64 = 86_400 * S;
    let t0 = T0 - T0.rem_euclid(D);
    let pts = vec![
        Point::new("keys", t0 + 10 * S).tag("host", "a").tag("wl", "x").field("v", 1.0),
        Point::new("keys", t0 + 20 * S).tag("host", "b").tag("wl", "x").field("v", 1.0),
        Point::new("keys", t0 + 20 * S).tag("host", "c").tag("wl", "y").field("v", 1.0),
        // Sixty days later: in another InfluxDB shard and another hour.
        Point::new("keys", t0 + 60 * D).tag("host", "late").tag("wl", "x").field("v", 1.0),
    ];
    store.write(&pts).await.unwrap();
    let got = store.series_keys(&q("keys", &["v"], &[("wl", "x")], t0, t0 + 60 * S)).await.unwrap();
    assert_eq!(got, vec![tags(&[("host", "a"), ("wl", "x")]), tags(&[("host", "b"), ("wl", "x")])]);
    let late = store.series_keys(&q("keys", &["v"], &[], t0 + 60 * D, t0 + 60 * D + S)).await.unwrap();
    assert_eq!(late, vec![tags(&[("host", "late"), ("wl", "x")])]);
    assert!(store.series_keys(&q("nothing", &["v"], &[], t0, t0 + D)).await.unwrap().is_empty());
}

/// `read_each_any` reads only the series matching one of the alternatives.
async fn read_each_any_selects_alternatives(store: &dyn Store) {
    let pts: Vec<Point> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .flat_map(|(k, h)| {
            (0..3).map(move |i| {
                Point::new("any", T0 + i * S).tag("host", *h).tag("gpu", k.to_string()).tag("wl", "x").field("v", i)
            })
        })
        .collect();
    store.write(&pts).await.unwrap();
    let alternatives = vec![
        vec![("host".to_string(), "a".to_string())],
        vec![("host".to_string(), "c".to_string()), ("gpu".to_string(), "2".to_string())],
        // Matches nothing: host d is gpu 3.
        vec![("host".to_string(), "d".to_string()), ("gpu".to_string(), "0".to_string())],
    ];
    let mut folded = Folded::default();
    store.read_each_any(&q("any", &["v"], &[("wl", "x")], T0, T0 + 10 * S), &alternatives, &mut folded).await.unwrap();
    folded.series.sort_by(|a, b| a.0.cmp(&b.0));
    let hosts: Vec<(&str, usize)> = folded.series.iter().map(|s| (s.0["host"].as_str(), s.1)).collect();
    assert_eq!(hosts, vec![("a", 3), ("c", 3)]);
    let mut none = Folded::default();
    store.read_each_any(&q("any", &["v"], &[], T0, T0 + 10 * S), &[], &mut none).await.unwrap();
    assert!(none.series.is_empty());
}

async fn read_side_contract(store: &dyn Store) {
    grouped_reads_sum_per_series_and_bucket(store).await;
    series_keys_find_the_series_of_a_range(store).await;
    read_each_any_selects_alternatives(store).await;
}

#[tokio::test]
async fn embedded_store_groups_finds_and_selects_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.db")).unwrap();
    read_side_contract(&store).await;
}

#[tokio::test]
async fn influxdb_store_groups_finds_and_selects_series() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    read_side_contract(store.as_ref()).await;
}

/// A store written by a version without the series-per-hour index gains it on
/// open, from the points it has.
#[tokio::test]
async fn embedded_store_indexes_an_older_file_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.write(&[Point::new("old", T0).tag("host", "a").field("v", 1.0)]).await.unwrap();
    }
    {
        // Back to the version 2 layout: no index rows, version 2.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DELETE FROM series_hours; PRAGMA user_version = 2;").unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    let got = store.series_keys(&q("old", &["v"], &[], T0, T0 + S)).await.unwrap();
    assert_eq!(got, vec![tags(&[("host", "a")])]);
}

/// Counts the values a streaming read hands on: what [`Store::count`] must give.
#[derive(Default)]
struct CountValues(u64);

impl RowVisitor for CountValues {
    fn series(&mut self, _: usize, _: &BTreeMap<String, String>) {}
    fn row(&mut self, _: usize, _: i64, values: &[Option<FieldValue>]) {
        self.0 += values.iter().filter(|v| v.is_some()).count() as u64;
    }
}

/// The grouped read and the count of the embedded store answer whole hours from
/// its per-hour summaries. They must give what folding the points themselves
/// gives (a streaming read through [`wattledger::store::Grouper`]), to the bit,
/// after points written out of time order, merges that add a field, merges that
/// change a value, replays, and over ranges that do and do not start and end on
/// an hour.
#[tokio::test]
async fn embedded_store_hour_summaries_give_what_the_points_give() {
    const H: i64 = 3600 * S;
    let t0 = T0 - T0.rem_euclid(H);
    let store = EmbeddedStore::open_in_memory().unwrap();
    // Four hosts, a point every 7 minutes over 4 hours, with values whose sums
    // depend on their order.
    let point = |host: &str, i: i64| {
        Point::new("sums", t0 + i * 420 * S)
            .tag("host", host)
            .tag("wl", "x")
            .field("e", 0.1 * (i as f64 + 1.0) + 1e-3 / (i as f64 + 3.0))
            .field("n", i)
            .field("s", "ok")
    };
    let hosts = ["a", "b", "c", "d"];
    for chunk in (0..35).collect::<Vec<i64>>().chunks(4) {
        let batch: Vec<Point> = chunk.iter().flat_map(|&i| hosts.iter().map(move |h| point(h, i))).collect();
        store.write(&batch).await.unwrap();
    }
    // Host a: a point missed earlier arrives late, into hour 1.
    store
        .write(&[Point::new("sums", t0 + H + 60 * S).tag("host", "a").tag("wl", "x").field("e", 0.7).field("n", 99i64)])
        .await
        .unwrap();
    // Host b: a merge changes a value in hour 2; host c: one adds a field to a
    // point of hour 0; host d: its first hour replayed as it was.
    store.write(&[point("b", 18).field("e", 5.5)]).await.unwrap();
    store.write(&[Point::new("sums", t0 + 420 * S).tag("host", "c").tag("wl", "x").field("extra", 2.0)]).await.unwrap();
    store.write(&(0..9).map(|i| point("d", i)).collect::<Vec<_>>()).await.unwrap();
    // Another workload's series must not count.
    store.write(&[Point::new("sums", t0 + 10 * S).tag("host", "z").tag("wl", "y").field("e", 1.0)]).await.unwrap();

    let aggregates = vec![
        (Aggregate::Sum, "e".to_string()),
        (Aggregate::Min, "e".to_string()),
        (Aggregate::Max, "n".to_string()),
        (Aggregate::Sum, "n".to_string()),
        (Aggregate::Count, "s".to_string()),
        (Aggregate::Count, "extra".to_string()),
        (Aggregate::Sum, "s".to_string()),
    ];
    // The last ranges end inside an hour they hold the start of (a live window):
    // after every series' last point of that hour (its summary serves), between
    // two points (read from the points), and just after its first point.
    let ranges = [
        (t0, t0 + 4 * H),
        (t0 + 1, t0 + 4 * H),
        (t0 + 1800 * S, t0 + 3 * H + 90 * S),
        (t0 + H, t0 + 2 * H),
        (t0, t0 + 4 * H - 1),
        (t0 + 3 * H, t0 + 4 * H - 1),
        (t0 + 1800 * S, t0 + 3 * H + 1800 * S),
        (t0 + 3 * H, t0 + 3 * H + 121 * S),
    ];
    for (start_ns, end_ns) in ranges {
        for bucket_ns in [H, 2 * H, 1800 * S] {
            let gq = GroupedQuery {
                measurement: "sums".into(),
                tag_filters: vec![("wl".into(), "x".into())],
                start_ns,
                end_ns,
                bucket_ns,
                aggregates: aggregates.clone(),
            };
            let mut got = Buckets::default();
            store.read_grouped(&gq, &mut got).await.unwrap();
            let mut want = Buckets::default();
            {
                let mut grouper = wattledger::store::Grouper::new(&gq, &mut want);
                store.read_each(&gq.rows_query(), &mut grouper).await.unwrap();
                grouper.finish();
            }
            let (got, want) = (got.by_tags(), want.by_tags());
            assert_eq!(got.len(), 4);
            if bucket_ns == H || bucket_ns == 1800 * S {
                // One hour summary per bucket (or none): the same to the bit.
                assert_eq!(got, want, "range {start_ns}..{end_ns}, bucket {bucket_ns}");
            } else {
                // Two hours' sums added: the same up to the order of additions.
                assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
                for (tags, buckets) in &got {
                    let other = &want[tags];
                    assert_eq!(buckets.len(), other.len());
                    for (g, w) in buckets.iter().zip(other) {
                        assert_eq!(g.0, w.0);
                        for (x, y) in g.1.iter().zip(&w.1) {
                            match (x, y) {
                                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-12 * y.abs(), "{x} vs {y}"),
                                _ => assert_eq!(x, y),
                            }
                        }
                    }
                }
            }
            for fields in [&["e"][..], &["e", "n", "s", "extra"], &["extra", "absent"]] {
                let rq = q("sums", fields, &[("wl", "x")], start_ns, end_ns);
                let mut rows = CountValues::default();
                store.read_each(&rq, &mut rows).await.unwrap();
                assert_eq!(store.count(&rq).await.unwrap(), rows.0, "{fields:?} over {start_ns}..{end_ns}");
            }
        }
    }
    // The late point is in: host a has 9 + 1 points in hour 1.
    let rq = q("sums", &["n"], &[("wl", "x"), ("host", "a")], t0 + H, t0 + 2 * H);
    assert_eq!(store.count(&rq).await.unwrap(), 10);
}

/// What the embedded store's summaries answer for `measurement` over `range`
/// (per-hour grouped sums and counts, counts, series) must be what its points
/// give.
async fn assert_summaries_match_points(store: &EmbeddedStore, measurement: &str, (start_ns, end_ns): (i64, i64)) {
    let gq = GroupedQuery {
        measurement: measurement.into(),
        tag_filters: vec![],
        start_ns,
        end_ns,
        bucket_ns: 3600 * S,
        aggregates: vec![(Aggregate::Sum, "e".into()), (Aggregate::Count, "e".into()), (Aggregate::Max, "e".into())],
    };
    let mut got = Buckets::default();
    store.read_grouped(&gq, &mut got).await.unwrap();
    let mut want = Buckets::default();
    {
        let mut grouper = wattledger::store::Grouper::new(&gq, &mut want);
        store.read_each(&gq.rows_query(), &mut grouper).await.unwrap();
        grouper.finish();
    }
    let want = want.by_tags();
    assert!(!want.is_empty());
    assert_eq!(got.by_tags(), want);
    let rq = q(measurement, &["e"], &[], start_ns, end_ns);
    let mut rows = CountValues::default();
    store.read_each(&rq, &mut rows).await.unwrap();
    assert_eq!(store.count(&rq).await.unwrap(), rows.0);
    let keys = store.series_keys(&rq).await.unwrap();
    assert_eq!(keys, want.keys().cloned().collect::<Vec<_>>());
}

/// Hour summaries wait in memory between batches. A store that ends without
/// writing them (a crash: here the store is leaked, so it never closes) loses
/// nothing: the next open rebuilds the hours it had listed from their points.
#[tokio::test]
async fn embedded_store_rebuilds_the_summaries_a_crash_left_unwritten() {
    const H: i64 = 3600 * S;
    let t0 = T0 - T0.rem_euclid(H);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let point =
        |host: &str, i: i64| Point::new("crash", t0 + i * 300 * S).tag("host", host).field("e", 0.5 * i as f64 + 0.1);
    {
        let store = EmbeddedStore::open(&path).unwrap();
        // Hour 0 is written out when the writes move into hour 1 (or a read
        // asks); hour 1 stays in memory only.
        for i in 0..20 {
            store.write(&[point("a", i), point("b", i)]).await.unwrap();
        }
        store.write(&[point("c", 3)]).await.unwrap();
        std::mem::forget(store);
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.count(&q("crash", &["e"], &[], t0, t0 + 2 * H)).await.unwrap(), 41);
    assert_summaries_match_points(&store, "crash", (t0, t0 + 2 * H)).await;
}

/// Two stores on one file (two processes, say the aggregator and `report`):
/// each notices the other's commits and never serves or extends a stale
/// summary.
#[tokio::test]
async fn embedded_store_summaries_stay_true_with_two_writers_on_one_file() {
    const H: i64 = 3600 * S;
    let t0 = T0 - T0.rem_euclid(H);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let a = EmbeddedStore::open(&path).unwrap();
    let b = EmbeddedStore::open(&path).unwrap();
    let point =
        |host: &str, i: i64| Point::new("two", t0 + i * 240 * S).tag("host", host).field("e", 1.0 + i as f64 / 7.0);
    for i in 0..25 {
        // Both write the same series and hours, and both read in between.
        let (writer, reader) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
        writer.write(&[point("x", i), point(if i % 2 == 0 { "y" } else { "z" }, i)]).await.unwrap();
        if i % 4 == 1 {
            assert_summaries_match_points(reader, "two", (t0, t0 + 2 * H)).await;
        }
    }
    assert_summaries_match_points(&a, "two", (t0, t0 + 2 * H)).await;
    assert_summaries_match_points(&b, "two", (t0, t0 + 2 * H)).await;
    assert_eq!(a.count(&q("two", &["e"], &[], t0, t0 + 2 * H)).await.unwrap(), 50);
}

/// A file of schema version 3 (`series_hours` without summaries) gains them on
/// open, from its points: counts and grouped reads over whole hours are right.
#[tokio::test]
async fn embedded_store_summarises_a_version_3_file_on_open() {
    const H: i64 = 3600 * S;
    let t0 = T0 - T0.rem_euclid(H);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let pts: Vec<Point> = (0..12)
        .flat_map(|i| {
            ["a", "b"].map(|h| Point::new("v3", t0 + i * 900 * S).tag("host", h).field("e", 0.25 * i as f64 + 0.1))
        })
        .collect();
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.write(&pts).await.unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "DROP TABLE series_hours;
             CREATE TABLE series_hours (
                 measurement_id INTEGER NOT NULL,
                 hour_ns INTEGER NOT NULL,
                 series_id INTEGER NOT NULL,
                 PRIMARY KEY (measurement_id, hour_ns, series_id)) WITHOUT ROWID;
             INSERT INTO series_hours SELECT DISTINCT measurement_id, {t0}, series_id FROM points;
             PRAGMA user_version = 3;"
        ))
        .unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.count(&q("v3", &["e"], &[], t0, t0 + 3 * H)).await.unwrap(), 24);
    assert_eq!(store.count(&q("v3", &["e"], &[("host", "a")], t0 + H, t0 + 2 * H)).await.unwrap(), 4);
    let gq = GroupedQuery {
        measurement: "v3".into(),
        tag_filters: vec![("host".into(), "b".into())],
        start_ns: t0,
        end_ns: t0 + 3 * H,
        bucket_ns: H,
        aggregates: vec![(Aggregate::Sum, "e".into()), (Aggregate::Count, "e".into())],
    };
    let mut got = Buckets::default();
    store.read_grouped(&gq, &mut got).await.unwrap();
    let got = got.by_tags();
    let e = |r: std::ops::Range<i64>| {
        r.map(|i| 0.25 * i as f64 + 0.1).fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a + v)))
    };
    assert_eq!(
        got[&tags(&[("host", "b")])],
        vec![
            (t0, vec![e(0..4), Some(4.0)]),
            (t0 + H, vec![e(4..8), Some(4.0)]),
            (t0 + 2 * H, vec![e(8..12), Some(4.0)])
        ]
    );
    // The new layout is kept: a second open does not rebuild, and writes go on.
    drop(store);
    let store = EmbeddedStore::open(&path).unwrap();
    store.write(&[Point::new("v3", t0 + 2 * H + 1).tag("host", "a").field("e", 1.0)]).await.unwrap();
    assert_eq!(store.count(&q("v3", &["e"], &[], t0, t0 + 3 * H)).await.unwrap(), 25);
}
