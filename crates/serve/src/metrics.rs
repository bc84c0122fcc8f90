//! The counters `GET /metrics` reports, in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the solve-time histogram's buckets, seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 20.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub registrations: AtomicU64,
    pub cache_hits: AtomicU64,
    pub frontiers: AtomicU64,
    pub reports: AtomicU64,
    /// Plans solved (one request's, or a sweep point's).
    pub solves: Histogram,
}

#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at most each bound (not cumulative).
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The mean observation, once there is one.
    pub fn mean(&self) -> Option<Duration> {
        let count = get(&self.count);
        (count > 0).then(|| Duration::from_micros(get(&self.micros) / count))
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// The counters, and `queued` requests waiting for a worker.
    pub fn render(&self, queued: u64) -> String {
        let mut text = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        metric("bitsearch_requests_total", "counter", "HTTP requests received.", get(&self.requests));
        metric("bitsearch_client_errors_total", "counter", "Requests answered 4xx.", get(&self.client_errors));
        metric("bitsearch_server_errors_total", "counter", "Requests answered 5xx.", get(&self.server_errors));
        metric("bitsearch_registrations_total", "counter", "Table registrations.", get(&self.registrations));
        metric(
            "bitsearch_plan_cache_hits_total",
            "counter",
            "Plans and frontiers answered from the catalogue.",
            get(&self.cache_hits),
        );
        metric("bitsearch_frontiers_total", "counter", "Sweeps solved.", get(&self.frontiers));
        metric("bitsearch_reports_total", "counter", "Reports built.", get(&self.reports));
        metric("bitsearch_solve_queue_depth", "gauge", "Requests waiting for a worker.", queued);
        let name = "bitsearch_solve_seconds";
        let _ = write!(text, "# HELP {name} Wall time of each plan solved.\n# TYPE {name} histogram\n");
        let mut below = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.solves.counts) {
            below += get(count);
            let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {below}");
        }
        let count = get(&self.solves.count);
        let seconds = get(&self.solves.micros) as f64 / 1e6;
        let _ = write!(text, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {seconds:.6}\n{name}_count {count}\n");
        text
    }
}
