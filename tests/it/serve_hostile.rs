//! `bitsearch serve` against hostile clients: damaged and extreme tables, sweeps and lists past
//! the limits, abandoned and overlong work, slow and oversized heads and bodies, a full queue,
//! and the error contract. Each case is a request with its expected status and a JSON error
//! body; afterwards the server is alive, its catalogue whole and a cached plan still answered.

use crate::serve::{Server, plan_request, sweep_request, table};
use bitsearch_records::SensitivityTable;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The one-line message of a JSON error body.
fn error_of(text: &str) -> String {
    let body: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let error = body["error"].as_str().unwrap_or_else(|| panic!("no error field: {text}")).to_string();
    assert!(!error.contains('\n'), "{error}");
    error
}

/// Asserts `(status, body)` is `expected` with a JSON error naming `words`.
fn refused(answer: (u16, String), expected: u16, words: &str, case: &str) {
    let (status, text) = answer;
    assert_eq!(status, expected, "{case}: {text}");
    let error = error_of(&text);
    assert!(error.contains(words), "{case}: {error}");
}

/// A connection for what a polite client never sends.
fn raw(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads what the server sends until it closes: the status and body of its answer, if any.
fn answer(mut stream: TcpStream) -> Option<(u16, String)> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// Whether the server closes `stream` within `within`, sending nothing but perhaps a status.
fn closes_within(mut stream: TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// Whether `holds` comes true within 10 s.
fn eventually(holds: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if holds() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn metric(server: &Server, token: Option<&str>, name: &str) -> f64 {
    let text = server.call("GET", "/metrics", b"", token).1;
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(f64::NAN)
}

fn register(server: &Server, token: Option<&str>, path: &Path) -> String {
    let (status, text) = server.call("POST", "/tables", &std::fs::read(path).unwrap(), token);
    assert_eq!(status, 201, "{text}");
    error_free_id(&text)
}

/// Tables a hostile client might upload, as (name, bytes, expected status, words).
fn hostile_tables(dir: &Path) -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let write = |name: &str, table: &SensitivityTable| {
        let path = dir.join(format!("{name}.parquet"));
        table.write(&path).unwrap();
        std::fs::read(&path).unwrap()
    };
    let good = bitsearch_fixtures::sensitivity_table(11, 12, &[2, 4, 8], 1);
    let mut flipped = write("flipped", &good);
    let middle = flipped.len() / 3;
    for byte in &mut flipped[middle..middle + 20] {
        *byte ^= 0x5a;
    }
    let edit = |name: &str, f: &dyn Fn(&mut SensitivityTable)| {
        let mut table = good.clone();
        f(&mut table);
        write(name, &table)
    };
    vec![
        ("flipped pages", flipped, 400, "checksum"),
        ("NaN sqnr", edit("nan", &|t| t.rows[3].sqnr_db = f64::NAN), 400, "rows[3].sqnr_db"),
        ("negative mse", edit("mse", &|t| t.rows[2].mse = -1.0), 400, "rows[2].mse"),
        ("duplicate rows", edit("dup", &|t| t.rows[1].probe = t.rows[0].probe), 400, "rows"),
        ("no rows", edit("empty", &|t| t.rows.clear()), 400, "probes are missing"),
        ("one row", edit("one", &|t| t.rows.truncate(1)), 400, "probes are missing"),
        ("no step groups", edit("groups", &|t| t.meta.step_groups.clear()), 400, "step_groups"),
        ("params 0", edit("p0", &|t| t.rows.iter_mut().for_each(|r| r.layer.params = 0)), 400, "params"),
        ("params 2^63", edit("p63", &|t| t.rows.iter_mut().for_each(|r| r.layer.params = 1 << 63)), 400, "params"),
        (
            "100 step groups",
            write("steps", &bitsearch_fixtures::sensitivity_table(11, 4, &[2, 4, 8], 100)),
            400,
            "--max-step-groups 64",
        ),
        (
            "2 MB of items",
            edit("items", &|t| t.meta.items = vec!["x".repeat(1000); 2000]),
            400,
            "--max-table-meta-kb 1024",
        ),
        (
            "too many rows",
            write("rows", &bitsearch_fixtures::sensitivity_table(11, 700, &[2, 4, 8], 1)),
            400,
            "--max-table-rows 2000",
        ),
    ]
}

#[test]
fn hostile_requests_are_refused_with_json_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let data = dir.path().join("data");
    let args = [
        "--token-file",
        token_file.to_str().unwrap(),
        "--workers",
        "1",
        "--queue",
        "1",
        "--request-time-limit",
        "1",
        "--max-table-rows",
        "2000",
        "--max-sweep-points",
        "1000",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
    ];
    let server = Server::start(&data, &args);
    let token = Some("s3cret");
    let call = |method: &str, path: &str, body: &[u8]| server.call(method, path, body, token);
    let small = table(dir.path(), 12);
    let id = register(&server, token, &small);
    let (status, cached) = call("POST", "/plans", &plan_request(&id, "avg-bits=4"));
    assert_eq!(status, 200, "{cached}");

    for (case, bytes, expected, words) in hostile_tables(dir.path()) {
        refused(call("POST", "/tables", &bytes), expected, words, case);
    }

    // Extreme but valid numbers register, solve, sweep and report; the stored frontier reads back.
    let mut extreme = bitsearch_fixtures::sensitivity_table(5, 10, &[2, 4, 8], 1);
    extreme.rows[4].sqnr_db = f64::INFINITY;
    extreme.rows[7].sqnr_db = 1e308;
    extreme.rows[9].psnr_db = f64::NEG_INFINITY;
    let extreme_path = dir.path().join("extreme.parquet");
    extreme.write(&extreme_path).unwrap();
    let extreme_id = register(&server, token, &extreme_path);
    for _ in 0..2 {
        let (status, text) = call("POST", "/frontiers", &sweep_request(&extreme_id, "avg-bits=3..8:4"));
        assert_eq!(status, 200, "a sweep of a table with infinite SQNR, and its stored copy: {text}");
    }
    let (status, _) = call("POST", "/plans", &plan_request(&extreme_id, "avg-bits=5"));
    assert!(status == 200 || status == 422, "{status}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let report = agent.get(&format!("{}/tables/{extreme_id}/report", server.url)).set("Authorization", "Bearer s3cret");
    let status = match report.call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 303, "the report of a table with infinite values");

    // Sweeps and lists past the limits: refused before anything is allocated for them.
    let budgets: Vec<String> = (0..9).map(|i| format!("avg-bits={}", 3 + i)).collect();
    let many = serde_json::json!({ "table": id, "budgets": budgets }).to_string();
    let long_target = format!("/tables/{}", "x".repeat(10_000));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/frontiers", sweep_request(&id, "avg-bits=4..8:1000000000"), 400, "2..=10000"),
        ("POST", "/frontiers", sweep_request(&id, "avg-bits=4..8:18446744073709551615"), 400, "2..=10000"),
        ("POST", "/frontiers?stream=true", sweep_request(&id, "avg-bits=4..8:1000000000"), 400, "2..=10000"),
        ("POST", "/frontiers", sweep_request(&id, "avg-bits=4..8:1001"), 400, "--max-sweep-points 1000"),
        ("POST", "/plans", many.into_bytes(), 400, "--max-budgets 8"),
        ("POST", "/plans", plan_request(&id, "4.5"), 400, "unit"),
        ("POST", "/frontiers?stream=maybe", sweep_request(&id, "avg-bits=4..8:4"), 400, "stream"),
        ("GET", "/nowhere", vec![], 404, "Not Found"),
        ("DELETE", "/tables", vec![], 405, "Method Not Allowed"),
        ("GET", &long_target, vec![], 414, "at most 8192"),
    ];
    for (method, path, body, expected, words) in cases {
        refused(call(method, path, &body), expected, words, &format!("{method} {}", &path[..path.len().min(40)]));
    }
    let mut crowded = ureq::get(&format!("{}/tables", server.url)).set("Authorization", "Bearer s3cret");
    for i in 0..150 {
        crowded = crowded.set(&format!("x-filler-{i}"), "1");
    }
    match crowded.call() {
        Err(ureq::Error::Status(code, r)) => {
            refused((code, r.into_string().unwrap()), 431, "at most 100 headers", "431")
        }
        other => panic!("150 headers: {other:?}"),
    }
    let lower = ureq::get(&format!("{}/tables", server.url)).set("Authorization", "bearer s3cret").call();
    assert_eq!(lower.map(|r| r.status()).ok(), Some(200), "the scheme's name is case-insensitive");

    // A sweep longer than --request-time-limit stops there: whole, 503; streamed, an error line.
    let large = register(&server, token, &table(dir.path(), 255));
    let long = sweep_request(&large, "avg-bits=2.5..8:1000");
    let started = Instant::now();
    refused(call("POST", "/frontiers", &long), 503, "--request-time-limit 1", "a sweep past its time");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let (status, text) = call("POST", "/frontiers?stream=true", &long);
    assert_eq!(status, 200);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["error"].as_str().unwrap().contains("--request-time-limit"), "{last}");

    // The HTTP stack's own bounds: a head sent slowly, an idle connection, an announced body too
    // large (refused before it is sent), a body that never arrives.
    let mut slow = raw(&server);
    slow.write_all(b"GET /hea").unwrap();
    assert!(closes_within(slow, Duration::from_secs(4)), "half a request line is dropped after --header-timeout");
    let mut drip = raw(&server);
    let started = Instant::now();
    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1" {
        if drip.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(4) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() < Duration::from_secs(4), "a head sent a byte at a time is cut off");
    let mut idle = raw(&server);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closes_within(idle, Duration::from_secs(4)), "an idle keep-alive connection is closed");
    let mut huge = raw(&server);
    huge.write_all(
        b"POST /tables HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    .unwrap();
    let started = Instant::now();
    let (status, text) = answer(huge).unwrap();
    refused((status, text), 413, "--max-body-mb 64", "an announced terabyte");
    assert!(started.elapsed() < Duration::from_secs(5), "413 before the body: {:?}", started.elapsed());
    let mut chunked = raw(&server);
    let head = "POST /plans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\n\r\n";
    chunked.write_all(format!("{head}{:x}\r\n{}\r\n0\r\n\r\n", 70_000, " ".repeat(70_000)).as_bytes()).unwrap();
    refused(answer(chunked).unwrap(), 413, "--max-request-kb 64", "a body past its limit, unannounced");
    let mut stalled = raw(&server);
    stalled
        .write_all(b"POST /plans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    refused(answer(stalled).unwrap(), 408, "--body-timeout 1", "a body that never comes");

    // A server fault answers 500 without its paths or the fault's text.
    let file = data.join("tables").join(format!("{id}.parquet"));
    let kept = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let (status, text) = call("POST", "/plans", &plan_request(&id, "avg-bits=6"));
    assert_eq!(status, 500, "{text}");
    let error = error_of(&text);
    assert!(!error.contains(dir.path().to_str().unwrap()) && !error.contains("parquet"), "{error}");
    std::fs::write(&file, kept).unwrap();

    // Afterwards: alive, the catalogue whole, the cached plan answered from it.
    assert_eq!(server.call("GET", "/health", b"", None).0, 200);
    let (status, again) = call("POST", "/plans", &plan_request(&id, "avg-bits=4"));
    assert_eq!(status, 200, "{again}");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["cached"], true);
    let listed: serde_json::Value = serde_json::from_str(&call("GET", "/tables", b"").1).unwrap();
    let mut ids: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected = vec![id.as_str(), extreme_id.as_str(), large.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "nothing lost, nothing hostile registered");
    assert_eq!(metric(&server, token, "bitsearch_solve_queue_depth"), 0.0);
}

fn error_free_id(text: &str) -> String {
    let entry: serde_json::Value = serde_json::from_str(text).unwrap();
    entry["id"].as_str().unwrap_or_else(|| panic!("{text}")).to_string()
}

#[test]
fn abandoned_work_frees_its_worker_and_a_full_queue_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&dir.path().join("data"), &["--workers", "1", "--queue", "1", "--max-connections", "16"]);
    let id = register(&server, None, &table(dir.path(), 255));
    let long = String::from_utf8(sweep_request(&id, "avg-bits=2.5..8:1000")).unwrap();
    let post = |path: &str, body: &str| {
        let mut stream = raw(&server);
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream
    };

    // A whole sweep, then a streamed one, each abandoned: the worker is free again at once.
    for (path, budget) in [("/frontiers", "avg-bits=3.5"), ("/frontiers?stream=true", "avg-bits=3.75")] {
        let sweep = post(path, &long);
        std::thread::sleep(Duration::from_millis(500));
        drop(sweep);
        let started = Instant::now();
        server.json("POST", "/plans", &plan_request(&id, budget));
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: the worker was kept {:?}", started.elapsed());
    }
    assert_eq!(metric(&server, None, "bitsearch_frontiers_total"), 0.0, "neither abandoned sweep ran to its end");

    // The worker busy with a stream: one request waits, the next are refused 503 with
    // Retry-After, and one that leaves the line leaves the gauge.
    let mut stream = post("/frontiers?stream=true", &long);
    let mut first = [0u8; 64];
    let _ = stream.read(&mut first).unwrap();
    let waiting = post("/plans", &String::from_utf8(plan_request(&id, "avg-bits=4.25")).unwrap());
    assert!(eventually(|| metric(&server, None, "bitsearch_solve_queue_depth") == 1.0), "one request waits");
    for bits in ["4.5", "4.75"] {
        let response =
            ureq::post(&format!("{}/plans", server.url)).send_bytes(&plan_request(&id, &format!("avg-bits={bits}")));
        let Err(ureq::Error::Status(503, response)) = response else { panic!("a full queue: {response:?}") };
        let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        error_of(&response.into_string().unwrap());
    }
    drop(waiting);
    let gauge = || metric(&server, None, "bitsearch_solve_queue_depth");
    assert!(eventually(|| gauge() == 0.0), "a client gone from the line leaves the gauge: {}", gauge());
    drop(stream);
    server.json("POST", "/plans", &plan_request(&id, "avg-bits=5.5"));
}

#[test]
fn idle_connections_past_the_cap_wait_for_a_slot_and_health_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-connections", "4", "--header-timeout", "1"]);
    let idle: Vec<TcpStream> = (0..12).map(|_| raw(&server)).collect();
    let started = Instant::now();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
    let health = agent.get(&format!("{}/health", server.url)).call().map(|r| r.status());
    assert_eq!(health.ok(), Some(200));
    // Three rounds of four idle connections, each closed after its second, go first.
    let waited = started.elapsed();
    assert!(waited > Duration::from_millis(900) && waited < Duration::from_secs(15), "{waited:?}");
    drop(idle);
}
