//! Routing by measurement: one sink, several retention policies (InfluxDB 1.x) or
//! buckets (2.x and later).
//!
//! An agent writes its raw samples and its energy ledger through one spool, and the
//! two are worth keeping for very different times (`docs/retention.md`): a sink's
//! `retention_policies = { energy_ledger = "forever" }` sends the ledger's lines to
//! another policy than the rest. A batch is split by measurement and each part sent
//! with its own writer; when one part fails the whole batch counts as failed and is
//! retried, which re-sends the parts already written. InfluxDB keeps one value per
//! series, field and timestamp, so a re-sent line overwrites itself and nothing is
//! counted twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::influx::{InfluxConn, InfluxWriter, WriteApi};
use super::{WriteError, Writer};
use crate::config::ConfigError;

/// A [`Writer`] that sends each measurement's lines to the writer routed for it,
/// and every other line to `default`.
pub struct RoutedWriter {
    default: Arc<dyn Writer>,
    routes: Vec<(String, Arc<dyn Writer>)>,
}

impl RoutedWriter {
    /// `routes`: (measurement, writer) pairs; a measurement named twice keeps the first.
    pub fn new(default: Arc<dyn Writer>, routes: Vec<(String, Arc<dyn Writer>)>) -> Self {
        RoutedWriter { default, routes }
    }

    /// Splits `body` into one part per writer (the default first), keeping line order.
    fn split<'a>(&self, body: &'a str) -> Vec<Vec<&'a str>> {
        let mut parts = vec![Vec::new(); self.routes.len() + 1];
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let m = line_measurement(line);
            let i = self.routes.iter().position(|(name, _)| name == m).map_or(0, |k| k + 1);
            parts[i].push(line);
        }
        parts
    }
}

/// The measurement of one line of line protocol, as written (escapes kept): the
/// text up to the first comma or space that no backslash escapes.
pub fn line_measurement(line: &str) -> &str {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b',' | b' ' => break,
            _ => i += 1,
        }
    }
    &line[..i.min(line.len())]
}

#[async_trait]
impl Writer for RoutedWriter {
    async fn write_lines(&self, body: &str) -> Result<(), WriteError> {
        let parts = self.split(body);
        let writers = std::iter::once(&self.default).chain(self.routes.iter().map(|(_, w)| w));
        for (lines, writer) in parts.iter().zip(writers) {
            if !lines.is_empty() {
                writer.write_lines(&(lines.join("\n") + "\n")).await?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let routed: Vec<String> = self.routes.iter().map(|(m, w)| format!("{m} to {}", w.describe())).collect();
        format!("{} ({})", self.default.describe(), routed.join(", "))
    }
}

/// The writer for a connection: one [`InfluxWriter`], or a [`RoutedWriter`] over one
/// per retention policy (v1) or bucket (v2) named in `routes` (measurement → place).
pub fn routed_writer(
    conn: &InfluxConn,
    api: WriteApi,
    routes: &BTreeMap<String, String>,
) -> Result<Arc<dyn Writer>, ConfigError> {
    let default: Arc<dyn Writer> = Arc::new(InfluxWriter::from_conn(conn, api)?);
    if routes.is_empty() {
        return Ok(default);
    }
    let mut routed = Vec::with_capacity(routes.len());
    for (measurement, place) in routes {
        let mut c = conn.clone();
        match api {
            WriteApi::V1 => c.retention_policy = Some(place.clone()),
            WriteApi::V2 => c.bucket = Some(place.clone()),
        }
        routed.push((measurement.clone(), Arc::new(InfluxWriter::from_conn(&c, api)?) as Arc<dyn Writer>));
    }
    Ok(Arc::new(RoutedWriter::new(default, routed)))
}

/// Checks a `retention_policies` / `buckets` table: names that are not empty.
pub fn validate_routes(
    section: &str,
    key: &str,
    routes: &BTreeMap<String, String>,
) -> Result<(), crate::config::KeyError> {
    for (m, place) in routes {
        if m.trim().is_empty() || place.trim().is_empty() {
            return Err(crate::config::KeyError::new(
                format!("{key}.{m}"),
                format!("{section} `{key}` maps measurement {m:?} to {place:?}; neither may be empty"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what it is sent.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>, &'static str);

    #[async_trait]
    impl Writer for Recorder {
        async fn write_lines(&self, body: &str) -> Result<(), WriteError> {
            if self.1 == "down" {
                return Err(WriteError::Unavailable { server: "down".into(), message: "refused".into() });
            }
            self.0.lock().unwrap().push(body.to_owned());
            Ok(())
        }
        fn describe(&self) -> String {
            self.1.to_owned()
        }
    }

    #[test]
    fn measurement_ends_at_the_first_unescaped_comma_or_space() {
        assert_eq!(line_measurement("gpu,host=a power_w=1 1"), "gpu");
        assert_eq!(line_measurement("energy_ledger energy_j=1 1"), "energy_ledger");
        assert_eq!(line_measurement(r"my\,m\ x,t=1 f=1 1"), r"my\,m\ x");
        assert_eq!(line_measurement("trailing\\"), "trailing\\");
        assert_eq!(line_measurement(""), "");
    }

    #[tokio::test]
    async fn lines_go_to_their_measurement_s_writer_in_order() {
        let default = Arc::new(Recorder(Mutex::default(), "raw"));
        let ledger = Arc::new(Recorder(Mutex::default(), "ledger"));
        let w = RoutedWriter::new(default.clone(), vec![("energy_ledger".into(), ledger.clone())]);
        let body = "gpu,h=a p=1 1\nenergy_ledger,h=a e=1 2\n\ngpu,h=a p=2 3\nenergy_ledger,h=a e=2 4\n";
        w.write_lines(body).await.unwrap();
        assert_eq!(*default.0.lock().unwrap(), vec!["gpu,h=a p=1 1\ngpu,h=a p=2 3\n".to_string()]);
        assert_eq!(*ledger.0.lock().unwrap(), vec!["energy_ledger,h=a e=1 2\nenergy_ledger,h=a e=2 4\n".to_string()]);
        // A batch without ledger lines sends nothing to the ledger's writer.
        w.write_lines("gpu,h=a p=3 5\n").await.unwrap();
        assert_eq!(ledger.0.lock().unwrap().len(), 1);
        assert_eq!(w.describe(), "raw (energy_ledger to ledger)");
    }

    #[tokio::test]
    async fn a_failing_route_fails_the_batch() {
        let default = Arc::new(Recorder(Mutex::default(), "raw"));
        let w =
            RoutedWriter::new(default, vec![("energy_ledger".into(), Arc::new(Recorder(Mutex::default(), "down")))]);
        let err = w.write_lines("gpu p=1 1\nenergy_ledger e=1 2\n").await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
