//! What the running process holds.

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

#[cfg(test)]
mod tests {
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
