//! What the running process holds, and the boundary that turns a library's panic into an error.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Boundaries ([`catch_panic`]) running now, in any thread.
static CATCHING: AtomicUsize = AtomicUsize::new(0);

/// The most resident memory this process has held (Linux's `VmHWM`), bytes; 0 elsewhere.
pub fn peak_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Runs `work`, turning a panic inside it into an error holding the panic's message: for
/// third-party decoders that panic on damaged bytes instead of returning an error (polars'
/// Parquet reader on a flipped bit). Use it around one library call, never around our own code.
pub fn catch_panic<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CATCHING.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Installs a panic hook that stays silent while a [`catch_panic`] boundary runs (its caller
/// reports the panic as an error, in one line) and prints as the default hook does otherwise.
/// The boundary may be in another thread than the panic (a decoder's worker pool), so the
/// count is process-wide.
pub fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CATCHING.load(Ordering::SeqCst) == 0 {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_inside_the_boundary_is_an_error_with_its_message() {
        assert_eq!(super::catch_panic(|| 3), Ok(3));
        let caught = super::catch_panic(|| -> u8 { panic!("thrift bool field {}", 7) });
        assert_eq!(caught, Err("thrift bool field 7".to_string()));
        assert_eq!(super::CATCHING.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn the_peak_holds_at_least_what_was_touched() {
        let before = super::peak_resident_bytes();
        let block = vec![1u8; 64 << 20];
        let after = super::peak_resident_bytes();
        assert_eq!(block.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
        if cfg!(target_os = "linux") {
            assert!(after >= before.max(64 << 20), "{before} then {after}");
        }
    }
}
