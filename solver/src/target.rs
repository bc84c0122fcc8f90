//! Plans that meet a *measured* quality target with the smallest model: the program minimises
//! memory (or BOPs) under a cap on the predicted loss, the plan is measured, and the cap moves
//! until the smallest plan whose measurement clears every target is found.
//!
//! The additive model is optimistic (layers' errors are not independent), so the cap the
//! prediction suggests is only a first guess. Each round turns the measured margin (in dB, see
//! [`Target::margin_db`]) into a new cap: alone, by assuming the measured noise is the predicted
//! noise times a factor (one dB of cap per dB of margin: the factor fitted on the last plan);
//! once one plan has met the targets and another has missed, by the secant between the two,
//! kept inside the bracket. The search stops when the bracket is narrower than a tenth of a dB,
//! when a cap gives a plan already measured, at the ends of the cap's range, or after the
//! allowed rounds.

use crate::allocation::Assignment;
use crate::error::SolverError;
use crate::ilp::solve;
use crate::options::{SolveOptions, Solved};
use crate::problem::Problem;
use bitsearch_records::{Measured, Metric, Round, Target};
use bitsearch_types::LossBasis;

/// Width of the bracket, in decades of the cap, below which the search stops (0.1 dB).
const BRACKET: f64 = 0.01;
/// A plan that meets its targets by less than this margin (dB) is close enough.
const CLOSE_DB: f64 = 0.05;
/// The smallest step a single-sided round takes, in decades (0.5 dB): a plan that misses by a
/// hair must still move far enough to change.
const MIN_STEP: f64 = 0.05;

/// (log10 of a cap, the margin its plan measured).
type Bracket = Option<(f64, f64)>;

/// The outcome of a search: every measured round, and the index of the smallest plan that met
/// every target (None: none did) with its solution.
#[derive(Debug, Clone)]
pub struct Searched {
    pub rounds: Vec<Round>,
    pub chosen: Option<(usize, Solved)>,
}

impl Searched {
    /// The round that came closest to the targets (largest margin), for the refusal message.
    pub fn closest(&self) -> Option<&Round> {
        self.rounds.iter().max_by(|a, b| a.margin_db.total_cmp(&b.margin_db))
    }
}

/// Searches the cap on the predicted objective for the smallest plan (by `options.minimise`,
/// memory or BOPs) whose measurement meets every target; `measure` runs a solved plan on the
/// calibration items. At most `max_rounds` measurements.
pub fn search<E: From<SolverError>>(
    problem: &Problem,
    options: &SolveOptions,
    targets: &[Target],
    max_rounds: usize,
    mut measure: impl FnMut(usize, &Solved) -> std::result::Result<Measured, E>,
) -> std::result::Result<Searched, E> {
    let Some(resource) = options.minimise.resource() else {
        return Err(SolverError::Config {
            field: "minimise".into(),
            message: "a target search minimises memory, bops or avg-bits".into(),
        }
        .into());
    };
    if targets.is_empty() {
        return Err(SolverError::Config { field: "target".into(), message: "give at least one target".into() }.into());
    }
    let weight = options.content_weight;
    let least = problem.evaluate(&problem.least_loss(weight), weight).objective;
    let cheapest = problem.evaluate(&problem.extreme(resource, false), weight).objective;
    let (x_min, x_max) = (least.max(f64::MIN_POSITIVE).log10(), cheapest.max(least).max(f64::MIN_POSITIVE).log10());
    let mut x = first_cap(problem, targets).map_or((x_min + x_max) / 2.0, f64::log10).clamp(x_min, x_max);
    let mut rounds: Vec<Round> = Vec::new();
    let mut measured: Vec<(Assignment, usize)> = Vec::new();
    let mut chosen: Option<(usize, Solved)> = None;
    // The largest cap that met the targets and the smallest that missed.
    let (mut met, mut missed): (Bracket, Bracket) = (None, None);
    // Solves are cheap, measurements are not: a bound on both keeps the loop finite.
    for _ in 0..4 * max_rounds.max(1) {
        if rounds.len() >= max_rounds {
            break;
        }
        // Round-off must not push the least lossy cap below the least lossy plan.
        let cap = if x <= x_min { least * (1.0 + 1e-9) } else { 10f64.powf(x) };
        let solved = solve(problem, &SolveOptions { loss_cap: Some(cap), ..options.clone() })?;
        let margin = match measured.iter().find(|(a, _)| *a == solved.assignment) {
            // The same plan as before: its measurement holds, and it tells where the cap lies.
            Some(&(_, r)) => {
                let margin = rounds[r].margin_db;
                let bracket = if margin >= 0.0 { &mut met } else { &mut missed };
                if bracket.is_some_and(|(b, _)| (b - x).abs() < BRACKET) {
                    break;
                }
                margin
            }
            None => {
                let index = rounds.len();
                let round = round(problem, targets, index, cap, &solved, measure(index, &solved)?);
                let smaller = chosen.as_ref().is_none_or(|(_, best)| {
                    solved.evaluation.usage.get(resource) < best.evaluation.usage.get(resource)
                });
                if round.meets && smaller {
                    chosen = Some((index, solved.clone()));
                }
                measured.push((solved.assignment.clone(), index));
                let margin = round.margin_db;
                rounds.push(round);
                margin
            }
        };
        if margin >= 0.0 {
            met = Some(met.map_or((x, margin), |m| if x > m.0 { (x, margin) } else { m }));
        } else {
            missed = Some(missed.map_or((x, margin), |m| if x < m.0 { (x, margin) } else { m }));
        }
        match next_cap(met, missed, (x_min, x_max)) {
            Some(next) => x = next,
            None => break,
        }
    }
    Ok(Searched { rounds, chosen })
}

/// Round `index`: the plan `solved` at `cap`, measured `m`, with its margin over `targets`;
/// logged.
fn round(problem: &Problem, targets: &[Target], index: usize, cap: f64, solved: &Solved, m: Measured) -> Round {
    let margin = targets.iter().map(|t| t.margin_db(&m)).fold(f64::INFINITY, f64::min);
    let e = &solved.evaluation;
    let (predicted, name) = (e.predicted_db(), basis_metric(problem.basis));
    let round = Round {
        round: index,
        loss_cap: cap,
        predicted_objective: e.objective,
        predicted_sqnr_db: e.predicted_sqnr_db(),
        predicted_psnr_db: e.predicted_psnr_db(),
        noise_factor: 10f64.powf((predicted - name.of(&m)) / 10.0),
        measured: m,
        margin_db: margin,
        bytes: e.usage.memory,
        avg_bits: e.usage.avg_bits,
        meets: margin >= 0.0,
    };
    log::info!(
        "round {index}: cap {cap:.3e}: predicted {} {predicted:.2} dB; measured SQNR {:.2} dB, SSIM {:.4}, PSNR {:.2} dB{}; margin {margin:+.2} dB; {:.3} MB, {:.3} bits{}",
        name.to_string().to_uppercase(),
        m.sqnr_db,
        m.ssim,
        m.psnr_db,
        m.caption_words(),
        e.usage.memory / 1e6,
        e.usage.avg_bits,
        if round.meets { " — meets" } else { "" },
    );
    round
}

/// The next cap (log10) from the largest cap that met the targets and the smallest that
/// missed, within `(x_min, x_max)`; None when the search is done.
fn next_cap(met: Bracket, missed: Bracket, (x_min, x_max): (f64, f64)) -> Option<f64> {
    match (met, missed) {
        (Some((lo, m_lo)), Some((hi, m_hi))) => {
            if hi - lo < BRACKET {
                return None;
            }
            // The secant through the two, kept a fifth of the bracket inside it.
            let t = (m_lo / (m_lo - m_hi)).clamp(0.2, 0.8);
            Some(lo + t * (hi - lo))
        }
        (Some((lo, m_lo)), None) => {
            if lo >= x_max || m_lo < CLOSE_DB {
                return None;
            }
            Some((lo + (m_lo / 10.0).max(MIN_STEP)).min(x_max))
        }
        (None, Some((hi, m_hi))) => {
            if hi <= x_min {
                return None;
            }
            Some((hi + (m_hi / 10.0).min(-MIN_STEP)).max(x_min))
        }
        (None, None) => None,
    }
}

/// The measured metric the basis predicts: the denoiser's SQNR (decoupled) or the image's PSNR.
pub fn basis_metric(basis: LossBasis) -> Metric {
    match basis {
        LossBasis::Decoupled => Metric::Sqnr,
        LossBasis::Image => Metric::Psnr,
    }
}

/// The cap at which the prediction (through the problem's fit, if any) meets a target on the
/// basis's metric exactly (the first guess when one is given): an SQNR target on the decoupled
/// basis, a PSNR target on the image basis; None without one.
fn first_cap(problem: &Problem, targets: &[Target]) -> Option<f64> {
    let metric = basis_metric(problem.basis);
    let db = targets.iter().filter(|t| t.metric == metric).map(|t| t.value).reduce(f64::max)?;
    let curves = problem.combination();
    let curve = match problem.basis {
        LossBasis::Decoupled => curves.sqnr,
        LossBasis::Image => curves.psnr,
    };
    // The additive dB whose fitted value is the target.
    let db = curve.map_or(db, |c| c.invert(db));
    // Both losses are noise powers: 10^(−SQNR/10) of the output, or the MSE at that PSNR.
    let loss = match problem.basis {
        LossBasis::Decoupled => 10f64.powf(-db / 10.0),
        LossBasis::Image => bitsearch_metrics::mse_at_psnr_db(db),
    };
    Some((loss + problem.offset.quality) / problem.quality_scale)
}

/// The error for a search that ended with no plan meeting its targets.
pub fn unmet(searched: &Searched, targets: &[Target]) -> SolverError {
    let list = targets.iter().map(Target::to_string).collect::<Vec<_>>().join(", ");
    let best = searched.closest().map_or("no round was measured".to_string(), |r| {
        let values: Vec<String> =
            targets.iter().map(|t| format!("{} {:.4}", t.metric, t.measured(&r.measured))).collect();
        format!(
            "the best measured plan (round {}) reached {} at {:.3} MB, {:.3} bits",
            r.round,
            values.join(", "),
            r.bytes / 1e6,
            r.avg_bits
        )
    });
    SolverError::Unmet { targets: list, best }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::options::Minimise;
    use bitsearch_records::Curve;

    /// Problem losses are synthetic, and "measuring" a plan applies a known model error: the
    /// search must find the smallest plan the measurement accepts.
    #[test]
    fn the_search_finds_the_smallest_plan_the_measurement_accepts() {
        let problem = crate::problem::tests::synthetic(12);
        let options = SolveOptions { minimise: Minimise::Memory, ..Default::default() };
        let target: Target = "sqnr=20dB".parse().expect("target");
        // Layers interact: the measured noise is three times the predicted noise.
        let measure = |_: usize, s: &Solved| -> Result<Measured> {
            let sqnr_db = s.evaluation.predicted_sqnr_db() - 10.0 * 3f64.log10();
            Ok(Measured { sqnr_db, ssim: f64::NAN, psnr_db: f64::NAN, caption: f64::NAN })
        };
        let searched = search(&problem, &options, &[target], 12, measure).expect("search");
        let (index, best) = searched.chosen.clone().expect("a plan meets the target");
        assert!(searched.rounds[index].meets && searched.rounds[index].measured.sqnr_db >= 20.0);
        // What the search should find: the smallest plan whose *predicted* SQNR is 20 dB + 4.77 dB.
        let cap = 10f64.powf(-(20.0 + 10.0 * 3f64.log10()) / 10.0) / problem.quality_scale;
        let exact = solve(&problem, &SolveOptions { loss_cap: Some(cap), ..options.clone() }).expect("solve");
        let bytes = |s: &Solved| s.evaluation.usage.memory;
        assert!(bytes(&best) <= bytes(&exact) * 1.02, "{} vs {}", bytes(&best), bytes(&exact));
        assert!((searched.rounds[0].noise_factor - 3.0).abs() < 1e-9);

        // A target no plan reaches: no plan chosen, and the closest round is named.
        let far: Target = "sqnr=200dB".parse().expect("target");
        let searched = search(&problem, &options, &[far], 6, measure).expect("search");
        assert!(searched.chosen.is_none() && !searched.rounds.is_empty());
        assert!(unmet(&searched, &[far]).to_string().contains("best measured plan"));
    }

    /// With a fit that knows the measured noise is three times the sum, the first cap is
    /// already the one whose plan measures the target, and the rounds predict what they measure.
    #[test]
    fn a_fitted_prediction_puts_the_first_cap_where_the_measurement_meets_the_target() {
        let mut problem = crate::problem::tests::synthetic(12);
        let factor_db = 10.0 * 3f64.log10();
        let points: Vec<(f64, f64)> = [10.0, 20.0, 30.0, 40.0].iter().map(|&x| (x, x - factor_db)).collect();
        let curves = bitsearch_records::Combination { sqnr: Curve::fit(&points), ..Default::default() };
        problem.fit = Some(crate::problem::AppliedFit { curves, file: "fit.yaml".into(), sha256: "ab".repeat(32) });
        let options = SolveOptions { minimise: Minimise::Memory, ..Default::default() };
        let target: Target = "sqnr=20dB".parse().expect("target");
        let measure = |_: usize, s: &Solved| -> Result<Measured> {
            let sqnr_db = s.evaluation.additive_sqnr_db() - factor_db;
            Ok(Measured { sqnr_db, ssim: f64::NAN, psnr_db: f64::NAN, caption: f64::NAN })
        };
        let searched = search(&problem, &options, &[target], 12, measure).expect("search");
        let first = &searched.rounds[0];
        let cap = 10f64.powf(-(20.0 + factor_db) / 10.0) / problem.quality_scale;
        assert!((first.loss_cap - cap).abs() < 1e-9 * cap, "first cap {} vs {cap}", first.loss_cap);
        assert!(searched.rounds.iter().all(|r| (r.noise_factor - 1.0).abs() < 1e-9), "{:?}", searched.rounds);
        assert!(first.meets, "{first:?}");
    }

    /// On image losses the search steers by the predicted PSNR: its first guess is the cap at
    /// which the additive MSE predicts the PSNR target, and the rounds record PSNR, not SQNR.
    #[test]
    fn on_image_losses_a_psnr_target_is_searched_on_the_predicted_psnr() {
        let mut problem = crate::problem::tests::synthetic(12);
        problem.basis = LossBasis::Image;
        for layer in &mut problem.layers {
            layer.image_mse = layer.loss.clone();
        }
        let options = SolveOptions { minimise: Minimise::Memory, ..Default::default() };
        let target: Target = "psnr=14dB".parse().expect("target");
        // The model is right: every plan measures what it predicts.
        let measure = |_: usize, s: &Solved| -> Result<Measured> {
            let psnr_db = s.evaluation.predicted_psnr_db();
            Ok(Measured { sqnr_db: f64::NAN, ssim: f64::NAN, psnr_db, caption: f64::NAN })
        };
        let searched = search(&problem, &options, &[target], 12, measure).expect("search");
        let first = &searched.rounds[0];
        assert!(first.predicted_sqnr_db.is_nan() && first.predicted_psnr_db >= 14.0);
        assert!((first.noise_factor - 1.0).abs() < 1e-9);
        let cap = bitsearch_metrics::mse_at_psnr_db(14.0) / problem.quality_scale;
        assert!((first.loss_cap - cap).abs() < 1e-9 * cap, "first cap {} vs {cap}", first.loss_cap);
        let (_, best) = searched.chosen.expect("a plan meets the target");
        let exact = solve(&problem, &SolveOptions { loss_cap: Some(cap), ..options.clone() }).expect("solve");
        assert!(best.evaluation.usage.memory <= exact.evaluation.usage.memory);
    }
}
