//! Running a bounded workload from many tasks and summarising its latencies.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any single operation may take before it counts as an error.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// What one workload measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Operations that succeeded.
    pub ok: usize,
    /// Operations that failed or timed out.
    pub errors: usize,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Wall-clock time of the whole workload.
    pub elapsed: Duration,
    /// Latency percentiles of the successful operations.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Summary {
    /// Successful operations per second of wall-clock time.
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A markdown table row: `| name | clients | ops | errors | s | ops/s | p50 ms | p99 ms |`.
    pub fn row(&self, name: &str, clients: usize) -> String {
        format!(
            "| {name} | {clients} | {} | {} | {:.3} | {:.0} | {:.2} | {:.2} |",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            ms(self.p50),
            ms(self.p99),
        )
    }
}

/// The header matching [`Summary::row`].
pub const HEADER: &str = "| workload | clients | ops | errors | seconds | ops/s | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q`-quantile (0..=1) of `sorted`, or zero when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `op(0..total)` from `clients` tasks, each taking the next index until
/// `total` are done or `budget` has passed, and summarises the latencies.
///
/// # Guarantees
/// Bounded: at most `total` operations, no new one after `budget`, and each
/// one abandoned after [`OP_TIMEOUT`].
pub async fn drive<F, Fut>(total: usize, clients: usize, budget: Duration, op: F) -> Summary
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || start.elapsed() > budget {
                    break;
                }
                let t = Instant::now();
                match tokio::time::timeout(OP_TIMEOUT, op(i)).await {
                    Ok(Ok(())) => lat.push(t.elapsed()),
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| "timed out".to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok((l, e, f)) => {
                lat.extend(l);
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    Summary {
        ok: lat.len(),
        errors,
        first_error,
        elapsed,
        p50: quantile(&lat, 0.50),
        p99: quantile(&lat, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_should_pick_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.99), Duration::ZERO);
    }

    #[tokio::test]
    async fn drive_should_run_each_index_once_and_count_errors() {
        let s = drive(100, 8, Duration::from_secs(60), |i| async move {
            anyhow::ensure!(i % 10 != 0, "index {i}");
            Ok(())
        })
        .await;
        assert_eq!(s.ok, 90);
        assert_eq!(s.errors, 10);
        assert!(s.first_error.is_some());
    }
}
