//! The allocator's side of a long-running service. glibc gives threads arenas of their own and
//! keeps what a burst of requests frees in them: after a flood the process held twice the
//! memory it started with, none of it in use. The service caps the arenas and hands free pages
//! back when it goes quiet. With another C library these are no-ops.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Requests in flight, and whether free memory is about to be handed back.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicBool = AtomicBool::new(false);
/// How long a quiet service waits before handing memory back: a burst's last connections close
/// in the meantime, and a busy one does it at most this often.
const SETTLE: Duration = Duration::from_secs(1);

/// Sets the allocator up for the service; call before its threads start.
pub fn configure() {
    allocator::configure();
}

/// A request in flight; when the last one ends, free memory goes back to the system.
#[derive(Debug)]
pub struct Request(());

pub fn request() -> Request {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    Request(())
}

impl Drop for Request {
    fn drop(&mut self) {
        if IN_FLIGHT.fetch_sub(1, Ordering::SeqCst) == 1 {
            quiet();
        }
    }
}

/// Hands free memory back in [`SETTLE`] unless a request is in flight then (a connection
/// closing calls it too: its buffers were freed).
pub fn quiet() {
    if IN_FLIGHT.load(Ordering::SeqCst) > 0 || PENDING.swap(true, Ordering::SeqCst) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(SETTLE).await;
        PENDING.store(false, Ordering::SeqCst);
        if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
            // It walks every arena: off the I/O threads.
            let _ = tokio::task::spawn_blocking(allocator::release).await;
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod allocator {
    /// Arenas the service's threads share (glibc's default is eight per core, each keeping
    /// its own free memory).
    const ARENAS: i32 = 2;

    #[allow(unsafe_code)]
    pub fn configure() {
        // SAFETY: mallopt sets one of the allocator's parameters and takes no pointers.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }

    #[allow(unsafe_code)]
    pub fn release() {
        // SAFETY: malloc_trim takes no pointers; it returns the free pages of every arena.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    pub fn configure() {}
    pub fn release() {}
}
