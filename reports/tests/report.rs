//! Reports built from synthetic tables, plans solved from them, a sweep, evaluation records
//! and sample folders: every image the page references exists and is a real PNG; the measured
//! table shows each candidate's values; missing inputs leave notes; a corrupt table or
//! evaluation is an error naming the file.

// Test code as a whole, so clippy.toml's unwrap/expect allowance reaches helpers (rust-clippy#11119).
#![cfg(test)]

use bitsearch_records::{Cost, EVAL_FORMAT, EvalRecord, EvalRun, PointKind, Sweep, write_evals, write_frontier};
use bitsearch_reports::{MAX_COLUMNS, ReportInputs, write_report};
use bitsearch_solver::pareto;
use bitsearch_solver::{DEFAULT_PROTECT, Problem, SolveOptions, plan, solve};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `src` of every `<img>` of the page.
fn images(html: &str) -> Vec<String> {
    html.split("<img src=\"").skip(1).filter_map(|rest| rest.split('"').next().map(String::from)).collect()
}

fn inputs(dir: &Path) -> ReportInputs {
    let table = bitsearch_fixtures::sensitivity_table(9, 24, &[2, 4, 8], 2);
    let table_path = dir.join("s.parquet");
    table.write(&table_path).unwrap();
    let protect: Vec<String> = DEFAULT_PROTECT.iter().map(|s| s.to_string()).collect();
    let problem = Problem::from_table(&table, &protect, bitsearch_solver::LossBasis::Decoupled).unwrap();
    let options = SolveOptions { budgets: vec!["bops=40%".parse().unwrap()], ..Default::default() };
    let solved = solve(&problem, &options).unwrap();
    let plan_path = dir.join("plan.yaml");
    plan(&problem, &solved, &options, &table, &table_path).unwrap().write(&plan_path).unwrap();
    let sweep: Sweep = "avg-bits=2.5..8:6".parse().unwrap();
    let mut points: Vec<_> = pareto::run(&problem, &sweep, &SolveOptions::default())
        .iter()
        .map(|(i, _, s)| {
            pareto::point(
                PointKind::Ilp,
                format!("plan_{i}"),
                sweep.resource,
                s.limits[0].limit,
                &s.evaluation,
                s.status,
            )
        })
        .collect();
    points.extend(pareto::uniform_points(&problem, sweep.resource, 1.0));
    let frontier = dir.join("frontier.parquet");
    write_frontier(&points, &frontier).unwrap();
    let samples: Vec<PathBuf> = ["fp", "plan"]
        .iter()
        .map(|name| {
            let folder = dir.join(name);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..2 {
                image::RgbImage::from_pixel(16, 16, image::Rgb([40 * i, 90, 160]))
                    .save(folder.join(format!("sample_{i:03}.png")))
                    .unwrap();
            }
            folder
        })
        .collect();
    ReportInputs {
        sensitivity: Some(table_path),
        plans: vec![plan_path],
        frontier: Some(frontier),
        samples,
        evals: vec![evals(dir)],
        out: dir.join("report"),
    }
}

/// A candidate as `bitsearch eval` writes it: a quarter of the reference's file, 1.2× its
/// latency, measured 4 dB below the prediction.
fn candidate(label: &str, kind: &str, avg_bits: f64, sqnr_db: f64) -> EvalRecord {
    let reference_cost =
        Cost { file_bytes: 8_000_000, session_bytes: 16_000_000, start_seconds: 0.5, call_ms: 10.0, image_ms: 40.0 };
    EvalRecord {
        label: label.into(),
        candidate: format!("out/{label}"),
        kind: kind.into(),
        avg_bits,
        predicted_sqnr_db: sqnr_db + 4.0,
        predicted_ssim: 0.99,
        predicted_psnr_db: 33.0,
        sqnr_db,
        ssim: 0.98,
        psnr_db: 31.5,
        mse: 1e-3,
        nonfinite: 0,
        caption: f64::NAN,
        reference_caption: f64::NAN,
        cost: Cost { file_bytes: 2_000_000, session_bytes: 4_000_000, call_ms: 12.0, ..reference_cost },
        reference_cost,
    }
}

fn run() -> EvalRun {
    EvalRun {
        format: EVAL_FORMAT,
        reference: "m.onnx".into(),
        device: "cpu".into(),
        sampler: "ddim".into(),
        steps: 4,
        items: vec!["seed=1000".into(), "seed=1001".into(), "seed=1002".into()],
        held_out: "seeds 1000.. (sensitivity used 0, 1)".into(),
    }
}

/// An evaluation of an ILP plan, a uniform plan and a plain model (no plan, no predictions).
fn evals(dir: &Path) -> PathBuf {
    let mut model = candidate("int8 <export> & co", "model", f64::NAN, 35.0);
    (model.predicted_sqnr_db, model.predicted_ssim) = (f64::NAN, f64::NAN);
    (model.caption, model.reference_caption) = (0.75, 0.875);
    let records =
        vec![candidate("ilp avg-bits=4", "ilp", 4.0, 26.0), candidate("uniform-W8", "uniform", 8.0, 30.5), model];
    let path = dir.join("eval.parquet");
    write_evals(&path, &run(), &records).unwrap();
    path
}

/// The rows of the page's table that follows `heading`, each as header → cell (HTML-escaped).
fn table_after(html: &str, heading: &str) -> Vec<BTreeMap<String, String>> {
    let section = html.split(&format!("<h2>{heading}</h2>")).nth(1).expect("the section");
    let table = section.split("<table>").nth(1).and_then(|t| t.split("</table>").next()).expect("a table");
    let cells = |row: &str, tag: &str| -> Vec<String> {
        row.split(&format!("<{tag}>"))
            .skip(1)
            .filter_map(|c| c.split(&format!("</{tag}>")).next().map(String::from))
            .collect()
    };
    let mut rows = table.split("<tr>").skip(1);
    let header = cells(rows.next().expect("a header"), "th");
    rows.map(|r| header.iter().cloned().zip(cells(r, "td")).collect()).collect()
}

#[test]
fn every_figure_the_page_shows_is_a_real_png() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let index = write_report(&inputs).unwrap();
    let html = std::fs::read_to_string(&index).unwrap();
    let srcs = images(&html);
    // SQNR, SSIM and per-step heatmaps, the plan, the frontier, the two measured figures and
    // 2 × 2 samples.
    assert_eq!(srcs.len(), 11, "{srcs:?}");
    for src in &srcs {
        assert!(!src.starts_with('/') && !src.contains("://"), "paths are relative: {src}");
        let (w, h) = image::image_dimensions(inputs.out.join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(w > 0 && h > 0, "{src}");
    }
    assert!(!html.contains("class=\"note\""), "every section could be drawn");
    assert!(!html.contains("<script"), "the page runs no scripts");
    assert_eq!(html.matches("<figcaption>").count(), 7, "every figure has a caption");
}

#[test]
fn missing_inputs_leave_notes_and_a_corrupt_table_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = inputs(dir.path());
    let only_table =
        ReportInputs { sensitivity: full.sensitivity.clone(), out: dir.path().join("partial"), ..Default::default() };
    let html = std::fs::read_to_string(write_report(&only_table).unwrap()).unwrap();
    assert_eq!(images(&html).len(), 3, "the heatmaps alone");
    assert_eq!(html.matches("class=\"note\"").count(), 4, "plans, frontier, evaluations and samples are missing");
    let nothing = ReportInputs { out: dir.path().join("empty"), ..Default::default() };
    let html = std::fs::read_to_string(write_report(&nothing).unwrap()).unwrap();
    assert!(images(&html).is_empty() && html.matches("class=\"note\"").count() == 5);

    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"not parquet").unwrap();
    let bad = ReportInputs { sensitivity: Some(corrupt), out: dir.path().join("bad"), ..Default::default() };
    let message = write_report(&bad).unwrap_err().to_string();
    assert!(message.contains("corrupt.parquet") && message.contains("not a Parquet file"), "{message}");

    // A plan beside a table it was not solved from.
    let other = dir.path().join("other.parquet");
    bitsearch_fixtures::sensitivity_table(5, 24, &[2, 4, 8], 2).write(&other).unwrap();
    let mixed = ReportInputs { sensitivity: Some(other), out: dir.path().join("mixed"), ..full };
    let message = write_report(&mixed).unwrap_err().to_string();
    assert!(
        message.contains("plan.yaml: source.sensitivity_sha256 does not match") && message.contains("other.parquet"),
        "{message}"
    );
    assert!(!dir.path().join("mixed").exists(), "nothing is written for a refused report");
}

#[test]
fn the_measured_table_shows_each_candidate_beside_its_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let html = std::fs::read_to_string(write_report(&inputs).unwrap()).unwrap();
    let rows = table_after(&html, "Measured");
    let labels: Vec<&str> = rows.iter().map(|r| r["candidate"].as_str()).collect();
    assert_eq!(
        labels,
        ["ilp avg-bits=4", "uniform-W8", "int8 &lt;export&gt; &amp; co"],
        "one row per candidate, escaped"
    );
    let ilp = &rows[0];
    assert_eq!(ilp["kind"], "ilp");
    assert_eq!(ilp["mean bits"], "4.000");
    assert_eq!(ilp["pred. SQNR"], "30.00 dB");
    assert_eq!(ilp["SQNR"], "26.00 dB");
    assert_eq!(ilp["SQNR − pred."], "-4.00 dB");
    assert_eq!((ilp["SSIM"].as_str(), ilp["PSNR"].as_str()), ("0.98000", "31.50 dB"));
    assert_eq!(ilp["file size (× ref.)"], "2.00 MB (0.25×)");
    assert_eq!(ilp["session memory (× ref.)"], "4.00 MB (0.25×)");
    assert_eq!(ilp["per denoiser call (× ref.)"], "12.0 ms (1.20×)");
    assert_eq!(rows[1]["SQNR − pred."], "-4.00 dB");
    // The plain model has no plan: no mean bits, no prediction, but a caption accuracy.
    let model = &rows[2];
    for column in ["mean bits", "pred. SQNR", "SQNR − pred."] {
        assert_eq!(model[column], "—", "{column}");
    }
    assert_eq!(model["caption acc. (reference)"], "0.750 (0.875)");
    assert_eq!((ilp["caption acc. (reference)"].as_str(), model["SQNR"].as_str()), ("—", "35.00 dB"));
    assert!(!rows[0].contains_key("non-finite outputs"), "no candidate produced non-finite outputs");
    assert!(!html.contains("<export>"), "labels are escaped");

    let measured = html.split("<h2>Measured</h2>").nth(1).unwrap();
    assert!(
        measured.contains(
            "eval.parquet: 3 candidates measured against the reference m.onnx (8.00 MB on disk, 10.0 ms per \
             denoiser call) on cpu, ddim sampler, 4 steps, over 3 held-out items — seeds 1000.. (sensitivity used \
             0, 1): seed=1000; seed=1001; seed=1002."
        ),
        "the sentence names the items and device"
    );
    let figures = ["measured_sqnr_bits.png", "measured_vs_predicted.png"];
    for figure in figures {
        assert!(images(measured).contains(&figure.to_string()), "{figure} is on the page");
        let png = image::open(inputs.out.join(figure)).unwrap_or_else(|e| panic!("{figure}: {e}")).to_rgb8();
        assert!(png.width() >= 600 && png.height() >= 500, "{figure}: {}×{}", png.width(), png.height());
        // The measured diamonds are drawn in black or a kind's colour over a white chart: the
        // figure is more than its axes.
        let inked = png.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked > 2_000, "{figure}: {inked} pixels drawn");
    }
    let frontier = html.split("<h2>Pareto frontier</h2>").nth(1).unwrap().split("<h2>").next().unwrap();
    assert!(frontier.contains("in the Measured section below") && !frontier.contains("will join"));
}

#[test]
fn candidates_without_plans_get_the_table_but_no_figures() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = candidate("float copy", "model", f64::NAN, 120.0);
    model.predicted_sqnr_db = f64::NAN;
    let path = dir.path().join("models.parquet");
    write_evals(&path, &run(), &[model]).unwrap();
    let inputs = ReportInputs { evals: vec![path], out: dir.path().join("report"), ..Default::default() };
    let html = std::fs::read_to_string(write_report(&inputs).unwrap()).unwrap();
    let rows = table_after(&html, "Measured");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["candidate"].as_str(), rows[0]["SQNR"].as_str()), ("float copy", "120.00 dB"));
    assert!(!rows[0].contains_key("caption acc. (reference)"), "no candidate has a caption accuracy");
    assert!(images(&html).is_empty(), "nothing to place on mean bits or against a prediction");
    assert!(html.contains("1 candidate measured"));
}

#[test]
fn a_corrupt_or_foreign_evaluation_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt_eval.parquet");
    std::fs::write(&corrupt, b"not parquet").unwrap();
    let bad = ReportInputs { evals: vec![corrupt], out: dir.path().join("bad"), ..Default::default() };
    let message = write_report(&bad).unwrap_err().to_string();
    assert!(message.contains("corrupt_eval.parquet") && message.contains("not a Parquet file"), "{message}");
    // A frontier is Parquet but no evaluation.
    let full = inputs(dir.path());
    let foreign = ReportInputs {
        evals: full.frontier.into_iter().collect(),
        out: dir.path().join("foreign"),
        ..Default::default()
    };
    let message = write_report(&foreign).unwrap_err().to_string();
    assert!(message.contains("frontier.parquet") && message.contains("not a bitsearch evaluation"), "{message}");
    assert!(!dir.path().join("foreign").join("index.html").exists(), "no page is written");
}

/// Width and height of the PNG at `path`, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn figures_stay_bounded_for_thousands_of_step_groups() {
    let dir = tempfile::tempdir().unwrap();
    let protect: Vec<String> = DEFAULT_PROTECT.iter().map(|s| s.to_string()).collect();
    let small = bitsearch_fixtures::sensitivity_table(3, 6, &[2, 4], 1);
    let problem = Problem::from_table(&small, &protect, bitsearch_solver::LossBasis::Decoupled).unwrap();
    let options = SolveOptions { budgets: vec!["avg-bits=3".parse().unwrap()], ..Default::default() };
    let solved = solve(&problem, &options).unwrap();
    for groups in [MAX_COLUMNS, 5_000] {
        let out = dir.path().join(format!("{groups}"));
        std::fs::create_dir_all(&out).unwrap();
        let table_path = out.join("s.parquet");
        bitsearch_fixtures::sensitivity_table(3, 6, &[2, 4], groups).write(&table_path).unwrap();
        // The small table's plan, widened to `groups` step groups: solving thousands would be slow.
        let mut wide = plan(&problem, &solved, &options, &small, &table_path).unwrap();
        wide.step_groups = (0..groups).map(|g| [g, g]).collect();
        for layer in &mut wide.layers {
            (layer.weights, layer.a_bits) = (vec![layer.weights[0]; groups], vec![layer.a_bits[0]; groups]);
        }
        let plan_path = out.join("plan.yaml");
        wide.write(&plan_path).unwrap();
        let inputs = ReportInputs {
            sensitivity: Some(table_path),
            plans: vec![plan_path],
            out: out.join("report"),
            ..Default::default()
        };
        let html = std::fs::read_to_string(write_report(&inputs).unwrap()).unwrap();
        let srcs = images(&html);
        let drawn = groups <= MAX_COLUMNS;
        assert_eq!(srcs.len(), if drawn { 4 } else { 2 }, "{groups} groups: {srcs:?}");
        let note = format!("has {groups} step groups, and figures draw up to {MAX_COLUMNS}.");
        assert_eq!(
            html.matches(&note).count(),
            if drawn { 0 } else { 2 },
            "{groups} groups: the heatmap and plan notes"
        );
        for src in &srcs {
            let (w, h) = png_size(&inputs.out.join(src));
            // The widest figure is a heatmap of 16 full columns: labels, 16 × 90 and the colour bar.
            assert!(w > 0 && w <= 200 + 16 * 90 + 220 && h > 0 && h <= 1_000, "{groups} groups: {src} is {w}×{h}");
        }
    }
}
