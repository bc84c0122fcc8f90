//! How single-layer losses combine. The sensitivity table measures each layer alone; a plan's
//! prediction adds their noise powers, which is optimistic when the layers' errors add up
//! coherently. `solve --fit-prediction` measures a few plans across the budget range on the
//! selection items and fits, per metric, the measured value in dB as a curve of the additive
//! prediction in dB: a scale (measured noise ≈ a·Σ singles), a line (≈ a·(Σ singles)^b) or
//! monotone knots, whichever predicts the plans left out one at a time best.
//! `solve --prediction-fit` reads the fit back, and every predicted column goes through it.

use crate::check::{self, Checked, Invalid, invalid};
use crate::error::{Result, YamlFormat, decode_yaml, read_text, write_yaml};
use crate::target::Measured;
use bitsearch_types::LossBasis;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const PREDICTION_FIT_FORMAT: u32 = 1;

const FIT_YAML: YamlFormat = YamlFormat {
    noun: "prediction fit",
    what: "prediction fit",
    field: "bitsearch_prediction_fit",
    expected: PREDICTION_FIT_FORMAT,
    rerun: "bitsearch solve --fit-prediction",
};
/// Most plans a fit may list: the fit is meant to rest on a handful.
pub const MAX_FIT_PLANS: usize = 64;
/// The slopes a fit may have. Below the lower end one dB of prediction says nothing of the
/// measurement; a negative slope would make the prediction run against the sums it orders.
pub const SLOPES: (f64, f64) = (0.05, 20.0);
/// The largest intercept, dB (far past any image or denoiser metric's range).
pub const MAX_INTERCEPT_DB: f64 = 1000.0;

/// `measured_db = intercept_db + slope · additive_db`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub intercept_db: f64,
    pub slope: f64,
    /// Root mean square of the fitted plans' residuals, dB.
    pub rms_residual_db: f64,
}

impl Line {
    /// The least-squares line through the finite `(additive, measured)` points; None with fewer
    /// than two distinct additive values, or a slope outside [`SLOPES`] (the data do not
    /// support a monotone fit, and the additive prediction stays).
    pub fn fit(points: &[(f64, f64)]) -> Option<Self> {
        let finite: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let n = finite.len() as f64;
        let mean = |f: fn(&(f64, f64)) -> f64| finite.iter().map(f).sum::<f64>() / n;
        let (mx, my) = (mean(|p| p.0), mean(|p| p.1));
        let sxx: f64 = finite.iter().map(|(x, _)| (x - mx).powi(2)).sum();
        let sxy: f64 = finite.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        if finite.len() < 2 || sxx <= 1e-12 * (1.0 + mx * mx) {
            return None;
        }
        let slope = sxy / sxx;
        let intercept_db = my - slope * mx;
        let rss: f64 = finite.iter().map(|(x, y)| (y - intercept_db - slope * x).powi(2)).sum();
        let line = Self { intercept_db, slope, rms_residual_db: (rss / n).sqrt() };
        line.check().is_ok().then_some(line)
    }

    /// The least-squares line of slope one (measured noise a fixed multiple of the summed
    /// singles); None without a finite point.
    pub fn fit_scale(points: &[(f64, f64)]) -> Option<Self> {
        let gaps: Vec<f64> =
            points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| y - x).collect();
        let n = gaps.len() as f64;
        let intercept_db = gaps.iter().sum::<f64>() / n;
        let rms_residual_db = (gaps.iter().map(|g| (g - intercept_db).powi(2)).sum::<f64>() / n).sqrt();
        let line = Self { intercept_db, slope: 1.0, rms_residual_db };
        (!gaps.is_empty() && line.check().is_ok()).then_some(line)
    }

    pub fn apply(&self, additive_db: f64) -> f64 {
        self.intercept_db + self.slope * additive_db
    }

    /// The additive prediction whose fitted value is `db`.
    pub fn invert(&self, db: f64) -> f64 {
        (db - self.intercept_db) / self.slope
    }

    fn check(&self) -> Checked {
        check::within("intercept_db", self.intercept_db, -MAX_INTERCEPT_DB, MAX_INTERCEPT_DB)?;
        check::within("slope", self.slope, SLOPES.0, SLOPES.1)?;
        check::within("rms_residual_db", self.rms_residual_db, 0.0, MAX_INTERCEPT_DB)
    }
}

/// Which form of a [`Curve`] predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    Scale,
    Line,
    Knots,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Scale => "scale",
            Form::Line => "line",
            Form::Knots => "knots",
        }
    }
}

/// How one metric's summed single-layer losses map to its measurement, in dB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    /// The form that predicts: the one with the smallest leave-one-out error on the fitted plans.
    pub form: Form,
    /// The least-squares line of slope one (absent in fits made before it was offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Line>,
    /// The least-squares line; absent when the data give no monotone one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<Line>,
    /// `[additive dB, measured dB]` of the fitted plans, additive increasing and measured made
    /// non-decreasing (adjacent violators pooled): the monotone curve through them, straight
    /// between knots, beyond the ends at the end knot's gap.
    pub knots: Vec<[f64; 2]>,
    /// Root mean square leave-one-out error of each form on the fitted plans that lie between
    /// others, dB (NaN where no plan does, or a line cannot be fitted without one).
    #[serde(default = "not_measured")]
    pub loo_scale_db: f64,
    pub loo_line_db: f64,
    pub loo_knots_db: f64,
}

fn not_measured() -> f64 {
    f64::NAN
}

impl Curve {
    /// The curve of the finite `(additive, measured)` points; None with fewer than two
    /// distinct additive values.
    pub fn fit(points: &[(f64, f64)]) -> Option<Self> {
        let finite: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let knots = monotone(&finite);
        if knots.len() < 2 {
            return None;
        }
        // Left out one at a time, each plan inside the others' range (the fit is for budgets
        // between the fitted ones, not beyond them).
        let (mut scale_sq, mut line_sq, mut knots_sq, mut n) = (0.0, 0.0, 0.0, 0.0);
        for (i, &(x, y)) in finite.iter().enumerate() {
            let others: Vec<(f64, f64)> = finite.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
            let inside = others.iter().any(|o| o.0 < x) && others.iter().any(|o| o.0 > x);
            if inside {
                let miss = |line: Option<Line>| line.map_or(f64::NAN, |l| (l.apply(x) - y).powi(2));
                scale_sq += miss(Line::fit_scale(&others));
                line_sq += miss(Line::fit(&others));
                knots_sq += (through(&monotone(&others), x) - y).powi(2);
                n += 1.0;
            }
        }
        let rms = |sq: f64| (sq / n).sqrt();
        let (loo_scale_db, loo_line_db, loo_knots_db) = (rms(scale_sq), rms(line_sq), rms(knots_sq));
        let (scale, line) = (Line::fit_scale(&finite), Line::fit(&finite));
        // The simplest form within a hundredth of a dB of the best wins; NaN (a form unfitted on
        // some subset) never does. When nothing could be left out, the line (through two plans).
        let best =
            [loo_scale_db, loo_line_db, loo_knots_db].into_iter().filter(|e| !e.is_nan()).fold(f64::INFINITY, f64::min);
        let form = if best.is_infinite() {
            if line.is_some() { Form::Line } else { Form::Knots }
        } else if scale.is_some() && loo_scale_db <= best + 0.01 {
            Form::Scale
        } else if line.is_some() && loo_line_db <= best + 0.01 {
            Form::Line
        } else {
            Form::Knots
        };
        Some(Self { form, scale, line, knots, loo_scale_db, loo_line_db, loo_knots_db })
    }

    /// The line of the predicting form, if it is one.
    fn line(&self) -> Option<&Line> {
        match self.form {
            Form::Scale => self.scale.as_ref(),
            Form::Line => self.line.as_ref(),
            Form::Knots => None,
        }
    }

    pub fn apply(&self, additive_db: f64) -> f64 {
        self.line().map_or_else(|| through(&self.knots, additive_db), |line| line.apply(additive_db))
    }

    /// The additive prediction whose fitted value is `db`.
    pub fn invert(&self, db: f64) -> f64 {
        self.line().map_or_else(
            || {
                // A flat stretch has no inverse: its knots pool into one.
                let swapped: Vec<(f64, f64)> = self.knots.iter().map(|&[x, y]| (y, x)).collect();
                through(&monotone(&swapped), db)
            },
            |line| line.invert(db),
        )
    }

    fn check(&self) -> Checked {
        if let Some(scale) = &self.scale {
            scale.check().map_err(|e| e.under("scale"))?;
            if scale.slope != 1.0 {
                return Err(invalid("scale.slope", format!("{} is not 1", scale.slope)));
            }
        }
        if let Some(line) = &self.line {
            line.check().map_err(|e| e.under("line"))?;
        }
        if self.form != Form::Knots && self.line().is_none() {
            return Err(invalid("form", format!("'{}' without its line", self.form.name())));
        }
        if !(2..=MAX_FIT_PLANS).contains(&self.knots.len()) {
            return Err(invalid("knots", format!("{} knots is outside 2..={MAX_FIT_PLANS}", self.knots.len())));
        }
        for (i, pair) in self.knots.windows(2).enumerate() {
            let ([x0, y0], [x1, y1]) = (pair[0], pair[1]);
            for (k, v) in [(i, x0), (i, y0), (i + 1, x1), (i + 1, y1)] {
                check::within(&format!("knots[{k}]"), v, -MAX_INTERCEPT_DB, MAX_INTERCEPT_DB)?;
            }
            if x1 <= x0 || y1 < y0 {
                return Err(invalid(format!("knots[{}]", i + 1), "knots must rise in both additive and measured dB"));
            }
        }
        let loo = [
            ("loo_scale_db", self.loo_scale_db),
            ("loo_line_db", self.loo_line_db),
            ("loo_knots_db", self.loo_knots_db),
        ];
        for (name, v) in loo {
            if !v.is_nan() {
                check::within(name, v, 0.0, MAX_INTERCEPT_DB)?;
            }
        }
        Ok(())
    }
}

/// Points sorted by `x`, runs whose `y` falls (or that share an `x`) pooled into their mean:
/// the least-squares non-decreasing fit, as knots with `x` strictly increasing.
fn monotone(points: &[(f64, f64)]) -> Vec<[f64; 2]> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks of (Σx, Σy, count).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for (x, y) in sorted {
        blocks.push((x, y, 1.0));
        while let [.., a, b] = &mut blocks[..] {
            let (ax, ay, bx, by) = (a.0 / a.2, a.1 / a.2, b.0 / b.2, b.1 / b.2);
            if by >= ay && bx - ax > 1e-9 * (1.0 + ax.abs()) {
                break;
            }
            *a = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            blocks.pop();
        }
    }
    blocks.iter().map(|b| [b.0 / b.2, b.1 / b.2]).collect()
}

/// The piecewise-linear curve through `knots` at `x`; beyond the ends, the end knot's gap.
fn through(knots: &[[f64; 2]], x: f64) -> f64 {
    let (Some(&[x0, y0]), Some(&[xn, yn])) = (knots.first(), knots.last()) else { return f64::NAN };
    if x.is_nan() {
        return x;
    }
    if x <= x0 {
        return x + y0 - x0;
    }
    if x >= xn {
        return x + yn - xn;
    }
    let i = knots.partition_point(|k| k[0] <= x);
    let ([xa, ya], [xb, yb]) = (knots[i - 1], knots[i]);
    ya + (yb - ya) * (x - xa) / (xb - xa)
}

/// One curve per metric's prediction; a metric without one keeps the additive prediction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Combination {
    /// Denoiser SQNR from the quality layers' summed noise powers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqnr: Option<Curve>,
    /// Image PSNR from the summed image MSEs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr: Option<Curve>,
    /// Image SSIM from the content layers' summed `1 − SSIM`, as dB of `1 − SSIM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssim: Option<Curve>,
}

impl Combination {
    pub fn sqnr_db(&self, additive_db: f64) -> f64 {
        self.sqnr.as_ref().map_or(additive_db, |c| c.apply(additive_db))
    }

    pub fn psnr_db(&self, additive_db: f64) -> f64 {
        self.psnr.as_ref().map_or(additive_db, |c| c.apply(additive_db))
    }

    pub fn ssim(&self, additive: f64) -> f64 {
        self.ssim.as_ref().map_or(additive, |c| 1.0 - 10f64.powf(-c.apply(ssim_db(additive)) / 10.0))
    }
}

/// `1 − SSIM` in dB, the scale the SSIM line is fitted on.
pub fn ssim_db(ssim: f64) -> f64 {
    -10.0 * (1.0 - ssim).log10()
}

/// A plan the fit was made on: its size, its additive prediction, its measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitPlan {
    pub budget: String,
    pub avg_bits: f64,
    pub bytes: f64,
    pub additive_sqnr_db: f64,
    pub additive_ssim: f64,
    pub additive_psnr_db: f64,
    pub measured: Measured,
}

/// `prediction-fit.yaml`: the curves and the plans they were fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionFit {
    pub bitsearch_prediction_fit: u32,
    /// The table whose single-layer losses the curves combine.
    pub sensitivity_sha256: String,
    /// The losses the plans were solved on.
    pub loss: LossBasis,
    /// The items the plans were measured on, in words (never the held-out ones).
    pub items: String,
    pub curves: Combination,
    pub plans: Vec<FitPlan>,
}

impl PredictionFit {
    /// The curves of `plans`, for each metric they predict and measure.
    pub fn curves(plans: &[FitPlan]) -> Combination {
        let curve = |x: fn(&FitPlan) -> f64, y: fn(&FitPlan) -> f64| {
            Curve::fit(&plans.iter().map(|p| (x(p), y(p))).collect::<Vec<_>>())
        };
        Combination {
            sqnr: curve(|p| p.additive_sqnr_db, |p| p.measured.sqnr_db),
            psnr: curve(|p| p.additive_psnr_db, |p| p.measured.psnr_db),
            ssim: curve(|p| ssim_db(p.additive_ssim), |p| ssim_db(p.measured.ssim)),
        }
    }

    /// Every field against its range: the curves monotone and finite, each plan's numbers
    /// finite (or NaN where the basis predicts or the model measures nothing).
    fn validate(&self) -> Checked {
        check::sha256("sensitivity_sha256", &self.sensitivity_sha256)?;
        let curves = [("sqnr", &self.curves.sqnr), ("psnr", &self.curves.psnr), ("ssim", &self.curves.ssim)];
        for (name, curve) in curves {
            if let Some(curve) = curve {
                curve.check().map_err(|e| e.under(&format!("curves.{name}")))?;
            }
        }
        if !(2..=MAX_FIT_PLANS).contains(&self.plans.len()) {
            return Err(invalid("plans", format!("{} plans is outside 2..={MAX_FIT_PLANS}", self.plans.len())));
        }
        for (i, p) in self.plans.iter().enumerate() {
            let at = |e: Invalid| e.under(&format!("plans[{i}]"));
            check::within("avg_bits", p.avg_bits, 0.0, f64::from(bitsearch_types::FLOAT_BITS)).map_err(at)?;
            check::non_negative("bytes", p.bytes).map_err(at)?;
            let m = &p.measured;
            let values = [
                ("additive_sqnr_db", p.additive_sqnr_db, f64::MAX),
                ("additive_ssim", p.additive_ssim, 1.0),
                ("additive_psnr_db", p.additive_psnr_db, f64::MAX),
                ("measured.sqnr_db", m.sqnr_db, f64::MAX),
                ("measured.ssim", m.ssim, 1.0),
                ("measured.psnr_db", m.psnr_db, f64::MAX),
                ("measured.caption", m.caption, 1.0),
            ];
            for (name, value, high) in values {
                if !value.is_nan() {
                    check::within(name, value, f64::MIN, high).map_err(at)?;
                }
            }
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_yaml(path, self)
    }

    pub fn read(path: &Path) -> Result<Self> {
        Self::from_yaml(&read_text(path)?, path)
    }

    /// Decodes and checks the YAML text of the fit file at `path` (which names it in errors).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        let fit: Self = decode_yaml(text, path, &FIT_YAML)?;
        fit.validate().map_err(|e| e.at(path))?;
        Ok(fit)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Plans whose measured noise is `a · (Σ singles)^b`: measured dB = −10·log10(a) + b · additive dB.
    pub(crate) fn plans(a: f64, b: f64) -> Vec<FitPlan> {
        [18.0, 22.0, 27.0, 31.0, 36.0]
            .iter()
            .enumerate()
            .map(|(i, &db)| {
                let noise = a * 10f64.powf(-db / 10.0).powf(b);
                FitPlan {
                    budget: format!("avg-bits={}", 2 + i),
                    avg_bits: 2.0 + i as f64,
                    bytes: 1e6,
                    additive_sqnr_db: db,
                    additive_ssim: f64::NAN,
                    additive_psnr_db: db + 15.0,
                    measured: Measured {
                        sqnr_db: -10.0 * noise.log10(),
                        ssim: f64::NAN,
                        psnr_db: -10.0 * noise.log10() + 10.0,
                        caption: f64::NAN,
                    },
                }
            })
            .collect()
    }

    /// Plans measuring twice their summed noise (3.01 dB below the sum) with ±0.4 dB of item
    /// noise, alternating.
    fn scaled_plans() -> Vec<FitPlan> {
        let mut plans = plans(2.0, 1.0);
        for (i, p) in plans.iter_mut().enumerate() {
            p.measured.sqnr_db += if i % 2 == 0 { 0.4 } else { -0.4 };
        }
        plans
    }

    pub(crate) fn fit(a: f64, b: f64) -> PredictionFit {
        let plans = plans(a, b);
        PredictionFit {
            bitsearch_prediction_fit: PREDICTION_FIT_FORMAT,
            sensitivity_sha256: "ab".repeat(32),
            loss: LossBasis::Decoupled,
            items: "8 items".into(),
            curves: PredictionFit::curves(&plans),
            plans,
        }
    }

    #[test]
    fn the_fit_recovers_a_power_law_of_the_summed_noise() {
        let (a, b) = (6.0, 0.8);
        let f = fit(a, b);
        let curve = f.curves.sqnr.clone().expect("a curve");
        // Points on a line: left out one at a time, the line predicts each (and wins the tie).
        assert!(curve.form == Form::Line && curve.loo_line_db < 1e-9, "{curve:?}");
        let sqnr = curve.line.expect("a line");
        assert!((sqnr.slope - b).abs() < 1e-9 && (sqnr.intercept_db + 10.0 * a.log10()).abs() < 1e-9, "{sqnr:?}");
        assert!(sqnr.rms_residual_db < 1e-9);
        // Every fitted plan's prediction is its measurement, and so is one between them.
        for p in &f.plans {
            assert!((f.curves.sqnr_db(p.additive_sqnr_db) - p.measured.sqnr_db).abs() < 1e-9);
            assert!((f.curves.psnr_db(p.additive_psnr_db) - p.measured.psnr_db).abs() < 1e-9);
        }
        let between = 25.0;
        let measured = -10.0 * (a * 10f64.powf(-between / 10.0).powf(b)).log10();
        assert!((f.curves.sqnr_db(between) - measured).abs() < 1e-9);
        assert!((curve.invert(curve.apply(between)) - between).abs() < 1e-9);
        // No SSIM was measured: that metric keeps the additive prediction.
        assert!(f.curves.ssim.is_none() && f.curves.ssim(0.97) == 0.97);
        // One point, or one additive value: no curve. A slope against the sums: no line.
        assert!(Curve::fit(&[(20.0, 12.0)]).is_none());
        assert!(Curve::fit(&[(20.0, 12.0), (20.0, 14.0)]).is_none());
        assert!(Line::fit(&[(20.0, 14.0), (30.0, 12.0)]).is_none());
    }

    #[test]
    fn a_fixed_multiple_of_the_summed_noise_is_fitted_as_a_scale() {
        // The line bends to the item noise; the one-parameter scale predicts the plans left out
        // better.
        let curve = PredictionFit::curves(&scaled_plans()).sqnr.expect("a curve");
        assert_eq!(curve.form, Form::Scale, "{curve:?}");
        assert!(curve.loo_scale_db < curve.loo_line_db && curve.loo_scale_db < curve.loo_knots_db, "{curve:?}");
        let scale = curve.scale.expect("a scale");
        assert!((scale.intercept_db + 10.0 * 2f64.log10() - 0.08).abs() < 1e-9, "{scale:?}");
        assert!((curve.apply(25.0) - (25.0 + scale.intercept_db)).abs() < 1e-12);
        assert!((curve.invert(curve.apply(25.0)) - 25.0).abs() < 1e-9);
        assert!(Line::fit_scale(&[(f64::NAN, 1.0)]).is_none());
    }

    #[test]
    fn a_bent_curve_is_followed_through_its_knots() {
        // Measured flat at the top, steep in the middle, as terrain's plans measure; one point
        // falls against the trend and is pooled with its neighbour.
        let points = [(10.0, 4.0), (25.0, 9.0), (29.0, 19.0), (31.0, 24.0), (32.4, 25.5), (32.6, 25.3), (32.65, 25.8)];
        let curve = Curve::fit(&points).expect("a curve");
        assert_eq!(curve.form, Form::Knots, "{curve:?}");
        assert_eq!(curve.knots.len(), 6);
        assert!(curve.knots.windows(2).all(|k| k[1][0] > k[0][0] && k[1][1] >= k[0][1]));
        assert!((curve.apply(27.0) - 14.0).abs() < 1e-9);
        assert!((curve.apply(10.0) - 4.0).abs() < 1e-9 && (curve.apply(5.0) + 1.0).abs() < 1e-9, "the end's gap");
        assert!((curve.invert(14.0) - 27.0).abs() < 1e-9);
        assert!(curve.apply(f64::INFINITY).is_infinite() && curve.apply(f64::NAN).is_nan());
    }

    #[test]
    fn an_ssim_line_maps_one_minus_ssim_in_db() {
        let mut plans = plans(4.0, 1.0);
        for p in &mut plans {
            p.additive_ssim = 1.0 - 10f64.powf(-p.additive_sqnr_db / 10.0);
            // Twice the content loss the sum predicts.
            p.measured.ssim = 1.0 - 2.0 * (1.0 - p.additive_ssim);
        }
        let curves = PredictionFit::curves(&plans);
        assert!((curves.ssim(0.99) - 0.98).abs() < 1e-9, "{}", curves.ssim(0.99));
    }

    #[test]
    #[ignore = "writes fuzz/seeds/prediction_fit"]
    fn write_fuzz_seeds() {
        let dir = crate::fuzz_seeds("prediction_fit");
        std::fs::create_dir_all(&dir).unwrap();
        fit(3.0, 0.9).write(&dir.join("line.yaml")).unwrap();
        let mut bent = fit(3.0, 0.9);
        for (p, measured) in bent.plans.iter_mut().zip([4.0, 9.0, 19.0, 24.0, 25.5]) {
            p.measured.sqnr_db = measured;
        }
        bent.curves = PredictionFit::curves(&bent.plans);
        bent.write(&dir.join("knots.yaml")).unwrap();
        let mut scaled = fit(2.0, 1.0);
        scaled.plans = scaled_plans();
        scaled.curves = PredictionFit::curves(&scaled.plans);
        scaled.write(&dir.join("scale.yaml")).unwrap();
    }

    #[test]
    fn the_fuzz_seeds_read_back() {
        for file in crate::fuzz_seed_files("prediction_fit") {
            PredictionFit::read(&file).unwrap();
        }
    }

    #[test]
    fn a_fit_round_trips_and_bad_fields_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prediction-fit.yaml");
        let good = fit(3.0, 0.9);
        good.write(&path).unwrap();
        let read = PredictionFit::read(&path).unwrap();
        assert_eq!(read.curves, good.curves);
        let refused = |f: PredictionFit| {
            f.write(&path).unwrap();
            PredictionFit::read(&path).unwrap_err().to_string()
        };
        let mut bad = good.clone();
        bad.curves.sqnr.as_mut().unwrap().line.as_mut().unwrap().slope = -1.0;
        let message = refused(bad);
        assert!(message.contains("prediction-fit.yaml") && message.contains("curves.sqnr.line.slope"), "{message}");
        let mut bad = good.clone();
        bad.curves.psnr.as_mut().unwrap().line.as_mut().unwrap().intercept_db = f64::INFINITY;
        assert!(refused(bad).contains("curves.psnr.line.intercept_db"));
        let mut bad = good.clone();
        bad.curves.psnr.as_mut().unwrap().knots[2][1] = -50.0;
        assert!(refused(bad).contains("curves.psnr.knots[2]: knots must rise"));
        let mut bad = good.clone();
        bad.curves.sqnr.as_mut().unwrap().line = None;
        assert!(refused(bad).contains("curves.sqnr.form"));
        let mut bad = good.clone();
        bad.curves.sqnr.as_mut().unwrap().scale.as_mut().unwrap().slope = 0.9;
        assert!(refused(bad).contains("curves.sqnr.scale.slope: 0.9 is not 1"));
        let mut bad = good.clone();
        let sqnr = bad.curves.sqnr.as_mut().unwrap();
        (sqnr.form, sqnr.scale) = (Form::Scale, None);
        assert!(refused(bad).contains("curves.sqnr.form: 'scale' without its line"));
        let mut bad = good.clone();
        bad.curves.sqnr.as_mut().unwrap().knots[0][0] = f64::NAN;
        assert!(refused(bad).contains("curves.sqnr.knots[0]"));
        let mut bad = good.clone();
        bad.plans[1].measured.ssim = 1.5;
        assert!(refused(bad).contains("plans[1].measured.ssim"));
        let mut bad = good.clone();
        bad.plans.truncate(1);
        assert!(refused(bad).contains("plans: 1 plans"));
        let bad = PredictionFit { sensitivity_sha256: "x".into(), ..good.clone() };
        assert!(refused(bad).contains("sensitivity_sha256"));
        let older = PredictionFit::from_yaml("bitsearch_prediction_fit: 0\n", &path).unwrap_err().to_string();
        assert!(older.contains("--fit-prediction"), "{older}");
        assert!(PredictionFit::from_yaml("[", &path).unwrap_err().to_string().contains("not a prediction fit"));
        let extra = serde_norway::to_string(&good).unwrap() + "surprise: 1\n";
        assert!(PredictionFit::from_yaml(&extra, &path).is_err());
    }
}
