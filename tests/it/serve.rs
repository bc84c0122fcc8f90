//! `bitsearch serve` end to end: the real server on a loopback port, a registered table, plans
//! and frontiers equal to `bitsearch solve`'s, the cache across restarts, the report served,
//! the OpenAPI document covering every route, bad input answered 4xx with one line, and a
//! registration killed at any moment leaving the catalogue consistent.

use crate::common::{assert_success, bitsearch};
use bitsearch_records::{FrontierPoint, Plan, PointKind, SensitivityTable, read_frontier};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A server process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitsearch"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Server { child, url }
    }

    /// `method path` with `body`, the bearer `token` if any: the status and the body.
    pub fn call(&self, method: &str, path: &str, body: &[u8], token: Option<&str>) -> (u16, String) {
        let mut request = ureq::request(method, &format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = if method == "GET" { request.call() } else { request.send_bytes(body) };
        match response {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    pub fn json(&self, method: &str, path: &str, body: &[u8]) -> serde_json::Value {
        let (status, text) = self.call(method, path, body, None);
        assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A synthetic table of `layers` layers at W2/W4/W8, written to `dir`.
pub fn table(dir: &Path, layers: usize) -> PathBuf {
    let path = dir.join(format!("table-{layers}.parquet"));
    bitsearch_fixtures::sensitivity_table(7, layers, &[2, 4, 8], 1).write(&path).unwrap();
    path
}

pub fn plan_request(table: &str, budget: &str) -> Vec<u8> {
    serde_json::json!({ "table": table, "budgets": [budget] }).to_string().into_bytes()
}

pub fn sweep_request(table: &str, sweep: &str) -> Vec<u8> {
    serde_json::json!({ "table": table, "sweep": sweep }).to_string().into_bytes()
}

#[test]
fn served_plans_equal_the_cli_and_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = table(dir.path(), 12);
    let bytes = std::fs::read(&path).unwrap();
    let server = Server::start(&data, &[]);
    assert_eq!(server.call("GET", "/health", b"", None), (200, "ok\n".into()));
    let entry = server.json("POST", "/tables", &bytes);
    let id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(id, bitsearch_types::sha256_hex(&bytes));
    assert_eq!(entry["layers"], 12);
    assert_eq!(server.json("POST", "/tables", &bytes)["id"], id.as_str(), "registering twice finds it");
    assert_eq!(server.json("GET", "/tables", b"").as_array().unwrap().len(), 1);

    let budgets = ["avg-bits=3.5", "avg-bits=5", "memory=60%"];
    for budget in budgets {
        let answer = server.json("POST", "/plans", &plan_request(&id, budget));
        assert_eq!(answer["cached"], false, "{budget}");
        assert_eq!(answer["status"], "optimal");
        let served: Plan = serde_json::from_value(answer["plan"].clone()).unwrap();
        let out = dir.path().join("cli.yaml");
        let cli =
            ["solve", "--sensitivity", path.to_str().unwrap(), "--budget", budget, "--out", out.to_str().unwrap()];
        assert_success(&bitsearch(&cli));
        let cli = Plan::read(&out).unwrap();
        assert_eq!(served.layers, cli.layers, "{budget}: the served plan must be the CLI's");
        assert_eq!(served.budgets, cli.budgets, "{budget}");
        assert_eq!(served.summary, cli.summary, "{budget}");
        let again = server.json("POST", "/plans", &plan_request(&id, budget));
        assert_eq!(again["cached"], true, "{budget}: a repeated request is a cache hit");
        assert_eq!(again["plan"], answer["plan"]);
        let by_id = server.json("GET", &format!("/plans/{}", answer["id"].as_str().unwrap()), b"");
        assert_eq!(by_id["plan"], answer["plan"], "{budget}: the plan by its id");
    }
    let metrics = server.call("GET", "/metrics", b"", None).1;
    assert!(metrics.contains("bitsearch_plan_cache_hits_total 3\n"), "{metrics}");
    assert!(metrics.contains("bitsearch_solve_seconds_count 3\n"), "{metrics}");
    drop(server);

    let server = Server::start(&data, &[]);
    assert_eq!(server.json("GET", "/tables", b"")[0]["id"], id.as_str(), "the catalogue survives a restart");
    let answer = server.json("POST", "/plans", &plan_request(&id, budgets[0]));
    assert_eq!(answer["cached"], true, "the cache survives a restart");
    let (status, yaml) = server.call("POST", "/plans?format=yaml", &plan_request(&id, budgets[0]), None);
    assert_eq!(status, 200);
    let plan: Plan = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(serde_json::to_value(&plan).unwrap(), answer["plan"]);
}

/// `POST /frontiers` with `body`, whole and streamed: the whole answer, the streamed lines.
fn frontier(server: &Server, body: &serde_json::Value) -> (serde_json::Value, Vec<serde_json::Value>) {
    let body = body.to_string().into_bytes();
    let whole = server.json("POST", "/frontiers", &body);
    let (status, text) = server.call("POST", "/frontiers?stream=true", &body, None);
    assert_eq!(status, 200, "{text}");
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (whole, lines)
}

#[test]
fn served_frontiers_equal_the_cli_sweep_streamed_or_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = table(dir.path(), 10);
    let server = Server::start(&dir.path().join("data"), &[]);
    let id = server.json("POST", "/tables", &std::fs::read(&path).unwrap())["id"].as_str().unwrap().to_string();
    // The first budget is below every plan: left out, as the CLI leaves it out.
    let sweep = "avg-bits=1..8:5";
    let request = serde_json::json!({ "table": id, "sweep": sweep });
    let (whole, lines) = frontier(&server, &request);
    assert_eq!(whole["cached"], false);
    assert_eq!((whole["solved"].as_u64(), whole["of"].as_u64()), (Some(4), Some(5)));
    assert_eq!(whole["left_out"].as_array().unwrap().len(), 1);
    assert!(whole["left_out"][0]["error"].as_str().unwrap().contains("smallest feasible"), "{whole}");

    let out = dir.path().join("sweep");
    let cli = ["solve", "--sensitivity", path.to_str().unwrap(), "--sweep", sweep, "--out", out.to_str().unwrap()];
    assert_success(&bitsearch(&cli));
    let cli = read_frontier(&out.join("frontier.parquet")).unwrap();
    let served: Vec<FrontierPoint> = serde_json::from_value(whole["points"].clone()).unwrap();
    assert_eq!(served.len(), cli.len());
    for (s, c) in served.iter().zip(&cli) {
        assert_eq!(FrontierPoint { plan: c.plan.clone(), ..s.clone() }, *c, "the served point is the CLI's");
        if s.kind == PointKind::Ilp {
            let plan: Plan =
                serde_json::from_value(server.json("GET", &format!("/plans/{}", s.plan), b"")["plan"].clone()).unwrap();
            assert_eq!(plan.layers, Plan::read(&out.join(&c.plan)).unwrap().layers, "point {}", s.budget);
        }
    }

    // Streamed: the same points and left-out budget as they come, then the last line.
    let point_lines: Vec<_> = lines.iter().filter_map(|l| l.get("point")).cloned().collect();
    assert_eq!(point_lines, *whole["points"].as_array().unwrap());
    assert_eq!(lines.iter().filter(|l| l.get("left_out").is_some()).count(), 1);
    let done = &lines.last().unwrap()["done"];
    assert_eq!((done["id"].clone(), done["solved"].clone()), (whole["id"].clone(), whole["solved"].clone()));
    assert_eq!(done["cached"], true, "the streamed request came after the whole one");

    let again = server.json("POST", "/frontiers", request.to_string().as_bytes());
    assert_eq!(again["cached"], true);
    assert_eq!(again["points"], whole["points"]);
    // A request the catalogue has not seen streams as it solves.
    let fresh = serde_json::json!({ "table": id, "sweep": "avg-bits=3..6:3", "budgets": ["memory=90%"] });
    let (_, streamed) = frontier(&server, &fresh);
    assert_eq!(streamed.iter().filter(|l| l.get("point").is_some()).count(), 3 + 3, "3 budgets and 3 uniform plans");
    let nothing = serde_json::json!({ "table": id, "sweep": "avg-bits=0.5..1:2" });
    let (status, text) = server.call("POST", "/frontiers", nothing.to_string().as_bytes(), None);
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("none of the sweep's 2 budgets can be met"), "{text}");
}

#[test]
fn the_report_of_a_table_and_its_plans_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let id = server.json("POST", "/tables", &std::fs::read(table(dir.path(), 8)).unwrap())["id"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let report = |agent: &ureq::Agent| {
        let response = match agent.get(&format!("{}/tables/{id}/report", server.url)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(response.status(), 303);
        response.header("location").unwrap().to_string()
    };
    let bare = report(&agent);
    let plan = server.json("POST", "/plans", &plan_request(&id, "avg-bits=4"));
    server.json(
        "POST",
        "/frontiers",
        serde_json::json!({ "table": id, "sweep": "avg-bits=3..6:3" }).to_string().as_bytes(),
    );
    let page = report(&agent);
    assert_ne!(page, bare, "a new plan makes a new report");
    assert_eq!(report(&agent), page, "an unchanged catalogue reuses the report");
    let (status, html) = server.call("GET", &page, b"", None);
    assert_eq!(status, 200);
    let plan_id = &plan["id"].as_str().unwrap()[..16];
    assert!(html.contains(plan_id), "the page names the plan");
    assert!(html.contains("frontier.png"), "the page draws the frontier");
    let folder = page.trim_end_matches("index.html");
    let (status, _) = server.call("GET", &format!("{folder}frontier.png"), b"", None);
    assert_eq!(status, 200, "figures are served beside the page");
    let (status, _) = server.call("GET", &format!("{folder}plans/{plan_id}.yaml"), b"", None);
    assert_eq!(status, 200, "so are the plans it draws");
    assert_eq!(std::fs::read_dir(data.join("reports")).unwrap().count(), 1, "the newer report replaced the older");
    assert_eq!(server.call("GET", "/reports/../catalogue.sqlite", b"", None).0, 404);
}

/// The routes the service answers, with their methods: what the OpenAPI document must list.
const ROUTES: [(&str, &str); 10] = [
    ("post", "/tables"),
    ("get", "/tables"),
    ("get", "/tables/{id}"),
    ("get", "/tables/{id}/report"),
    ("post", "/plans"),
    ("get", "/plans/{id}"),
    ("post", "/frontiers"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/health"),
];

#[test]
fn the_openapi_document_describes_every_route_and_is_the_one_in_docs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let document = server.json("GET", "/openapi.json", b"");
    let paths = document["paths"].as_object().unwrap();
    let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(listed, ROUTES.len(), "{:?}", paths.keys());
    for (method, path) in ROUTES {
        let operation = &paths[path][method];
        assert!(operation["responses"].is_object(), "{method} {path}");
        // Every route is there to answer: nothing the document lists is 404 or 405 here.
        let url = path.replace("{id}", "0");
        let status = server.call(&method.to_uppercase(), &url, b"{}", None).0;
        assert!(status != 405 && (status != 404 || path.contains("{id}")), "{method} {path}: {status}");
    }
    for schema in ["PlanRequest", "PlanAnswer", "FrontierRequest", "FrontierAnswer", "FrontierEvent", "FrontierPoint"] {
        assert!(document["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let text = serde_json::to_string_pretty(&document).unwrap() + "\n";
    if std::env::var_os("BITSEARCH_BLESS").is_some() {
        std::fs::write(&docs, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&docs).unwrap_or_default(),
        text,
        "docs/openapi.json is stale: rerun with BITSEARCH_BLESS=1"
    );
}

#[test]
fn bad_requests_are_answered_4xx_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = Server::start(&dir.path().join("data"), &["--token-file", token_file.to_str().unwrap()]);
    let token = Some("s3cret");
    let (status, text) = server.call("POST", "/tables", &std::fs::read(table(dir.path(), 6)).unwrap(), token);
    assert_eq!(status, 201, "{text}");
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"].as_str().unwrap().to_string();
    // A shard's table: one layer's probes are absent.
    let mut shard = bitsearch_fixtures::sensitivity_table(7, 6, &[2, 4, 8], 1);
    let first = shard.rows[0].layer.name.clone();
    shard.rows.retain(|r| r.layer.name != first);
    let shard_path = dir.path().join("shard.parquet");
    shard.write(&shard_path).unwrap();
    // Method, path, body, token, expected status, words of the message.
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", "/tables", vec![], None, 401, "missing bearer token"),
        ("GET", "/tables", vec![], Some("guess"), 403, "wrong bearer token"),
        ("POST", "/plans", b"{not json".to_vec(), token, 400, "plan request"),
        ("POST", "/plans", br#"{"table": "x", "budget": []}"#.to_vec(), token, 400, "unknown field `budget`"),
        ("POST", "/plans", plan_request("feed", "avg-bits=4"), token, 404, "table 'feed' is not registered"),
        ("GET", "/tables/feed", vec![], token, 404, "table 'feed' is not registered"),
        ("POST", "/plans", plan_request(&id, "speed=4"), token, 400, "speed"),
        ("POST", "/plans", plan_request(&id, "avg-bits=1"), token, 422, "smallest feasible"),
        ("POST", "/plans?format=xml", plan_request(&id, "avg-bits=4"), token, 400, "expected json or yaml"),
        ("POST", "/tables", b"not parquet".to_vec(), token, 400, "not a sensitivity table"),
        ("POST", "/tables", std::fs::read(&shard_path).unwrap(), token, 400, "3 of the run's 18 probes are missing"),
        ("GET", "/plans/feed", vec![], token, 404, "plan 'feed' was never answered here"),
        ("GET", "/tables/feed/report", vec![], token, 404, "table 'feed' is not registered"),
        ("POST", "/frontiers", sweep_request(&id, "avg-bits=2..8"), token, 400, "is not a sweep"),
        ("POST", "/frontiers", sweep_request(&id, "speed=1..2:3"), token, 400, "speed"),
        ("POST", "/frontiers", sweep_request("feed", "avg-bits=2..8:4"), token, 404, "table 'feed'"),
    ];
    for (method, path, body, token, expected, message) in cases {
        let (status, text) = server.call(method, path, &body, token);
        assert_eq!(status, expected, "{method} {path}: {text}");
        let error = serde_json::from_str::<serde_json::Value>(&text).unwrap()["error"].as_str().unwrap().to_string();
        assert!(error.contains(message) && !error.contains('\n'), "{method} {path}: {error}");
    }
    assert_eq!(server.call("GET", "/health", b"", None).0, 200, "health needs no token");
    assert_eq!(server.call("GET", "/reports/", b"", None).0, 401, "reports need the token");
    assert_eq!(server.call("GET", "/openapi.json", b"", None).0, 401);
    let metrics = server.call("GET", "/metrics", b"", token).1;
    assert!(metrics.contains("bitsearch_server_errors_total 0\n"), "{metrics}");
}

#[test]
fn a_registration_killed_at_any_moment_leaves_the_catalogue_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bytes = std::fs::read(table(dir.path(), 400)).unwrap();
    for delay_ms in [0, 2, 5, 10, 20, 40] {
        let mut server = Server::start(&data, &[]);
        let url = format!("{}/tables", server.url);
        let body = bytes.clone();
        // Whether the upload is answered depends on when the kill lands.
        let upload = std::thread::spawn(move || ureq::post(&url).send_bytes(&body).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let _ = upload.join();
        let server = Server::start(&data, &[]);
        let listed = server.json("GET", "/tables", b"");
        for entry in listed.as_array().unwrap() {
            let id = entry["id"].as_str().unwrap();
            let file = data.join("tables").join(format!("{id}.parquet"));
            assert_eq!(bitsearch_types::sha256_hex(&std::fs::read(&file).unwrap()), id, "a listed table is whole");
            SensitivityTable::read(&file).unwrap();
        }
        let leftovers = std::fs::read_dir(data.join("tables")).unwrap().flatten();
        assert!(leftovers.into_iter().all(|e| !e.file_name().to_string_lossy().starts_with(".upload")));
        assert_eq!(server.json("POST", "/tables", &bytes)["id"], bitsearch_types::sha256_hex(&bytes));
        drop(server);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
