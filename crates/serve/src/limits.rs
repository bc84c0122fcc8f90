//! What the service takes from one client: sizes, counts and times, each with the flag that
//! sets it. Past a size or count the request is refused (4xx naming the flag) before anything
//! is allocated for it; past a time its work stops.

use std::time::Duration;

/// The service's limits; [`Limits::DEFAULT`] is what `bitsearch serve` runs with unless a
/// flag says otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest table upload, bytes (`--max-body-mb`).
    pub table_bytes: usize,
    /// Largest plan or frontier request, bytes (`--max-request-kb`): bounds its lists too.
    pub request_bytes: usize,
    /// Rows of a registered table (`--max-table-rows`), read from the file's footer.
    pub table_rows: usize,
    /// Bytes of a table's run description (`--max-table-meta-kb`): items, step groups, config.
    pub table_meta_bytes: usize,
    /// Step groups of a registered table (`--max-step-groups`).
    pub step_groups: usize,
    /// Points of one sweep (`--max-sweep-points`).
    pub sweep_points: usize,
    /// Budgets of one request (`--max-budgets`).
    pub budgets: usize,
    /// Requests waiting for a worker; one more is answered 503 (`--queue`).
    pub queue: usize,
    /// Solving time of one request, a whole sweep included (`--request-time-limit`).
    pub request_time: Duration,
    /// The longest a connection may take to send a request's head, and may sit idle between
    /// requests (`--header-timeout`).
    pub header_timeout: Duration,
    /// The longest a request's body may take to arrive (`--body-timeout`).
    pub body_timeout: Duration,
    /// Open connections; more wait to be accepted (`--max-connections`).
    pub connections: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        table_bytes: 64_000_000,
        request_bytes: 64 * 1024,
        table_rows: 1_000_000,
        table_meta_bytes: 1024 * 1024,
        step_groups: 64,
        sweep_points: 1_000,
        budgets: 8,
        queue: 64,
        request_time: Duration::from_secs(120),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(60),
        connections: 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `asked` of `what` against the `limit` that `flag` sets: past it, the one line a refusal
/// says (what was asked, and the flag that allows more).
pub fn at_most(what: &str, asked: usize, flag: &str, limit: usize) -> Result<(), String> {
    if asked > limit {
        return Err(format!("{what}: {asked} is more than this service takes ({flag} {limit})"));
    }
    Ok(())
}

/// Longest request target (path and query), bytes; longer ones are answered 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request head (request line and headers), bytes; larger ones are answered 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most headers of one request; more are answered 431.
pub const MAX_HEADERS: usize = 100;
