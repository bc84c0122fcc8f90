//! Solving work and its bounds: a fixed pool of workers with a bounded line of requests
//! waiting for one (a full line is answered 503 with `Retry-After`; a client that leaves the
//! line leaves the count), and each request's hold on the work it started, which stops that
//! work when the client goes away or the request's time is up.

use crate::errors::ApiError;
use axum::http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Queue {
    workers: Arc<Semaphore>,
    size: usize,
    /// Requests waiting for a worker: the `bitsearch_solve_queue_depth` gauge.
    waiting: AtomicU64,
    capacity: usize,
}

/// A place in the line, given up however the wait ends (a worker, a refusal, or the
/// request's future dropped because its client left).
struct InLine<'a>(&'a AtomicU64);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Queue {
    pub fn new(workers: usize, capacity: usize) -> Self {
        let size = workers.max(1);
        Self { workers: Arc::new(Semaphore::new(size)), size, waiting: AtomicU64::new(0), capacity }
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A worker for one request; waits in line if every worker is busy, and is refused 503 when
    /// the line is full. `typical` is how long a solve takes, to say when to come back.
    pub async fn worker(&self, typical: Duration) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.workers.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let place = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _in_line = InLine(&self.waiting);
        if place >= self.capacity as u64 {
            let turns = (place + 1).div_ceil(self.size as u64) as f64;
            let message =
                format!("every worker is busy and {place} requests wait (--queue {}): try again later", self.capacity);
            let mut busy = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
            busy.retry_after = Some((typical.as_secs_f64() * turns).ceil().clamp(1.0, 60.0) as u64);
            return Err(busy);
        }
        self.workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping"))
    }
}

/// Held by a request's handler: dropped with it (the client went away, hyper drops the
/// handler's future), it stops the work the request started.
#[derive(Debug)]
pub struct Hold(Arc<AtomicBool>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What solving work checks between its steps: whether its client is gone or its time up.
#[derive(Debug, Clone)]
pub struct Stop {
    gone: Arc<AtomicBool>,
    deadline: Instant,
}

/// A request's hold on its work, and the work's view of it, with `time` to run.
pub fn hold(time: Duration) -> (Hold, Stop) {
    let gone = Arc::new(AtomicBool::new(false));
    (Hold(gone.clone()), Stop { gone, deadline: Instant::now() + time })
}

impl Stop {
    pub fn client_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Time left before the request's limit; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
