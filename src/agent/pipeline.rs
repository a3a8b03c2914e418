//! The agent's moving parts: one task per source on its own interval, a shipper
//! that drains the spool, and a self-telemetry tick. They meet only at the spool.
//!
//! - **Scheduling.** Each source runs on its own tokio interval; a tick missed
//!   because a collection overran is skipped, not bunched (no bursts after a stall).
//!   A collection that runs past its deadline (the interval, at least 5 s) is
//!   abandoned and counted as an error, so a hanging source delays only itself.
//! - **Collect = spooled.** Points get the `site`, `host` and `workload` tags, are
//!   encoded as line protocol and appended to the spool; only then are they counted
//!   as collected. A failed append (full disk) is counted and logged, and the agent
//!   goes on.
//! - **Shipping.** The shipper reads the oldest unconfirmed points in batches of at
//!   most `batch_size` points, sends each with the configured writer (gzip and
//!   retries are the writer's), and acknowledges it in the spool only when the store
//!   confirmed it. It ships when `batch_size` points are waiting or `batch_interval`
//!   has passed. While a backlog exists, full batches go back to back with no wait,
//!   so after an outage fresh points are shipped after at most
//!   `backlog / batch_size` requests: the backlog is drained oldest first at the
//!   store's full speed, never skipped and never allowed to hold fresh data
//!   indefinitely (it only shrinks, since a batch ships faster than sources refill
//!   it). A failed batch is retried with exponential backoff (1 s to 30 s) and the
//!   same bytes; a batch the store rejects as invalid (HTTP 400) is saved to
//!   `<spool_dir>/rejected/` and skipped, so one bad point cannot block the rest.
//!   With several `[[sinks]]`, each has its own shipper and its own spool cursor:
//!   a sink that is down or slow falls behind alone and catches up from its
//!   cursor when it returns; a point leaves the spool once every sink confirmed it.
//! - **Shutdown.** Sources stop, a last self-telemetry point is spooled, and the
//!   shipper keeps draining until the spool is empty or `shutdown_timeout` has
//!   passed. What is left stays in the spool for the next start.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

use crate::agent::spool::Spool;
use crate::agent::telemetry::AgentStats;
use crate::agent::workloads::WorkloadMap;
use crate::collect::Source;
use crate::ledger::writer::LedgerWriter;
use crate::model::{schema, Clock, FieldValue, Point};
use crate::ship::{lineproto, WriteError, Writer};

/// Most bytes of line protocol in one write request.
const MAX_BATCH_BYTES: u64 = 8 << 20;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A source and how often to read it.
pub struct ScheduledSource {
    pub source: Box<dyn Source>,
    pub interval: Duration,
}

/// What every point gets: the agent's tags and where it goes.
pub(crate) struct Stamp {
    pub site: String,
    pub host: String,
    /// The agent's `group` (rack, container, feeder), when set.
    pub group: Option<String>,
    pub workloads: WorkloadMap,
}

impl Stamp {
    /// Adds the agent's tags and writes unsigned integers as signed ones: InfluxDB
    /// 1.x cannot store unsigned fields (`1u` fails the whole line), and one type
    /// per field everywhere avoids type conflicts between agents.
    fn apply(&self, p: &mut Point) {
        for (_, v) in &mut p.fields {
            if let FieldValue::UInt(u) = *v {
                *v = if u <= i64::MAX as u64 { FieldValue::Int(u as i64) } else { FieldValue::Float(u as f64) };
            }
        }
        p.set_tag(schema::TAG_SITE, self.site.as_str());
        p.set_tag(schema::TAG_HOST, self.host.as_str());
        if let Some(g) = &self.group {
            p.set_tag(schema::TAG_GROUP, g.as_str());
        }
        // A meter channel's configured workload stands; everything else is mapped here.
        if p.tag_value(schema::TAG_WORKLOAD).is_none() {
            if let Some(w) = self.workloads.workload_for(p) {
                p.set_tag(schema::TAG_WORKLOAD, w.to_owned());
            }
        }
    }
}

pub(crate) struct Shared {
    pub spool: Arc<Mutex<Spool>>,
    /// Folds spooled device points into `energy_ledger` points (off when `None`).
    pub ledger: Option<Mutex<LedgerWriter>>,
    pub stats: Arc<AgentStats>,
    pub stamp: Stamp,
    pub clock: Arc<dyn Clock>,
    pub ship_now: Notify,
    pub batch_size: u64,
    /// The sinks' names, in cursor order, for the per-sink figures.
    pub sink_names: Vec<String>,
}

/// Runs `f` on the spool on a blocking thread (appends may fsync).
pub(crate) async fn with_spool<R: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> R + Send + 'static,
) -> R {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = spool.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    })
    .await
    .expect("spool task panicked")
}

impl Shared {
    fn publish_sinks(&self, cursors: Vec<(u64, u64)>) {
        let named = self.sink_names.iter().cloned().zip(cursors);
        self.stats.set_sinks(
            named.map(|(n, (pending, dropped))| (n, crate::agent::telemetry::SinkStats { pending, dropped })),
        );
    }

    /// Stamps, encodes and spools points; returns how many were spooled.
    pub async fn spool_points(&self, source: &str, mut points: Vec<Point>) -> u64 {
        let mut lines = Vec::with_capacity(points.len());
        let mut buf = String::new();
        let mut encode = |p: &Point, lines: &mut Vec<String>| {
            buf.clear();
            match lineproto::encode(p, &mut buf) {
                Ok(()) => {
                    lines.push(buf.trim_end_matches('\n').to_owned());
                    true
                }
                Err(e) => {
                    tracing::warn!(source, error = %e, "skipping a point that is not valid line protocol");
                    false
                }
            }
        };
        points.retain_mut(|p| {
            self.stamp.apply(p);
            encode(p, &mut lines)
        });
        // The ledger folds exactly what is spooled; its points carry their
        // device's tags already and go in the same append as the samples that
        // closed their interval.
        if let Some(ledger) = &self.ledger {
            let closed = ledger.lock().unwrap_or_else(|e| e.into_inner()).observe(&points, self.clock.now_ns());
            for p in &closed {
                encode(p, &mut lines);
            }
        }
        self.stats.readings.observe(&points);
        let n = lines.len() as u64;
        if n == 0 {
            return 0;
        }
        let result = with_spool(&self.spool, move |s| {
            let r = s.append(&lines);
            (r, s.pending_records(), s.disk_bytes(), s.cursor_stats())
        })
        .await;
        let (result, pending, bytes, cursors) = result;
        self.publish_sinks(cursors);
        self.stats.spool_pending.store(pending, Relaxed);
        self.stats.spool_bytes.store(bytes, Relaxed);
        match result {
            Ok(dropped) => {
                self.stats.collected.fetch_add(n, Relaxed);
                self.stats.dropped.fetch_add(dropped, Relaxed);
                if pending >= self.batch_size {
                    self.ship_now.notify_one();
                }
                n
            }
            Err(e) => {
                if let Some(ledger) = &self.ledger {
                    // The store will lack these samples: the intervals around them
                    // are left to the aggregator's raw path.
                    ledger.lock().unwrap_or_else(|e| e.into_inner()).restart(self.clock.now_ns());
                }
                self.stats.spool_errors.fetch_add(1, Relaxed);
                self.stats.dropped.fetch_add(n, Relaxed);
                tracing::error!(source, points = n, error = %e,
                    "cannot append to the spool (disk full?); these points are lost, the agent keeps running");
                0
            }
        }
    }
}

/// Polls one source until `stop` flips.
pub(crate) async fn run_source(shared: Arc<Shared>, mut sched: ScheduledSource, mut stop: watch::Receiver<bool>) {
    let name = sched.source.name().to_owned();
    let deadline = sched.interval.max(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(sched.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let time_ns = shared.clock.now_ns();
        let result = tokio::select! {
            r = tokio::time::timeout(deadline, sched.source.collect(time_ns)) => r,
            _ = stop.changed() => return,
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok(Ok(points)) => {
                let n = shared.spool_points(&name, points).await;
                shared.stats.record_collect(&name, n, latency_ms, false);
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %name, error = %e, "collection failed");
                shared.stats.record_collect(&name, 0, latency_ms, true);
            }
            Err(_) => {
                tracing::warn!(source = %name, deadline_s = deadline.as_secs_f64(), "collection did not finish in time; abandoned");
                shared.stats.record_collect(&name, 0, latency_ms, true);
            }
        }
    }
}

/// Spools an `agent` self-telemetry point set every `interval` until `stop`, then one last time.
pub(crate) async fn run_self_telemetry(shared: Arc<Shared>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        let points = shared.stats.snapshot().to_points(shared.clock.now_ns());
        shared.spool_points("agent", points).await;
        if stopping {
            return;
        }
    }
}

/// Drains spool cursor `cursor` into `writer` until `stop` flips, then for at
/// most `drain_for`. Each sink has its own shipper and cursor.
pub(crate) async fn run_shipper(
    shared: Arc<Shared>,
    cursor: usize,
    writer: Arc<dyn Writer>,
    batch_interval: Duration,
    rejected_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
    drain_for: Duration,
) {
    let mut backoff = BACKOFF_MIN;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let batch_size = shared.batch_size;
    // Failed writes since the last success, and when the first of them failed: the
    // first success after an outage says how long it lasted.
    let mut outage: Option<(u64, tokio::time::Instant)> = None;
    loop {
        if drain_deadline.is_none() && *stop.borrow() {
            drain_deadline = Some(tokio::time::Instant::now() + drain_for);
        }
        let batch = with_spool(&shared.spool, move |s| s.read_batch_for(cursor, batch_size, MAX_BATCH_BYTES)).await;
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                if wait(&mut stop, drain_deadline, BACKOFF_MAX).await {
                    return;
                }
                continue;
            }
        };
        if batch.records == 0 {
            if drain_deadline.is_some() {
                return;
            }
            // Sleep until the next interval or until enough points are waiting.
            tokio::select! {
                _ = tokio::time::sleep(batch_interval) => {}
                _ = shared.ship_now.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let full = batch.records >= batch_size;
        let send = writer.write_lines(&batch.body);
        tokio::pin!(send);
        // A request in flight when shutdown begins gets the drain budget, no more
        // (the writer's own retries can take much longer).
        let result = match drain_deadline {
            Some(d) => match tokio::time::timeout_at(d, &mut send).await {
                Ok(r) => r,
                Err(_) => return,
            },
            None => tokio::select! {
                r = &mut send => r,
                _ = stop.changed() => {
                    let d = tokio::time::Instant::now() + drain_for;
                    drain_deadline = Some(d);
                    match tokio::time::timeout_at(d, &mut send).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            },
        };
        match result {
            Ok(()) => {
                backoff = BACKOFF_MIN;
                if let Some((failures, since)) = outage.take() {
                    tracing::info!(writer = %writer.describe(), failed_writes = failures,
                        outage_s = since.elapsed().as_secs_f64(), points = batch.records,
                        "shipping resumed; the spooled points are being sent");
                }
                acknowledge(&shared, cursor, batch.end, batch.records).await;
                shared.stats.shipped.fetch_add(batch.records, Relaxed);
                if !full && drain_deadline.is_none() {
                    tokio::select! {
                        _ = tokio::time::sleep(batch_interval) => {}
                        _ = shared.ship_now.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            Err(WriteError::Rejected { server, message }) => {
                let file = save_rejected(&rejected_dir, &batch.body, shared.clock.now_ns());
                tracing::error!(%server, %message, points = batch.records, saved_to = %file,
                    "the store rejected a batch as invalid; it is saved and skipped");
                shared.stats.rejected.fetch_add(batch.records, Relaxed);
                acknowledge(&shared, cursor, batch.end, batch.records).await;
            }
            Err(e) => {
                shared.stats.ship_errors.fetch_add(1, Relaxed);
                let o = outage.get_or_insert((0, tokio::time::Instant::now()));
                o.0 += 1;
                tracing::warn!(error = %e, writer = %writer.describe(), pending = batch.records,
                    retry_in_s = backoff.as_secs_f64(), "write failed; the points stay in the spool");
                if wait(&mut stop, drain_deadline, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Sleeps `d`; true when the shutdown deadline passes first.
async fn wait(stop: &mut watch::Receiver<bool>, drain_deadline: Option<tokio::time::Instant>, d: Duration) -> bool {
    match drain_deadline {
        Some(deadline) => {
            let until = tokio::time::Instant::now() + d;
            if until >= deadline {
                tokio::time::sleep_until(deadline).await;
                return true;
            }
            tokio::time::sleep_until(until).await;
            false
        }
        None => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stop.changed() => {}
            }
            false
        }
    }
}

async fn acknowledge(shared: &Shared, cursor: usize, end: crate::agent::spool::Position, records: u64) {
    let r = with_spool(&shared.spool, move |s| {
        let r = s.ack_for(cursor, end);
        (r, s.pending_records(), s.disk_bytes(), s.cursor_stats())
    })
    .await;
    shared.publish_sinks(r.3);
    shared.stats.spool_pending.store(r.1, Relaxed);
    shared.stats.spool_bytes.store(r.2, Relaxed);
    if let Err(e) = r.0 {
        // The points are in the store; the worst outcome is that they are sent again.
        tracing::warn!(error = %e, points = records, "cannot persist the spool position; these points may be sent again after a restart");
    }
}

fn save_rejected(dir: &std::path::Path, body: &str, time_ns: i64) -> String {
    let path = dir.join(format!("{time_ns}.lp"));
    let r = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, body));
    match r {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {e})"),
    }
}

/// Runs everything until `shutdown` resolves; see the module docs.
pub(crate) async fn run(
    shared: Arc<Shared>,
    sources: Vec<ScheduledSource>,
    writers: Vec<Arc<dyn Writer>>,
    cfg: &crate::agent::config::AgentSection,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut collectors = tokio::task::JoinSet::new();
    for s in sources {
        collectors.spawn(run_source(shared.clone(), s, stop_rx.clone()));
    }
    collectors.spawn(run_self_telemetry(shared.clone(), cfg.self_telemetry_interval, stop_rx.clone()));
    // The shipper stops after the collectors, so that the last points spooled are
    // part of its final drain.
    let (ship_stop_tx, ship_stop_rx) = watch::channel(false);
    let mut shippers = tokio::task::JoinSet::new();
    for (cursor, writer) in writers.into_iter().enumerate() {
        shippers.spawn(run_shipper(
            shared.clone(),
            cursor,
            writer,
            cfg.batch_interval,
            cfg.spool_dir.join("rejected"),
            ship_stop_rx.clone(),
            cfg.shutdown_timeout,
        ));
    }
    if let Some(addr) = cfg.metrics_listen {
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.changed().await;
        };
        match crate::agent::telemetry::serve_metrics(
            addr,
            shared.stats.clone(),
            shared.clock.clone(),
            cfg.metrics_dcgm_names,
            stop,
        )
        .await
        {
            Ok(bound) => tracing::info!(%bound, "serving agent metrics at /metrics"),
            Err(e) => tracing::error!(error = %e, "agent metrics endpoint not started"),
        }
    }
    shutdown.await;
    tracing::info!("stopping: collecting no more, shipping what the spool holds");
    let _ = stop_tx.send(true);
    // Collectors stop at once (an in-flight collection is abandoned); the last
    // self-telemetry point is spooled before the shipper's final drain ends.
    while collectors.join_next().await.is_some() {}
    let _ = ship_stop_tx.send(true);
    while shippers.join_next().await.is_some() {}
    let _ = with_spool(&shared.spool, |s| s.sync()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::AgentConfig;
    use crate::agent::Agent;
    use crate::collect::inference::{InferenceServerConfig, InferenceSource};
    use crate::model::SystemClock;
    use crate::sim::inference::{SimInferenceServer, SimInferenceSpec};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Records what it is sent instead of posting it; can be switched to fail.
    #[derive(Default)]
    struct RecordingWriter {
        lines: Mutex<Vec<String>>,
        down: AtomicBool,
        reject_next: AtomicBool,
        requests: AtomicUsize,
    }

    #[async_trait]
    impl Writer for RecordingWriter {
        async fn write_lines(&self, body: &str) -> Result<(), WriteError> {
            self.requests.fetch_add(1, Relaxed);
            if self.down.load(Relaxed) {
                return Err(WriteError::Unavailable { server: "test".into(), message: "down".into() });
            }
            if self.reject_next.swap(false, Relaxed) {
                return Err(WriteError::Rejected { server: "test".into(), message: "bad line".into() });
            }
            self.lines.lock().unwrap().extend(body.lines().map(str::to_owned));
            Ok(())
        }
        fn describe(&self) -> String {
            "recording test writer".into()
        }
    }

    fn config(dir: &std::path::Path, extra: &str) -> AgentConfig {
        AgentConfig::from_toml(&format!(
            r#"
[agent]
site = "lab"
host = "rig1"
spool_dir = "{}"
batch_size = 7
batch_interval = "100ms"
self_telemetry_interval = "200ms"
shutdown_timeout = "2s"
{extra}
[store]
kind = "influxdb"
url = "http://127.0.0.1:9"
[[inference]]
name = "sim"
url = "http://127.0.0.1:9/metrics"
[workloads]
default = "tokens"
"#,
            dir.display()
        ))
        .unwrap()
    }

    async fn inference_source(server: &SimInferenceServer, interval_ms: u64) -> ScheduledSource {
        let cfg: InferenceServerConfig =
            toml::from_str(&format!("name = \"sim\"\nurl = \"{}\"\n", server.metrics_url())).unwrap();
        ScheduledSource {
            source: Box::new(InferenceSource::new(cfg).unwrap()),
            interval: Duration::from_millis(interval_ms),
        }
    }

    /// A source that never answers, to show it holds up nobody else.
    struct Hanging;
    #[async_trait]
    impl Source for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        async fn collect(&mut self, _: i64) -> Result<Vec<Point>, crate::collect::SourceError> {
            std::future::pending().await
        }
    }

    #[test]
    fn stamp_adds_tags_and_writes_unsigned_as_signed() {
        let cfg = config(std::path::Path::new("/nonexistent"), "");
        let stamp = Stamp {
            site: "lab".into(),
            host: "rig1".into(),
            group: None,
            workloads: WorkloadMap::new(&cfg.workloads).unwrap(),
        };
        let mut p =
            Point::new("asic", 1).tag("miner", "10.0.0.1:4028").field("shares_accepted", 7u64).field("big", u64::MAX);
        stamp.apply(&mut p);
        assert_eq!(p.tag_value("site"), Some("lab"));
        assert_eq!(p.tag_value("host"), Some("rig1"));
        assert_eq!(p.tag_value("workload"), Some("tokens"));
        assert_eq!(p.field_value("shares_accepted"), Some(&FieldValue::Int(7)));
        assert_eq!(p.field_value("big"), Some(&FieldValue::Float(u64::MAX as f64)));
    }

    #[tokio::test]
    async fn outage_then_recovery_ships_every_point_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let server = SimInferenceServer::start(SimInferenceSpec::default(), clock.clone()).await.unwrap();
        let writer = Arc::new(RecordingWriter::default());
        let sources = vec![
            inference_source(&server, 50).await,
            ScheduledSource { source: Box::new(Hanging), interval: Duration::from_millis(50) },
        ];
        let agent = Agent::with_parts(config(dir.path(), ""), clock, sources, writer.clone()).unwrap();
        let stats = agent.stats();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let w = writer.clone();
        let run = tokio::spawn(agent.run(async {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(400)).await;
        w.down.store(true, Relaxed);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(stats.snapshot().spool_pending > 0, "points wait in the spool during the outage");
        w.down.store(false, Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.send(()).unwrap();
        run.await.unwrap().unwrap();

        let s = stats.snapshot();
        let lines = writer.lines.lock().unwrap().clone();
        assert!(s.collected > 20, "{s:?}");
        assert_eq!(s.shipped, s.collected, "{s:?}");
        assert_eq!(lines.len() as u64, s.collected);
        let unique: std::collections::BTreeSet<_> = lines.iter().collect();
        assert_eq!(unique.len(), lines.len(), "no point sent twice");
        assert!(s.ship_errors > 0);
        // The hanging source (deadline 5 s) holds up nobody else.
        assert!(!s.sources.contains_key("hanging") && s.sources["inference:sim"].collected > 10, "{s:?}");
        let inference = lines.iter().find(|l| l.starts_with("inference,")).unwrap();
        assert!(
            inference.contains("host=rig1") && inference.contains("site=lab") && inference.contains("workload=tokens"),
            "{inference}"
        );
        assert!(lines.iter().any(|l| l.starts_with("agent,") && l.contains("points_collected=")));
        // Timestamps come from the sources' ticks: strictly increasing per series.
        let times: Vec<i64> = lines
            .iter()
            .filter(|l| l.starts_with("inference,"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "shipped in order");
    }

    #[tokio::test]
    async fn shutdown_is_bounded_while_the_store_is_down_and_the_spool_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let server = SimInferenceServer::start(SimInferenceSpec::default(), clock.clone()).await.unwrap();
        let writer = Arc::new(RecordingWriter::default());
        writer.down.store(true, Relaxed);
        let cfg = config(dir.path(), "");
        let sources = vec![inference_source(&server, 50).await];
        let agent = Agent::with_parts(cfg.clone(), clock.clone(), sources, writer.clone()).unwrap();
        let stats = agent.stats();
        let started = Instant::now();
        agent.run(tokio::time::sleep(Duration::from_millis(500))).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500) + cfg.agent.shutdown_timeout + Duration::from_secs(1));
        let s = stats.snapshot();
        assert!(s.collected > 0 && s.shipped == 0 && s.spool_pending == s.collected, "{s:?}");

        // The next run (another output, same spool) delivers them.
        writer.down.store(false, Relaxed);
        let agent = Agent::with_parts(cfg, clock, Vec::new(), writer.clone()).unwrap();
        let stats2 = agent.stats();
        agent.run(tokio::time::sleep(Duration::from_millis(300))).await.unwrap();
        let lines = writer.lines.lock().unwrap().len() as u64;
        assert_eq!(lines, s.collected + stats2.snapshot().collected);
        assert_eq!(stats2.snapshot().spool_pending, 0);
    }

    #[tokio::test]
    async fn a_full_disk_is_counted_and_the_agent_keeps_running() {
        let dir = tempfile::tempdir().unwrap();
        // The first segment the spool opens is /dev/full: appends fail with ENOSPC.
        std::fs::create_dir_all(dir.path()).unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join(format!("{:016x}.seg", 1))).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let server = SimInferenceServer::start(SimInferenceSpec::default(), clock.clone()).await.unwrap();
        let writer = Arc::new(RecordingWriter::default());
        let sources = vec![inference_source(&server, 50).await];
        let agent = Agent::with_parts(config(dir.path(), ""), clock, sources, writer.clone()).unwrap();
        let stats = agent.stats();
        // Run until a few points went through (a busy machine can take longer than a
        // fixed half second for the first scrapes), at most 10 s.
        let watched = stats.clone();
        let enough = async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while watched.shipped.load(Relaxed) <= 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        agent.run(enough).await.unwrap();
        let s = stats.snapshot();
        assert_eq!(s.spool_errors, 1, "{s:?}");
        assert!(s.dropped >= 1, "{s:?}");
        assert!(s.collected > 3 && s.shipped == s.collected, "collection and shipping went on: {s:?}");
    }

    #[tokio::test]
    async fn a_rejected_batch_is_saved_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let server = SimInferenceServer::start(SimInferenceSpec::default(), clock.clone()).await.unwrap();
        let writer = Arc::new(RecordingWriter::default());
        writer.reject_next.store(true, Relaxed);
        let sources = vec![inference_source(&server, 50).await];
        let agent = Agent::with_parts(config(dir.path(), ""), clock, sources, writer.clone()).unwrap();
        let stats = agent.stats();
        agent.run(tokio::time::sleep(Duration::from_millis(600))).await.unwrap();
        let s = stats.snapshot();
        assert!(s.rejected > 0);
        assert_eq!(s.rejected + s.shipped, s.collected, "{s:?}");
        let saved: Vec<_> = std::fs::read_dir(dir.path().join("rejected")).unwrap().collect();
        assert_eq!(saved.len(), 1);
    }
}
