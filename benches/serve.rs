//! `make bench`: `bitsearch serve` under load on loopback. First 32 clients × 50 requests each
//! at once, plan requests over 16 budgets of one registered table (the first of each budget a
//! solve, the rest cache hits) with a listing every tenth request; any error fails the bench.
//! Then a flood: 2,000 distinct budgets (each a solve) from 512 clients at once against the
//! default queue, while one more client asks `/health` every 20 ms: how many are refused 503,
//! the health check's latency, and the server's memory before and after. Writes
//! out/bench/serve.md and prints it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const REQUESTS: usize = 50;
const BUDGETS: usize = 16;
const FLOOD_BUDGETS: usize = 2_000;
const FLOOD_CLIENTS: usize = 512;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let table = dir.path().join("table.parquet");
    bitsearch_fixtures::sensitivity_table(3, 255, &[2, 4, 8], 1).write(&table)?;
    let table = std::fs::read(&table)?;
    let (mut server, url, id) = start(&dir.path().join("data"), &table)?;

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, id) = (url.clone(), id.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
                (0..REQUESTS)
                    .map(|i| {
                        let sent = Instant::now();
                        let answer = if i % 10 == 9 {
                            agent.get(&format!("{url}/tables")).call().map(|_| ())
                        } else {
                            let bits = 2.5 + ((client + i) % BUDGETS) as f64 * 0.25;
                            let body = serde_json::json!({ "table": id, "budgets": [format!("avg-bits={bits}")] });
                            agent.post(&format!("{url}/plans")).send_string(&body.to_string()).map(|_| ())
                        };
                        (sent.elapsed(), answer.is_ok())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for client in clients {
        results.extend(client.join().map_err(|_| "a client panicked")?);
    }
    let wall = started.elapsed();
    let metrics = ureq::get(&format!("{url}/metrics")).call()?.into_string()?;
    server.kill()?;
    server.wait()?;
    let errors = results.iter().filter(|(_, ok)| !ok).count();
    let mut times: Vec<f64> = results.iter().map(|(t, _)| t.as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    let quantile = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let counter = |name: &str| metric(&metrics, name).unwrap_or(f64::NAN);
    let load = format!(
        "# Service benchmark\n\n`bitsearch serve` on loopback, default settings (2 solve workers), one registered synthetic \
         table (255 layers × W2/W4/W8); {CLIENTS} clients × {REQUESTS} requests at once: plan requests over {BUDGETS} \
         avg-bits budgets (the first request of each is solved, the rest are cache hits) and a table listing every \
         tenth request. {} CPU threads available.\n\n| requests | errors | solves | cache hits | p50 ms | p99 ms | max ms | \
         requests/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {errors} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        results.len(),
        counter("bitsearch_solve_seconds_count"),
        counter("bitsearch_plan_cache_hits_total"),
        quantile(0.5),
        quantile(0.99),
        times[times.len() - 1],
        results.len() as f64 / wall.as_secs_f64()
    );
    if errors > 0 {
        return Err(format!("{errors} of {} requests failed", results.len()).into());
    }
    let flood = flood(&dir.path().join("flood"), &table)?;
    common::publish("serve.md", &format!("{load}{flood}"))?;
    Ok(())
}

/// A server on a free loopback port over `data`, default settings, with `table` registered:
/// the process, its URL and the table's id.
fn start(
    data: &std::path::Path,
    table: &[u8],
) -> Result<(std::process::Child, String, String), Box<dyn std::error::Error>> {
    let mut server = Command::new(env!("CARGO_BIN_EXE_bitsearch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let url = line.trim().rsplit(' ').next().ok_or("no address")?.to_string();
    let registered: serde_json::Value = ureq::post(&format!("{url}/tables")).send_bytes(table)?.into_json()?;
    let id = registered["id"].as_str().ok_or("no id")?.to_string();
    Ok((server, url, id))
}

/// The value of `name` in the Prometheus text `metrics`.
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Resident memory of process `pid`, MB.
fn rss_mb(pid: u32) -> Result<f64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).ok_or("no VmRSS")?;
    Ok(kb.trim().trim_end_matches("kB").trim().parse::<f64>()? / 1e3)
}

/// The flood: the markdown section of its row.
fn flood(data: &std::path::Path, table: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let (mut server, url, id) = start(data, table)?;
    let plan = move |bits: f64| {
        serde_json::json!({ "table": id.as_str(), "budgets": [format!("avg-bits={bits:.5}")] }).to_string()
    };
    // One solve first, so the memory measured before is a working server's.
    ureq::post(&format!("{url}/plans")).send_string(&plan(8.0))?;
    let before = rss_mb(server.id())?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = {
        let (url, done) = (url.clone(), done.clone());
        std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
            let mut times = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let sent = Instant::now();
                let ok = agent.get(&format!("{url}/health")).call().is_ok();
                times.push((sent.elapsed().as_secs_f64() * 1e3, ok));
                std::thread::sleep(Duration::from_millis(20));
            }
            times
        })
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..FLOOD_CLIENTS)
        .map(|_| {
            let (url, next, plan) = (url.clone(), next.clone(), plan.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
                let mut statuses = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= FLOOD_BUDGETS {
                        return statuses;
                    }
                    let bits = 2.5 + 5.0 * i as f64 / FLOOD_BUDGETS as f64;
                    let status = match agent.post(&format!("{url}/plans")).send_string(&plan(bits)) {
                        Ok(r) => r.status(),
                        Err(ureq::Error::Status(code, _)) => code,
                        Err(_) => 0,
                    };
                    statuses.push(status);
                }
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.join().map_err(|_| "a flood client panicked")?);
    }
    let wall = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut health = health.join().map_err(|_| "the health client panicked")?;
    // Idle threads of the blocking pool leave after 10 s: memory settles within 15.
    let mut after = rss_mb(server.id())?;
    let mut settled = 0;
    while after > before * 1.1 && settled < 15 {
        std::thread::sleep(Duration::from_secs(1));
        after = rss_mb(server.id())?;
        settled += 1;
    }
    let metrics = ureq::get(&format!("{url}/metrics")).call()?.into_string()?;
    server.kill()?;
    server.wait()?;
    let gauge = metric(&metrics, "bitsearch_solve_queue_depth").ok_or("no queue gauge")?;
    let count = |code: u16| statuses.iter().filter(|&&s| s == code).count();
    let others = statuses.len() - count(200) - count(422) - count(503);
    let failed_health = health.iter().filter(|(_, ok)| !ok).count();
    health.sort_by(|a, b| a.0.total_cmp(&b.0));
    let quantile = |q: f64| health[((health.len() - 1) as f64 * q).round() as usize].0;
    let row = format!(
        "\n## Flood\n\n{FLOOD_BUDGETS} plan requests, each a distinct avg-bits budget (so each a solve), from \
         {FLOOD_CLIENTS} clients at once against the default settings (2 workers, a queue of 64); one more client \
         asks `/health` every 20 ms throughout. Refused requests are answered 503 with `Retry-After` at once. \
         Memory is the server's resident set after one solve, and after the flood once it is back within 10% of that (checked each second, at most 15 s; `settled s`).\n\n| requests | answered \
         200 | 422 | refused 503 | other | /health checks (failed) | /health p50 ms | p99 ms | max ms | RSS before \
         MB | after MB | settled s | queue gauge after | wall s |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {others} | {} ({failed_health}) | {:.2} | {:.2} | {:.2} | {before:.1} | {after:.1} | \
         {settled} | {gauge} | {:.1} |\n",
        statuses.len(),
        count(200),
        count(422),
        count(503),
        health.len(),
        quantile(0.5),
        quantile(0.99),
        health[health.len() - 1].0,
        wall.as_secs_f64()
    );
    if others > 0 || failed_health > 0 || gauge != 0.0 || after > before * 1.1 {
        let failed = format!(
            "the flood: {others} unexpected answers, {failed_health} failed health checks, queue gauge {gauge}, \
             memory {before:.1} MB before and {after:.1} MB after"
        );
        return Err(format!("{failed}\n{row}").into());
    }
    Ok(row)
}
