//! Line protocol and embedded-store throughput, side by side with InfluxData's
//! `influxdb-line-protocol` crate, in points per second (criterion's `elem/s`).
//!
//! `cargo bench --bench lineproto`
//!
//! Every benchmark runs twice: timed by the wall clock, and by the CPU time of the
//! benchmarking thread (`/proc/thread-self/schedstat`). On a busy shared machine the
//! wall clock mostly measures waiting for a core; CPU time is what one core needs.
//!
//! The points are typical GPU points: 6 tags, 10 fields (floats, integers, a string),
//! a nanosecond timestamp, as the agent ships them. Targets: at least 1 million
//! points/s encoded and parsed on one core, at least 200,000 points/s written into the
//! embedded store.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wattledger::model::schema::{gpu, TAG_HOST, TAG_SITE, TAG_WORKLOAD};
use wattledger::model::{FieldValue, Point};
use wattledger::ship::lineproto::{encode_batch, parse_with_default_time, Precision};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::SeriesQuery;

const BATCH: usize = 5_000;

/// Nanoseconds this thread has spent on a CPU (user and system).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux /proc/thread-self/schedstat");
    stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("schedstat starts with on-CPU ns")
}

fn wall_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU time of the benchmarking thread, formatted like wall time.
struct ThreadCpu {
    wall: WallTime,
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = Duration;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns() - start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

/// The clock a benchmark group is timed with, for the `iter_custom` loops.
trait Clock: Measurement<Value = Duration> {
    const LABEL: &'static str;
    fn now_ns() -> u64;
}

impl Clock for WallTime {
    const LABEL: &'static str = "wall";
    fn now_ns() -> u64 {
        wall_ns()
    }
}

impl Clock for ThreadCpu {
    const LABEL: &'static str = "thread CPU";
    fn now_ns() -> u64 {
        thread_cpu_ns()
    }
}
const T0: i64 = 1_700_000_000_000_000_000;

fn gpu_point(i: usize, time_ns: i64) -> Point {
    let f = i as f64;
    Point::new(gpu::MEASUREMENT, time_ns)
        .tag(TAG_SITE, "texas-1")
        .tag(TAG_HOST, format!("rig-{:03}", i / 8))
        .tag(gpu::TAG_GPU, (i % 8).to_string())
        .tag(gpu::TAG_UUID, format!("GPU-6f1c2a3b-4d5e-6f70-8192-a3b4c5d6{:04x}", i % 65536))
        .tag(gpu::TAG_MODEL, "NVIDIA H100 80GB HBM3")
        .tag(TAG_WORKLOAD, "h100-reserved")
        .field(gpu::POWER_W, 612.25 + f * 0.01)
        .field(gpu::ENERGY_J, 81_234_567_890i64 + i as i64)
        .field(gpu::UTIL_GPU_PCT, 97.0)
        .field(gpu::UTIL_MEM_PCT, 61.5)
        .field(gpu::MEM_USED_BYTES, 70_123_456_789i64)
        .field(gpu::MEM_TOTAL_BYTES, 85_899_345_920i64)
        .field(gpu::TEMP_C, 67.0)
        .field(gpu::SM_CLOCK_MHZ, 1980.0)
        .field(gpu::POWER_LIMIT_W, 700.0)
        .field(gpu::STATUS, "ok")
}

fn batch(offset: usize) -> Vec<Point> {
    (0..BATCH).map(|i| gpu_point(i, T0 + ((offset * BATCH + i) as i64) * 1_000_000)).collect()
}

/// The same points through InfluxData's builder.
fn encode_with_influxdata(points: &[Point]) -> Vec<u8> {
    use influxdb_line_protocol::LineProtocolBuilder;
    let mut b = LineProtocolBuilder::new_with(Vec::with_capacity(points.len() * 400));
    for p in points {
        let mut m = b.measurement(&p.measurement);
        for (k, v) in &p.tags {
            m = m.tag(k, v);
        }
        let mut fields = p.fields.iter();
        let (k, v) = fields.next().expect("a field");
        let mut f = match v {
            FieldValue::Float(x) => m.field(k, *x),
            FieldValue::Int(x) => m.field(k, *x),
            FieldValue::UInt(x) => m.field(k, *x),
            FieldValue::Bool(x) => m.field(k, *x),
            FieldValue::Str(x) => m.field(k, x.as_str()),
        };
        for (k, v) in fields {
            f = match v {
                FieldValue::Float(x) => f.field(k, *x),
                FieldValue::Int(x) => f.field(k, *x),
                FieldValue::UInt(x) => f.field(k, *x),
                FieldValue::Bool(x) => f.field(k, *x),
                FieldValue::Str(x) => f.field(k, x.as_str()),
            };
        }
        b = f.timestamp(p.time_ns).close_line();
    }
    b.build()
}

fn lineproto<M: Clock>(c: &mut Criterion<M>) {
    let points = batch(0);
    let body = encode_batch(&points).unwrap();
    assert_eq!(parse_with_default_time(&body, Precision::Ns, 0).unwrap(), points);
    assert_eq!(influxdb_line_protocol::parse_lines(&body).count(), BATCH);

    let mut g = c.benchmark_group(format!("encode ({})", M::LABEL));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("wattledger", |b| b.iter(|| encode_batch(black_box(&points)).unwrap()));
    g.bench_function("influxdb-line-protocol", |b| b.iter(|| encode_with_influxdata(black_box(&points))));
    g.finish();

    let mut g = c.benchmark_group(format!("parse ({})", M::LABEL));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("wattledger (to owned Points)", |b| {
        b.iter(|| parse_with_default_time(black_box(&body), Precision::Ns, 0).unwrap())
    });
    g.bench_function("influxdb-line-protocol (borrowed ParsedLines)", |b| {
        b.iter(|| influxdb_line_protocol::parse_lines(black_box(&body)).collect::<Result<Vec<_>, _>>().unwrap())
    });
    g.finish();
}

fn embedded_store<M: Clock>(c: &mut Criterion<M>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("bench.db")).unwrap();
    let mut round = 0usize;
    let mut g = c.benchmark_group(format!("embedded store write ({})", M::LABEL));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    // The aggregator reads about once a minute; at a batch every 5 s that is one
    // read per 12 batches, and each read first writes out the hour summaries the
    // batches held in memory. The second case counts that work too (a read of an
    // empty range: only the write-out before it is timed).
    let empty = SeriesQuery {
        measurement: gpu::MEASUREMENT.into(),
        fields: vec![],
        tag_filters: vec![],
        start_ns: T0,
        end_ns: T0,
    };
    let mut written = 0usize;
    for (name, read_every) in [
        ("new points, one transaction per 5000", None),
        ("new points, summaries written out every 12 batches", Some(12)),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let pts = batch(round);
                    let t = M::now_ns();
                    store.write_blocking(&pts).unwrap();
                    written += 1;
                    if read_every.is_some_and(|n| written % n == 0) {
                        store.series_keys_blocking(&empty).unwrap();
                    }
                    spent += Duration::from_nanos(M::now_ns() - t);
                }
                spent
            })
        });
    }
    let replay = batch(0);
    store.write_blocking(&replay).unwrap();
    g.bench_function("replayed points (merge path)", |b| b.iter(|| store.write_blocking(&replay).unwrap()));
    g.finish();
}

criterion_group! {
    name = wall;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = lineproto::<WallTime>, embedded_store::<WallTime>
}
criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(ThreadCpu { wall: WallTime })
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = lineproto::<ThreadCpu>, embedded_store::<ThreadCpu>
}
criterion_main!(wall, cpu);
