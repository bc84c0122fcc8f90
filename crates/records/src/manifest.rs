//! The manifest `quantize` writes beside the denoiser models it makes: which plan and model they
//! come from, how the weights are stored, and which model runs which denoising steps. A
//! step-aware plan gives one `.onnx` per distinct step-group configuration; all of them point
//! into one external-data file that stores each (layer, bits) tensor once.

use crate::check::{self, Checked, invalid};
use crate::error::{RecordError, Result, check_format};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// 2: the sha256 of every file the manifest lists (`files`).
pub const MANIFEST_FORMAT: u32 = 2;
/// File name of the manifest, beside the models it lists.
pub const MANIFEST_FILE: &str = "bitsearch-quantized.yaml";

/// How quantized weights are kept once ONNX Runtime has loaded the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Codes stay low-bit in memory: DequantizeLinear in front of the float op (ONNX Runtime
    /// fuses it into MatMulNBits where its rules allow).
    #[default]
    Lowbit,
    /// Codes are stored low-bit in the file and turned into float weights at session start
    /// (Cast and Mul, which ONNX Runtime folds): small file, float memory and speed.
    Unpacked,
    /// As `Lowbit`, with every MatMul layer MatMulNBits can hold (2-, 4- or 8-bit codes, a 2-D
    /// weight, power-of-two blocks from 16 to 256 along K) written as that ONNX Runtime op.
    #[serde(rename = "matmulnbits")]
    MatMulNBits,
}

bitsearch_types::named_enum!(Storage, "storage", {
    Lowbit => "lowbit",
    Unpacked => "unpacked",
    MatMulNBits => "matmulnbits"
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub bitsearch_quantized: u32,
    /// The full-precision denoiser file and the plan applied to it (absolute paths).
    pub model: PathBuf,
    pub model_sha256: String,
    pub plan: PathBuf,
    pub plan_sha256: String,
    /// The plan's solver name and mean weight bits, e.g. `ilp`, 4.0.
    pub method: String,
    pub avg_bits: f64,
    /// What the plan predicted (additive single-layer losses).
    pub predicted_sqnr_db: f64,
    pub predicted_ssim: f64,
    /// Absent in manifests from before it was recorded.
    #[serde(default = "crate::plan::unknown")]
    pub predicted_psnr_db: f64,
    pub storage: Storage,
    /// Denoising steps the step groups cover; a sampler must run exactly this many when more
    /// than one model is listed.
    pub steps: usize,
    /// `[first, last]` step of each group, as in the plan.
    pub step_groups: Vec<[usize; 2]>,
    pub models: Vec<ManifestModel>,
    /// The shared external-data file, beside the models.
    pub weights: String,
    /// Layers stored with integer codes, and those of them given 8-bit activations (QDQ).
    pub quantized_layers: usize,
    pub activation_layers: usize,
    /// Layers stored with MPQ-DM's outlier split in some step group.
    #[serde(default)]
    pub split_layers: usize,
    /// Items the activation ranges and corrections were calibrated on (empty without either).
    pub calibration_items: Vec<String>,
    /// Corrections applied beyond the plan (absent in folders of earlier bitsearch: none).
    #[serde(default)]
    pub corrections: Corrections,
    /// The sha256 of each file above (models, weights, noise correction), checked before a
    /// pipeline loads the folder: a swapped model or a damaged weights file is refused.
    pub files: BTreeMap<String, String>,
}

/// The seed methods' corrections a quantized folder carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Corrections {
    /// MixDQ's BOS-aware text embedding: 8-bit cross-attention K/V projections run the first
    /// token row in float.
    pub bos_aware: bool,
    /// Each quantized layer's mean output shift on the calibration items is folded into its bias.
    pub bias_correction: bool,
    /// PTQD's noise correction (a [`crate::NoiseCorrection`] file beside the models), applied
    /// by the samplers.
    pub noise_correction: Option<String>,
}

/// One `.onnx` file and the step groups it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestModel {
    pub file: String,
    pub step_groups: Vec<usize>,
}

impl Manifest {
    /// For each of `steps` denoising steps, the index of the model that runs it.
    pub fn models_by_step(&self, steps: usize) -> std::result::Result<Vec<usize>, String> {
        if self.models.len() == 1 {
            return Ok(vec![0; steps]);
        }
        if steps != self.steps {
            return Err(format!(
                "the quantized model switches models by step for {} steps; {steps} steps were asked for",
                self.steps
            ));
        }
        let mut by_step = vec![usize::MAX; steps];
        for (m, model) in self.models.iter().enumerate() {
            for &g in &model.step_groups {
                let [first, last] = *self
                    .step_groups
                    .get(g)
                    .ok_or_else(|| format!("models[{m}] runs step group {g}, which the manifest does not have"))?;
                for slot in by_step.iter_mut().take(last + 1).skip(first) {
                    *slot = m;
                }
            }
        }
        match by_step.iter().position(|&m| m == usize::MAX) {
            Some(step) => Err(format!("no model runs step {step}")),
            None => Ok(by_step),
        }
    }

    /// The files of the folder the manifest lists, each once: models, weights, noise correction.
    pub fn listed_files(&self) -> impl Iterator<Item = &str> {
        listed(self.models.iter().map(|m| m.file.as_str()), &self.weights, self.corrections.noise_correction.as_deref())
    }

    /// The files a manifest of any format in `dir` lists, the manifest among them; None when
    /// `dir` holds no readable bitsearch manifest. For `--overwrite`, which replaces the
    /// outputs of an older bitsearch too.
    pub fn files_listed_in(dir: &Path) -> Option<Vec<String>> {
        /// The fields every format has had, nothing else asked of them.
        #[derive(Deserialize)]
        struct Listing {
            #[serde(rename = "bitsearch_quantized")]
            _format: u32,
            models: Vec<Named>,
            weights: String,
            #[serde(default)]
            corrections: Noise,
        }
        #[derive(Deserialize)]
        struct Named {
            file: String,
        }
        #[derive(Deserialize, Default)]
        struct Noise {
            noise_correction: Option<String>,
        }
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
        let l: Listing = serde_norway::from_str(&text).ok()?;
        let names =
            listed(l.models.iter().map(|m| m.file.as_str()), &l.weights, l.corrections.noise_correction.as_deref())
                .chain([MANIFEST_FILE]);
        Some(names.map(String::from).collect())
    }

    /// Records the sha256 of every listed file in `dir`, as `quantize` writes them.
    pub fn record_files(&mut self, dir: &Path) -> Result<()> {
        let files =
            self.listed_files().map(|name| Ok((name.to_string(), sha256_in(dir, name)?))).collect::<Result<_>>()?;
        self.files = files;
        Ok(())
    }

    /// Refuses the folder `dir` when a listed file is missing or its bytes are not those
    /// `quantize` wrote (a model swapped for another plan's, a damaged weights file).
    pub fn verify_files(&self, dir: &Path) -> Result<()> {
        for (name, expected) in &self.files {
            let found = sha256_in(dir, name)?;
            if &found != expected {
                return Err(RecordError::file(
                    &dir.join(MANIFEST_FILE),
                    format!(
                        "files.{name}: {} has sha256 {found}, not the {expected} quantize wrote (changed or replaced since); \
                         quantize again, or pass --no-verify to load it anyway",
                        dir.join(name).display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes the manifest into `dir` (not atomically: the whole folder is renamed into place).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let yaml = serde_norway::to_string(self).map_err(|e| RecordError::file(&path, e.to_string()))?;
        crate::write_file(&path, yaml.as_bytes())
    }

    /// Reads the manifest in `dir`; None when the folder has none.
    pub fn find(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| RecordError::file(&path, format!("cannot read: {e}")))?;
        Self::from_yaml(&text, &path).map(Some)
    }

    /// Decodes and checks the YAML text of the manifest file at `path`, as [`Manifest::find`]
    /// does (the path names it in errors).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        let error = |message: String| RecordError::file(path, message);
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| error(format!("not a bitsearch manifest: {e}")))?;
        let found = value.get("bitsearch_quantized").and_then(serde_norway::Value::as_u64).unwrap_or(0);
        check_format(path, "quantized-model manifest", found, MANIFEST_FORMAT, "bitsearch quantize")?;
        let manifest: Self =
            serde_norway::from_value(value).map_err(|e| error(format!("not a bitsearch manifest: {e}")))?;
        manifest.validate().map_err(|e| e.at(path))?;
        manifest.models_by_step(manifest.steps).map_err(error)?;
        Ok(manifest)
    }

    /// The schedule, the file names (plain names inside the folder, each once) and the numbers.
    fn validate(&self) -> Checked {
        check::step_groups("step_groups", &self.step_groups, self.steps)?;
        if self.models.is_empty() {
            return Err(invalid("models", "lists no model"));
        }
        check::distinct("models", &self.models, |m| m.file.clone())?;
        for (i, model) in self.models.iter().enumerate() {
            check::file_name(&format!("models[{i}].file"), &model.file)?;
        }
        check::file_name("weights", &self.weights)?;
        if let Some(noise) = &self.corrections.noise_correction {
            check::file_name("corrections.noise_correction", noise)?;
        }
        check::within("avg_bits", self.avg_bits, 0.0, f64::from(bitsearch_types::FLOAT_BITS))?;
        // A plan solved on image losses predicts no SSIM (NaN).
        check::unmeasured_or("predicted_ssim", self.predicted_ssim, f64::NEG_INFINITY, 1.0)?;
        check::predicted_db("predicted_sqnr_db", self.predicted_sqnr_db)?;
        check::predicted_db("predicted_psnr_db", self.predicted_psnr_db)?;
        for name in self.listed_files() {
            let sha = self.files.get(name).ok_or_else(|| invalid("files", format!("has no sha256 of '{name}'")))?;
            check::sha256(&format!("files.{name}"), sha)?;
        }
        if let Some(extra) = self.files.keys().find(|k| !self.listed_files().any(|f| f == k.as_str())) {
            return Err(invalid(format!("files.{extra}"), "is not a file the manifest lists"));
        }
        Ok(())
    }
}

/// The files a manifest names: its models', the weights, the noise correction, in that order.
fn listed<'m>(
    models: impl Iterator<Item = &'m str>,
    weights: &'m str,
    noise_correction: Option<&'m str>,
) -> impl Iterator<Item = &'m str> {
    models.chain([weights]).chain(noise_correction)
}

/// The sha256 of the file `name` in `dir`.
fn sha256_in(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    bitsearch_types::sha256_file(&path).map_err(|e| RecordError::file(&path, format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_file_changed_after_quantize_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest();
        for name in ["model.onnx", "model.1.onnx", "weights.bin", "noise.yaml"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        m.record_files(dir.path()).unwrap();
        m.verify_files(dir.path()).unwrap();
        std::fs::write(dir.path().join("model.1.onnx"), "model.onnx").unwrap();
        let message = m.verify_files(dir.path()).unwrap_err().to_string();
        assert!(message.contains(MANIFEST_FILE) && message.contains("files.model.1.onnx"), "{message}");
        std::fs::write(dir.path().join("model.1.onnx"), "model.1.onnx").unwrap();
        std::fs::remove_file(dir.path().join("weights.bin")).unwrap();
        assert!(m.verify_files(dir.path()).unwrap_err().to_string().contains("weights.bin: cannot read"));
    }

    fn manifest() -> Manifest {
        Manifest {
            bitsearch_quantized: MANIFEST_FORMAT,
            model: "/m/unet/model.onnx".into(),
            model_sha256: "aa".into(),
            plan: "/p.yaml".into(),
            plan_sha256: "bb".into(),
            method: "ilp".into(),
            avg_bits: 4.0,
            predicted_sqnr_db: 30.0,
            predicted_ssim: 0.99,
            predicted_psnr_db: 33.0,
            storage: Storage::Lowbit,
            steps: 6,
            step_groups: vec![[0, 1], [2, 3], [4, 5]],
            models: vec![
                ManifestModel { file: "model.onnx".into(), step_groups: vec![0, 2] },
                ManifestModel { file: "model.1.onnx".into(), step_groups: vec![1] },
            ],
            weights: "weights.bin".into(),
            quantized_layers: 10,
            activation_layers: 0,
            split_layers: 2,
            calibration_items: Vec::new(),
            corrections: Corrections {
                bos_aware: false,
                bias_correction: true,
                noise_correction: Some("noise.yaml".into()),
            },
            files: ["model.onnx", "model.1.onnx", "weights.bin", "noise.yaml"]
                .iter()
                .map(|f| (f.to_string(), "0f".repeat(32)))
                .collect(),
        }
    }

    #[test]
    #[ignore = "writes fuzz/seeds/manifest"]
    fn write_fuzz_seeds() {
        let dir = crate::fuzz_seeds("manifest");
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, m: &Manifest| {
            std::fs::write(dir.join(name), serde_norway::to_string(m).unwrap()).unwrap();
        };
        write("step-groups.yaml", &manifest());
        let mut one = Manifest {
            steps: 1,
            step_groups: vec![[0, 0]],
            models: vec![ManifestModel { file: "model.onnx".into(), step_groups: vec![0] }],
            calibration_items: vec!["a red circle".into()],
            corrections: Corrections::default(),
            ..manifest()
        };
        one.files = one.listed_files().map(|f| (f.to_string(), "0f".repeat(32))).collect();
        write("one-model.yaml", &one);
    }

    #[test]
    fn the_fuzz_seeds_read_back() {
        for file in crate::fuzz_seed_files("manifest") {
            Manifest::from_yaml(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
        }
    }

    #[test]
    fn models_are_chosen_by_step_and_the_step_count_must_match() {
        let m = manifest();
        assert_eq!(m.models_by_step(6).unwrap(), vec![0, 0, 1, 1, 0, 0]);
        assert!(m.models_by_step(4).unwrap_err().contains("for 6 steps; 4 steps"));
        let single = Manifest { models: vec![m.models[0].clone()], ..m.clone() };
        assert_eq!(single.models_by_step(3).unwrap(), vec![0, 0, 0]);
        let gap = Manifest { models: vec![m.models[1].clone(), m.models[1].clone()], ..m };
        assert_eq!(gap.models_by_step(6).unwrap_err(), "no model runs step 0");
    }

    #[test]
    fn the_manifest_round_trips_and_refuses_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Manifest::find(dir.path()).unwrap().is_none());
        manifest().write(dir.path()).unwrap();
        assert_eq!(Manifest::find(dir.path()).unwrap().unwrap(), manifest());
        std::fs::write(dir.path().join(MANIFEST_FILE), "bitsearch_quantized: 0\n").unwrap();
        let message = Manifest::find(dir.path()).unwrap_err().to_string();
        assert!(message.contains("rerun `bitsearch quantize`"), "{message}");
    }

    /// A regression: a plan solved on image losses predicts neither SQNR nor SSIM, and the folder
    /// `quantize` wrote from it was refused by `eval`.
    #[test]
    fn a_manifest_without_predicted_sqnr_or_ssim_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        Manifest { predicted_sqnr_db: f64::NAN, predicted_ssim: f64::NAN, ..manifest() }.write(dir.path()).unwrap();
        let read = Manifest::find(dir.path()).unwrap().unwrap();
        assert!(read.predicted_sqnr_db.is_nan() && read.predicted_ssim.is_nan());
        assert_eq!(read.predicted_psnr_db, 33.0);
    }

    #[test]
    fn a_manifest_with_fields_out_of_range_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Manifest, &str)> = vec![
            (Manifest { steps: 4611686018427387904, ..manifest() }, "steps: 4611686018427387904 is outside 1..=10000"),
            (Manifest { steps: 1_000_000_000_000, ..manifest() }, "steps"),
            (Manifest { step_groups: vec![[0, 1], [2, 3], [4, 1_000_000_000_000]], ..manifest() }, "step_groups"),
            (Manifest { step_groups: vec![[0, 1], [5, 2], [4, 5]], ..manifest() }, "step_groups[1]"),
            (Manifest { weights: "../../elsewhere.bin".into(), ..manifest() }, "weights: '../../elsewhere.bin'"),
            (Manifest { avg_bits: f64::NAN, ..manifest() }, "avg_bits"),
            (Manifest { predicted_ssim: 1.5, ..manifest() }, "predicted_ssim: 1.5 is outside"),
            (Manifest { predicted_sqnr_db: f64::NEG_INFINITY, ..manifest() }, "predicted_sqnr_db: -inf is outside"),
            (Manifest { predicted_psnr_db: -1e300, ..manifest() }, "predicted_psnr_db"),
            (
                Manifest { models: vec![manifest().models[0].clone(); 2], ..manifest() },
                "models[1]: 'model.onnx' is listed twice",
            ),
            (Manifest { files: BTreeMap::new(), ..manifest() }, "files: has no sha256 of 'model.onnx'"),
            (
                Manifest { corrections: Corrections::default(), ..manifest() },
                "files.noise.yaml: is not a file the manifest lists",
            ),
        ];
        for (bad, expected) in cases {
            bad.write(dir.path()).unwrap();
            let message = Manifest::find(dir.path()).unwrap_err().to_string();
            assert!(message.contains(MANIFEST_FILE) && message.contains(expected), "{message}");
        }
    }
}
