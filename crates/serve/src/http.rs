//! The connections: hyper's HTTP/1 server with its own header-read timeout (which also closes
//! connections idle between requests), a cap on open connections, and a graceful stop.

use crate::limits::{Limits, MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// File descriptors kept free of connections: the catalogue, table files, reports, the log.
const SPARE_FILES: u64 = 64;
/// How long a stop waits for answers in flight before closing their connections.
const DRAIN: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` for `app` until `stop` resolves.
pub async fn run(listener: TcpListener, app: Router, limits: &Limits, stop: impl Future<Output = ()>) {
    let cap = connection_cap(limits.connections);
    let open = Arc::new(Semaphore::new(cap));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Room for the heads errors::heads answers itself (414, 431, with a JSON body); past
        // this hyper closes the connection with its own bare status.
        .max_buf_size(2 * (MAX_HEAD_BYTES + MAX_URI_BYTES))
        .max_headers(4 * MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        // At the cap, new connections wait in the listen backlog until one closes.
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => slot,
            () = &mut stop => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: retry soon.
                log::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("connection: {e}");
            }
            drop(slot);
            crate::memory::quiet();
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        log::warn!("stopping with answers still in flight");
    }
}

/// `wanted` connections, fewer if the process may not open that many files: the soft limit on
/// open files is raised to the hard one first.
fn connection_cap(wanted: usize) -> usize {
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let cap = wanted.min(files.saturating_sub(SPARE_FILES).max(1) as usize);
    if cap < wanted {
        log::warn!("--max-connections {wanted}: the process may open {files} files, so at most {cap} connections");
    }
    cap
}
