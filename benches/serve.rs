//! `make bench`: `bitsearch serve` under load on loopback: 32 clients × 50 requests each at
//! once, plan requests over 16 budgets of one registered table (the first of each budget a
//! solve, the rest cache hits) with a listing every tenth request. Stops by itself; any error
//! fails the bench. Writes out/bench/serve.md and prints it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const REQUESTS: usize = 50;
const BUDGETS: usize = 16;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let table = dir.path().join("table.parquet");
    bitsearch_fixtures::sensitivity_table(3, 255, &[2, 4, 8], 1).write(&table)?;
    let mut server = Command::new(env!("CARGO_BIN_EXE_bitsearch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let url = line.trim().rsplit(' ').next().ok_or("no address")?.to_string();
    let registered: serde_json::Value =
        ureq::post(&format!("{url}/tables")).send_bytes(&std::fs::read(&table)?)?.into_json()?;
    let id = registered["id"].as_str().ok_or("no id")?.to_string();

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
    let counter =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(f64::NAN);
    let table = format!(
        "# Service benchmark\n\n`bitsearch serve` on loopback, default settings (2 solve workers), one registered synthetic \
         table (255 layers × W2/W4/W8); {CLIENTS} clients × {REQUESTS} requests at once: plan requests over {BUDGETS} \
         avg-bits budgets (the first request of each is solved, the rest are cache hits) and a table listing every \
         tenth request. {} CPU threads available.\n\n| requests | errors | solves | cache hits | p50 ms | p99 ms | max ms | \
         requests/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {errors} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        results.len(),
        counter("bitsearch_solves_total"),
        counter("bitsearch_plan_cache_hits_total"),
        quantile(0.5),
        quantile(0.99),
        times[times.len() - 1],
        results.len() as f64 / wall.as_secs_f64()
    );
    common::publish("serve.md", &table)?;
    if errors > 0 {
        return Err(format!("{errors} of {} requests failed", results.len()).into());
    }
    Ok(())
}
