//! Reports built from synthetic tables, plans solved from them, a sweep and sample folders:
//! every image the page references exists and is a real PNG; missing inputs leave notes; a
//! corrupt table is an error.

use bitsearch_records::{PointKind, Sweep, write_frontier};
use bitsearch_reports::{ReportInputs, write_report};
use bitsearch_solver::pareto;
use bitsearch_solver::{DEFAULT_PROTECT, Problem, SolveOptions, plan, solve};
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
    let problem = Problem::from_table(&table, &protect).unwrap();
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
                &s.status,
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
        out: dir.join("report"),
    }
}

#[test]
fn every_figure_the_page_shows_is_a_real_png() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let index = write_report(&inputs).unwrap();
    let html = std::fs::read_to_string(&index).unwrap();
    let srcs = images(&html);
    // SQNR, SSIM and per-step heatmaps, the plan, the frontier, and 2 × 2 samples.
    assert_eq!(srcs.len(), 9, "{srcs:?}");
    for src in &srcs {
        assert!(!src.starts_with('/') && !src.contains("://"), "paths are relative: {src}");
        let (w, h) = image::image_dimensions(inputs.out.join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(w > 0 && h > 0, "{src}");
    }
    assert!(!html.contains("class=\"note\""), "every section could be drawn");
    assert!(!html.contains("<script"), "the page runs no scripts");
    assert_eq!(html.matches("<figcaption>").count(), 5, "every figure has a caption");
}

#[test]
fn missing_inputs_leave_notes_and_a_corrupt_table_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = inputs(dir.path());
    let only_table =
        ReportInputs { sensitivity: full.sensitivity.clone(), out: dir.path().join("partial"), ..Default::default() };
    let html = std::fs::read_to_string(write_report(&only_table).unwrap()).unwrap();
    assert_eq!(images(&html).len(), 3, "the heatmaps alone");
    assert_eq!(html.matches("class=\"note\"").count(), 3, "plans, frontier and samples are missing");
    let nothing = ReportInputs { out: dir.path().join("empty"), ..Default::default() };
    let html = std::fs::read_to_string(write_report(&nothing).unwrap()).unwrap();
    assert!(images(&html).is_empty() && html.matches("class=\"note\"").count() == 4);

    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"not parquet").unwrap();
    let bad = ReportInputs { sensitivity: Some(corrupt), out: dir.path().join("bad"), ..Default::default() };
    let message = write_report(&bad).unwrap_err().to_string();
    assert!(message.contains("corrupt.parquet") && message.contains("not a Parquet file"), "{message}");
}
