//! Plans: the YAML file `solve` writes and `quantize` reads — the bits of every layer (per step
//! group), the quantizer that goes with them, the budgets and how much of each was used, the
//! predicted metrics, the solver's status, and the sensitivity table and model the plan came
//! from. A source path that shares a folder with the plan (below the root) is stored relative to
//! the plan file, so a plan moved together with its model and table still finds them; any other
//! is stored absolute. Both read back as paths usable from any working directory.

use crate::budget::Limit;
use crate::check::{self, Checked, invalid};
use crate::error::{Result, YamlFormat, decode_yaml, read_text, write_yaml};
use bitsearch_types::{LayerInfo, LossBasis, QuantizerSpec, WeightFormat};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format version written in every plan. 1: the quantizer as loose fields, layers without
/// their component, paths as typed on the command line.
pub const PLAN_FORMAT: u32 = 2;

const PLAN_YAML: YamlFormat = YamlFormat {
    noun: "bitsearch plan",
    what: "plan",
    field: "bitsearch_plan",
    expected: PLAN_FORMAT,
    rerun: "bitsearch solve",
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub bitsearch_plan: u32,
    pub source: Source,
    pub quantizer: QuantizerSpec,
    /// `[first, last]` step of each group; per-layer bit lists follow this order.
    pub step_groups: Vec<[usize; 2]>,
    pub budgets: Vec<Limit>,
    pub prediction: Prediction,
    pub solver: SolverReport,
    pub summary: PlanSummary,
    /// With `solve --target`: the rounds of measurement that chose this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::TargetSearch>,
    /// With `solve --shrink search`: the shrinkages measured and the one chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_search: Option<crate::ShrinkSearch>,
    pub layers: Vec<PlanLayer>,
}

/// Where the plan's numbers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub sensitivity_table: PathBuf,
    pub sensitivity_sha256: String,
    /// The denoiser file or pipeline folder the table was measured on.
    pub model: PathBuf,
    pub model_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    #[serde(with = "crate::float_text")]
    pub objective: f64,
    #[serde(with = "crate::float_text")]
    pub content_weight: f64,
    pub content_share: Option<f64>,
    /// Denoiser-output SQNR (additive noise over quality layers), dB.
    #[serde(with = "crate::float_text")]
    pub sqnr_db: f64,
    /// Final-image SSIM (additive loss over content layers).
    #[serde(with = "crate::float_text")]
    pub ssim: f64,
    #[serde(with = "crate::float_text")]
    pub quality_loss: f64,
    #[serde(with = "crate::float_text")]
    pub content_loss: f64,
    /// Final-image PSNR (additive MSE over every quantized layer), dB; absent in older plans.
    #[serde(default = "unknown", with = "crate::float_text")]
    pub psnr_db: f64,
    /// What the objective's losses measure: `decoupled` (SQNR and SSIM) or `image` (MSE).
    #[serde(default)]
    pub loss: LossBasis,
    /// How far every layer's losses were shrunk toward its size's share before solving (0: the
    /// table's own losses).
    #[serde(default, skip_serializing_if = "is_zero", with = "crate::float_text")]
    pub shrink: f64,
    /// With `solve --prediction-fit`: the fit the predicted metrics above went through, and
    /// what the single-layer losses alone predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitUsed>,
}

/// The fit of how single-layer losses combine that a plan's prediction used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitUsed {
    pub file: PathBuf,
    pub sha256: String,
    /// The additive predictions, before the fit (NaN where the basis makes none).
    #[serde(with = "crate::float_text")]
    pub additive_sqnr_db: f64,
    #[serde(with = "crate::float_text")]
    pub additive_ssim: f64,
    #[serde(with = "crate::float_text")]
    pub additive_psnr_db: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

pub(crate) fn unknown() -> f64 {
    f64::NAN
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverReport {
    pub name: String,
    pub status: String,
    /// Relative optimality gap; 0 when proven optimal, NaN when unknown.
    #[serde(with = "crate::float_text")]
    pub gap: f64,
    #[serde(with = "crate::float_text")]
    pub seconds: f64,
    pub variables: usize,
    pub constraints: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSummary {
    pub layers: usize,
    pub protected: usize,
    #[serde(with = "crate::float_text")]
    pub float_bytes: f64,
    #[serde(with = "crate::float_text")]
    pub bytes: f64,
    #[serde(with = "crate::float_text")]
    pub compression: f64,
    #[serde(with = "crate::float_text")]
    pub bops: f64,
    #[serde(with = "crate::float_text")]
    pub avg_bits: f64,
}

// No deny_unknown_fields: serde cannot combine it with a flattened field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanLayer {
    #[serde(flatten)]
    pub layer: LayerInfo,
    pub protected: bool,
    /// How the weight is stored per step group ([`WeightFormat::Float`]: left in float), in the
    /// lists `w_bits`, `w_split` (MPQ-DM's outlier split; absent: none), `w_group` (values per
    /// scale group, 0 for the plan's quantizer granularity; absent: 0 everywhere) and `w_fp8`
    /// (E4M3 codes; absent: none).
    #[serde(flatten, with = "weight_lists")]
    pub weights: Vec<WeightFormat>,
    /// Activation bits per step group; [`bitsearch_types::FLOAT_BITS`] = float.
    pub a_bits: Vec<u32>,
    /// Stored bytes of the weight (every distinct weight bit-width once).
    pub weight_bytes: u64,
}

impl PlanLayer {
    /// How the weight is stored in step group `g`; None when it stays in float.
    pub fn weight_form(&self, g: usize) -> Option<WeightFormat> {
        self.weights.get(g).copied().filter(|w| *w != WeightFormat::Float)
    }
}

/// Per-step-group formats as the column lists of the plan format.
mod weight_lists {
    use bitsearch_types::WeightFormat;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Lists {
        w_bits: Vec<u32>,
        #[serde(default, skip_serializing_if = "none")]
        w_split: Vec<bool>,
        #[serde(default, skip_serializing_if = "all_zero")]
        w_group: Vec<u32>,
        #[serde(default, skip_serializing_if = "none")]
        w_fp8: Vec<bool>,
        #[serde(default, skip_serializing_if = "none")]
        w_gptq: Vec<bool>,
        #[serde(default, skip_serializing_if = "all_zero")]
        w_rank: Vec<u32>,
    }

    fn none(flags: &[bool]) -> bool {
        !flags.contains(&true)
    }

    fn all_zero(values: &[u32]) -> bool {
        values.iter().all(|&v| v == 0)
    }

    pub fn serialize<S: Serializer>(formats: &[WeightFormat], serializer: S) -> Result<S::Ok, S::Error> {
        let columns: Vec<_> = formats.iter().map(WeightFormat::columns).collect();
        Lists {
            w_bits: columns.iter().map(|c| c.0).collect(),
            w_split: columns.iter().map(|c| c.1).collect(),
            w_group: columns.iter().map(|c| c.2).collect(),
            w_fp8: columns.iter().map(|c| c.3).collect(),
            w_gptq: columns.iter().map(|c| c.4).collect(),
            w_rank: columns.iter().map(|c| c.5).collect(),
        }
        .serialize(serializer)
    }

    /// The optional lists are absent or hold one value per step group.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<WeightFormat>, D::Error> {
        let lists = Lists::deserialize(deserializer)?;
        let groups = lists.w_bits.len();
        for (name, len) in [
            ("w_split", lists.w_split.len()),
            ("w_group", lists.w_group.len()),
            ("w_fp8", lists.w_fp8.len()),
            ("w_gptq", lists.w_gptq.len()),
            ("w_rank", lists.w_rank.len()),
        ] {
            if len != 0 && len != groups {
                return Err(serde::de::Error::custom(format!("{name}: {len} values for {groups} step groups")));
            }
        }
        let at = |g: usize| {
            let flag = |v: &[bool]| v.get(g).copied().unwrap_or(false);
            let number = |v: &[u32]| v.get(g).copied().unwrap_or(0);
            let (group, rank) = (number(&lists.w_group), number(&lists.w_rank));
            (lists.w_bits[g], flag(&lists.w_split), group, flag(&lists.w_fp8), flag(&lists.w_gptq), rank)
        };
        (0..lists.w_bits.len())
            .map(|g| {
                WeightFormat::from_columns(at(g)).map_err(|e| serde::de::Error::custom(format!("step group {g}: {e}")))
            })
            .collect()
    }
}

impl Plan {
    /// The denoising steps its step groups cover.
    pub fn steps(&self) -> usize {
        self.step_groups.last().map_or(1, |[_, last]| last + 1)
    }

    /// Writes the plan as YAML, atomically, its source paths relative to the plan's folder
    /// where they share a folder with it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = absolute(path.parent().unwrap_or(Path::new("")));
        let mut stored = self.clone();
        stored.source.sensitivity_table = stored_path(&self.source.sensitivity_table, &dir);
        stored.source.model = stored_path(&self.source.model, &dir);
        write_yaml(path, &stored)
    }

    /// Reads a plan; its source paths come back joined to the plan's folder.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_yaml(&read_text(path)?, path)
    }

    /// Decodes and checks the YAML text of the plan file at `path`, as [`Plan::read`] does
    /// (the path names it in errors and anchors its source paths).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        let mut plan: Plan = decode_yaml(text, path, &PLAN_YAML)?;
        plan.validate().map_err(|e| e.at(path))?;
        let dir = absolute(path.parent().unwrap_or(Path::new("")));
        plan.source.sensitivity_table = dir.join(&plan.source.sensitivity_table);
        plan.source.model = dir.join(&plan.source.model);
        Ok(plan)
    }
}

impl Plan {
    /// Every field against its range: the quantizer, step groups that cover the schedule in
    /// order, and each layer once, with one format and activation width per step group.
    fn validate(&self) -> Checked {
        self.quantizer.validate().map_err(|(field, message)| invalid(field, message))?;
        let steps = self.step_groups.last().map_or(1, |[_, last]| last.saturating_add(1));
        check::step_groups("step_groups", &self.step_groups, steps)?;
        for (i, budget) in self.budgets.iter().enumerate() {
            let field = |name: &str| format!("budgets[{i}].{name}");
            check::non_negative(&field("limit"), budget.limit)?;
            check::non_negative(&field("used"), budget.used)?;
        }
        let summary = &self.summary;
        for (name, value) in [("float_bytes", summary.float_bytes), ("bytes", summary.bytes), ("bops", summary.bops)] {
            check::non_negative(&format!("summary.{name}"), value)?;
        }
        check::within("summary.avg_bits", summary.avg_bits, 0.0, f64::from(bitsearch_types::FLOAT_BITS))?;
        // Plans solved on image losses predict no SSIM (NaN).
        let p = &self.prediction;
        check::unmeasured_or("prediction.ssim", p.ssim, f64::NEG_INFINITY, 1.0)?;
        check::predicted_db("prediction.sqnr_db", p.sqnr_db)?;
        check::predicted_db("prediction.psnr_db", p.psnr_db)?;
        if let Some(fit) = &p.fit {
            check::sha256("prediction.fit.sha256", &fit.sha256)?;
            check::unmeasured_or("prediction.fit.additive_ssim", fit.additive_ssim, f64::NEG_INFINITY, 1.0)?;
            check::predicted_db("prediction.fit.additive_sqnr_db", fit.additive_sqnr_db)?;
            check::predicted_db("prediction.fit.additive_psnr_db", fit.additive_psnr_db)?;
        }
        check::distinct("layers", &self.layers, |l| l.layer.id())?;
        for (i, layer) in self.layers.iter().enumerate() {
            layer.validate(self.step_groups.len()).map_err(|e| e.under(&format!("layers[{i}]")))?;
        }
        Ok(())
    }
}

impl PlanLayer {
    fn validate(&self, groups: usize) -> Checked {
        check::layer(&self.layer)?;
        for (name, len) in [("w_bits", self.weights.len()), ("a_bits", self.a_bits.len())] {
            if len != groups {
                return Err(invalid(name, format!("{len} values for the plan's {groups} step groups")));
            }
        }
        for (g, weight) in self.weights.iter().enumerate() {
            check::weight(&format!("w_bits[{g}]"), weight, &self.layer, None)?;
        }
        // Each stored form at most its codes and a float32 scale per value (8 bytes a weight).
        let quantized = self.weights.iter().any(|w| *w != WeightFormat::Float);
        let most = self.layer.params.saturating_mul(8).saturating_mul(self.weights.len().max(1) as u64);
        if self.weight_bytes > most || (quantized && self.weight_bytes == 0) {
            return Err(invalid("weight_bytes", format!("{} is outside 1..={most}", self.weight_bytes)));
        }
        for (g, &bits) in self.a_bits.iter().enumerate() {
            check::activation_bits(&format!("a_bits[{g}]"), bits)?;
        }
        if self.protected && (quantized || self.a_bits.iter().any(|&b| b != bitsearch_types::FLOAT_BITS)) {
            return Err(invalid("protected", "a protected layer stays in float, but the plan quantizes it"));
        }
        Ok(())
    }
}

/// `path` as a plan in `dir` stores it: relative to `dir` when the two share a folder below the
/// root, else absolute.
fn stored_path(path: &Path, dir: &Path) -> PathBuf {
    let path = absolute(path);
    let top = |p: &Path| p.components().take(2).collect::<PathBuf>();
    if top(&path) != top(dir) {
        return path;
    }
    pathdiff::diff_paths(&path, dir).unwrap_or(path)
}

/// `path` made absolute against the working directory (without resolving links, so a path
/// that does not exist yet works too).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Resource;

    fn plan(table: PathBuf, model: PathBuf) -> Plan {
        Plan {
            bitsearch_plan: PLAN_FORMAT,
            source: Source {
                sensitivity_table: table,
                sensitivity_sha256: "00".into(),
                model,
                model_sha256: "11".into(),
            },
            quantizer: QuantizerSpec::default(),
            step_groups: vec![[0, 0]],
            budgets: vec![Limit {
                resource: Resource::AvgBits,
                limit: 4.0,
                lower: Some(3.98),
                used: 4.0,
                full_precision: 32.0,
            }],
            prediction: Prediction {
                objective: 0.1,
                content_weight: 1.0,
                content_share: None,
                sqnr_db: 30.0,
                ssim: 1.0,
                quality_loss: 0.001,
                content_loss: 0.0,
                psnr_db: 40.0,
                loss: LossBasis::Decoupled,
                shrink: 0.0,
                fit: None,
            },
            solver: SolverReport {
                name: "test".into(),
                status: "optimal".into(),
                gap: 0.0,
                seconds: 0.1,
                variables: 3,
                constraints: 2,
            },
            target: None,
            shrink_search: None,
            summary: PlanSummary {
                layers: 1,
                protected: 0,
                float_bytes: 4.0,
                bytes: 1.0,
                compression: 4.0,
                bops: 1.0,
                avg_bits: 4.0,
            },
            layers: Vec::new(),
        }
    }

    #[test]
    fn a_plan_finds_its_sources_from_anywhere_when_moved_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let (models, plans) = (dir.path().join("models"), dir.path().join("out/plans"));
        std::fs::create_dir_all(&models).unwrap();
        std::fs::create_dir_all(&plans).unwrap();
        let written = plan(dir.path().join("out/s.parquet"), models.join("m.onnx"));
        written.write(&plans.join("p.yaml")).unwrap();
        let text = std::fs::read_to_string(plans.join("p.yaml")).unwrap();
        assert!(text.contains("model: ../../models/m.onnx"), "{text}");
        assert!(text.contains("sensitivity_table: ../s.parquet"), "{text}");

        // Sharing no folder below the root, a path stays absolute.
        let elsewhere = plan(PathBuf::from("/nonexistent-bitsearch/s.parquet"), models.join("m.onnx"));
        elsewhere.write(&plans.join("q.yaml")).unwrap();
        let text = std::fs::read_to_string(plans.join("q.yaml")).unwrap();
        assert!(text.contains("sensitivity_table: /nonexistent-bitsearch/s.parquet"), "{text}");

        // The whole folder moves; the plan still names the moved files.
        let moved = tempfile::tempdir().unwrap();
        let target = moved.path().join("copy");
        std::fs::rename(dir.path(), &target).unwrap();
        let read = Plan::read(&target.join("out/plans/p.yaml")).unwrap();
        assert_eq!(read.source.model, target.join("out/plans/../../models/m.onnx"));
        assert_eq!(read.source.sensitivity_table, target.join("out/plans/../s.parquet"));
        assert_eq!(read.layers, written.layers);
    }

    #[test]
    fn a_plan_of_the_older_format_names_the_command_to_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.yaml");
        std::fs::write(&path, "bitsearch_plan: 1\nsource: {}\n").unwrap();
        let message = Plan::read(&path).unwrap_err().to_string();
        assert!(message.contains("written by an older bitsearch (plan format 1, this one reads 2)"), "{message}");
        assert!(message.ends_with("rerun `bitsearch solve`"), "{message}");
        std::fs::write(&path, "bitsearch_plan: 3\n").unwrap();
        let message = Plan::read(&path).unwrap_err().to_string();
        assert!(message.contains("written by a newer bitsearch (plan format 3, this one reads 2)"), "{message}");
        std::fs::write(&path, "layers: []\n").unwrap();
        assert!(Plan::read(&path).unwrap_err().to_string().contains("no 'bitsearch_plan' format field"));
    }

    #[test]
    fn a_plan_with_fields_out_of_range_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        let base = || Plan {
            layers: vec![layer(vec![WeightFormat::int(4)])],
            ..plan(dir.path().join("s.parquet"), dir.path().join("m.onnx"))
        };
        let with_layer = |l: PlanLayer| Plan { layers: vec![l], ..base() };
        let group = |g| WeightFormat::Int {
            bits: 4,
            split: false,
            group: Some(g),
            rounding: bitsearch_types::Rounding::Nearest,
            rank: None,
        };
        let quantizer = |edit: fn(&mut QuantizerSpec)| {
            let mut p = base();
            edit(&mut p.quantizer);
            p
        };
        let fitted = |edit: fn(&mut FitUsed)| {
            let mut fit = FitUsed {
                file: dir.path().join("prediction-fit.yaml"),
                sha256: "ab".repeat(32),
                additive_sqnr_db: 30.0,
                additive_ssim: 0.99,
                additive_psnr_db: 40.0,
            };
            edit(&mut fit);
            let mut p = base();
            p.prediction.fit = Some(fit);
            p
        };
        let predicting = |edit: fn(&mut Prediction)| {
            let mut p = base();
            edit(&mut p.prediction);
            p
        };
        let cases: Vec<(Plan, &str)> = vec![
            (Plan { step_groups: vec![[0, 1_000_000_000_000]], ..base() }, "steps: 1000000000001 is outside"),
            (Plan { step_groups: vec![[0, usize::MAX]], ..base() }, "steps"),
            (Plan { step_groups: vec![[5, 2]], ..base() }, "step_groups[0]: [5, 2]"),
            (
                Plan { layers: vec![layer(vec![WeightFormat::int(4)]); 2], ..base() },
                "layers[1]: 'unet/conv' is listed twice",
            ),
            (with_layer(PlanLayer { protected: true, ..layer(vec![WeightFormat::int(4)]) }), "layers[0].protected"),
            (with_layer(layer(vec![group(7)])), "layers[0].w_bits[0]: w4g7: group size 7"),
            (with_layer(layer(vec![group(1 << 31)])), "layers[0].w_bits[0]"),
            (with_layer(layer(vec![WeightFormat::int(9)])), "layers[0].w_bits[0]: w9"),
            (
                with_layer(layer(vec![WeightFormat::int(4), WeightFormat::int(4)])),
                "layers[0].w_bits: 2 values for the plan's 1",
            ),
            (with_layer(PlanLayer { weight_bytes: 0, ..layer(vec![WeightFormat::int(4)]) }), "layers[0].weight_bytes"),
            (quantizer(|q| q.weight.group_size = Some(1)), "quantizer.weight.group_size: group size 1"),
            (quantizer(|q| q.weight.group_size = Some(1_000_000_000)), "quantizer.weight.group_size"),
            (quantizer(|q| q.weight.clip_grid = 1_000_000_000), "quantizer.weight.clip_grid: 1000000000 is outside"),
            (Plan { summary: PlanSummary { avg_bits: 1.58e13, ..base().summary }, ..base() }, "summary.avg_bits"),
            (fitted(|f| f.sha256 = "x".into()), "prediction.fit.sha256"),
            (fitted(|f| f.additive_ssim = 2.0), "prediction.fit.additive_ssim"),
            (fitted(|f| f.additive_psnr_db = f64::NEG_INFINITY), "prediction.fit.additive_psnr_db: -inf is outside"),
            (fitted(|f| f.additive_sqnr_db = -1e300), "prediction.fit.additive_sqnr_db"),
            (predicting(|p| p.sqnr_db = -5000.0), "prediction.sqnr_db: -5000 is outside"),
            (predicting(|p| p.psnr_db = f64::NEG_INFINITY), "prediction.psnr_db"),
        ];
        for (bad, expected) in cases {
            bad.write(&path).unwrap();
            let message = Plan::read(&path).unwrap_err().to_string();
            assert!(message.starts_with(&path.display().to_string()) && message.contains(expected), "{message}");
        }
        base().write(&path).unwrap();
        assert_eq!(Plan::read(&path).unwrap().layers, base().layers);
    }

    #[test]
    #[ignore = "writes fuzz/seeds/plan"]
    fn write_fuzz_seeds() {
        let dir = crate::fuzz_seeds("plan");
        std::fs::create_dir_all(&dir).unwrap();
        let sources = || plan(dir.join("s.parquet"), dir.join("m.onnx"));
        let one = Plan { layers: vec![layer(vec![WeightFormat::int(4)])], ..sources() };
        one.write(&dir.join("one-layer.yaml")).unwrap();
        let named =
            |name: &str, l: PlanLayer| PlanLayer { layer: LayerInfo { name: name.into(), ..l.layer.clone() }, ..l };
        let format = |text: &str| text.parse::<WeightFormat>().unwrap();
        let layers = vec![
            named("a", layer(vec![WeightFormat::int(8), format("w4s")])),
            named("b", layer(vec![WeightFormat::E4M3, format("w2g32")])),
            PlanLayer { protected: true, weight_bytes: 40, ..named("c", layer(vec![WeightFormat::Float; 2])) },
            PlanLayer { a_bits: vec![8, 32], ..named("d", layer(vec![WeightFormat::int(4); 2])) },
        ];
        let two = Plan { step_groups: vec![[0, 1], [2, 3]], layers, ..sources() };
        two.write(&dir.join("step-groups.yaml")).unwrap();
    }

    #[test]
    fn the_fuzz_seeds_read_back() {
        for file in crate::fuzz_seed_files("plan") {
            Plan::read(&file).unwrap();
        }
    }

    fn layer(weights: Vec<WeightFormat>) -> PlanLayer {
        PlanLayer {
            layer: LayerInfo {
                component: bitsearch_types::Component::Unet,
                name: "conv".into(),
                op: "Conv".into(),
                role: bitsearch_types::Role::Conv,
                group: bitsearch_types::MetricGroup::Quality,
                params: 10,
                macs: None,
                outputs: None,
            },
            protected: false,
            a_bits: vec![32; weights.len()],
            weights,
            weight_bytes: 7,
        }
    }

    #[test]
    fn a_layer_keeps_its_weight_lists_and_leaves_out_the_empty_ones() {
        let plain = layer(vec![WeightFormat::int(4), WeightFormat::Float]);
        let text = serde_norway::to_string(&plain).unwrap();
        assert!(text.contains("w_bits:\n- 4\n- 32\na_bits:"), "{text}");
        let mixed = layer(vec![
            WeightFormat::E4M3,
            WeightFormat::Int {
                bits: 3,
                split: true,
                group: Some(64),
                rounding: bitsearch_types::Rounding::Nearest,
                rank: None,
            },
        ]);
        let text = serde_norway::to_string(&mixed).unwrap();
        for list in
            ["w_bits:\n- 8\n- 3\n", "w_split:\n- false\n- true\n", "w_group:\n- 0\n- 64\n", "w_fp8:\n- true\n- false\n"]
        {
            assert!(text.contains(list), "{text}");
        }
        assert_eq!(serde_norway::from_str::<PlanLayer>(&text).unwrap(), mixed);
        let short = text.replace("w_fp8:\n- true\n- false\n", "w_fp8:\n- true\n");
        assert!(serde_norway::from_str::<PlanLayer>(&short).unwrap_err().to_string().contains("w_fp8: 1 values for 2"));
    }
}
