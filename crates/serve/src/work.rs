//! Solving work and its bounds: a fixed pool of worker threads with a bounded line of requests
//! waiting for one (a full line is answered 503 with `Retry-After`; a client that leaves the
//! line leaves the count), and each request's hold on the work it started, which stops that
//! work when the client goes away or the request's time is up.
//!
//! Solves run on threads of their own rather than tokio's blocking pool: the allocator keeps an
//! arena per thread, and solves spread over as many pool threads as are busy at once left
//! memory in each of them after a flood.

use crate::errors::{self, ApiError};
use axum::http::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub struct Queue {
    workers: Arc<Semaphore>,
    size: usize,
    jobs: Sender<Job>,
    /// Requests waiting for a worker: the `bitsearch_solve_queue_depth` gauge.
    waiting: AtomicU64,
    capacity: usize,
}

/// A worker held by one request: its solves run on a worker thread, and the worker is free
/// again once this is dropped and its last job has ended (a job outlives its request when the
/// client leaves mid-solve).
#[derive(Debug)]
pub struct Worker {
    permit: Arc<OwnedSemaphorePermit>,
    jobs: Sender<Job>,
}

impl Worker {
    /// Runs `f` on a worker thread; a panic in it is this request's failure alone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let permit = self.permit.clone();
        let job = move || {
            let _held = permit;
            let _ = answer.send(errors::caught(f));
        };
        self.jobs.send(Box::new(job)).map_err(|_| stopping())?;
        answered.await.map_err(|_| stopping())?
    }
}

fn stopping() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping")
}

/// A worker thread: runs jobs until the queue is gone. The threads share one receiver; as many
/// permits as threads, each held until its jobs end, keep a thread free for every job sent.
fn work(jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
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
    /// `workers` threads started, and a line of at most `capacity` requests.
    pub fn new(workers: usize, capacity: usize) -> std::io::Result<Self> {
        let size = workers.max(1);
        let (jobs, received) = std::sync::mpsc::channel::<Job>();
        let received = Arc::new(Mutex::new(received));
        for i in 0..size {
            let received = received.clone();
            std::thread::Builder::new().name(format!("solver-{i}")).spawn(move || work(received))?;
        }
        Ok(Self { workers: Arc::new(Semaphore::new(size)), size, jobs, waiting: AtomicU64::new(0), capacity })
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A worker for one request; waits in line if every worker is busy, and is refused 503 when
    /// the line is full. `typical` is how long a solve takes, to say when to come back.
    pub async fn worker(&self, typical: Duration) -> Result<Worker, ApiError> {
        let worker = |permit| Worker { permit: Arc::new(permit), jobs: self.jobs.clone() };
        if let Ok(permit) = self.workers.clone().try_acquire_owned() {
            return Ok(worker(permit));
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
        self.workers.clone().acquire_owned().await.map(worker).map_err(|_| stopping())
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
