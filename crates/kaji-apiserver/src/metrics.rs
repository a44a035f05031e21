//! Prometheus metrics: request counts and latencies by verb, resource and
//! code, and the number of open watches, in the text exposition format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latencies: Mutex<BTreeMap<(String, String), Histogram>>,
    store: Mutex<BTreeMap<&'static str, Histogram>>,
    watchers: AtomicI64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default() += 1;
        self.latencies
            .lock()
            .expect("metrics lock")
            .entry((verb.to_string(), resource.to_string()))
            .or_default()
            .observe(elapsed);
    }

    /// Records one store call.
    pub fn observe_store(&self, operation: &'static str, elapsed: Duration) {
        self.store
            .lock()
            .expect("metrics lock")
            .entry(operation)
            .or_default()
            .observe(elapsed);
    }

    /// A watch opened (+1) or closed (-1).
    pub fn watchers(&self, delta: i64) {
        self.watchers.fetch_add(delta, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, resource), h) in self.latencies.lock().expect("metrics lock").iter() {
            h.render(
                &mut out,
                "apiserver_request_duration_seconds",
                &format!("verb=\"{verb}\",resource=\"{resource}\""),
            );
        }
        out.push_str("# HELP etcd_request_duration_seconds Store request latency in seconds for each operation.\n# TYPE etcd_request_duration_seconds histogram\n");
        for (op, h) in self.store.lock().expect("metrics lock").iter() {
            h.render(
                &mut out,
                "etcd_request_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
        out.push_str("# HELP apiserver_registered_watchers Number of currently open watches.\n# TYPE apiserver_registered_watchers gauge\n");
        let _ = writeln!(
            out,
            "apiserver_registered_watchers {}",
            self.watchers.load(Ordering::Relaxed)
        );
        out
    }
}
