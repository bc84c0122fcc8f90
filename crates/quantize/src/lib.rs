//! The apply stage: a plan becomes a low-bit ONNX model that stock ONNX Runtime runs.
//!
//! Every quantized weight is stored as the integer codes the sensitivity probes simulated (the
//! plan's quantizer, same clipping search) with its scales: packed int4 up to 4 bits, an int8
//! container otherwise; a layer the plan keeps in float16 (16 bits) as a float16 initializer
//! and a Cast. [`Storage::Lowbit`] keeps them low-bit in memory (DequantizeLinear in
//! front of the float op), [`Storage::MatMulNBits`] also writes MatMul layers as ONNX Runtime's
//! MatMulNBits; [`Storage::Unpacked`] has ONNX Runtime turn them into float weights at session
//! start. Layers the plan gives 8-bit activations get the QDQ form (uint8 activations,
//! int8 per-channel weights, int32 bias) that the CPU provider runs with integer kernels, with
//! activation ranges calibrated per step group on calibration items. A step-aware plan gives one
//! `.onnx` per distinct configuration of its step groups, all pointing into one weight file that
//! holds each (layer, bits) tensor once; the manifest beside them says which runs which step.
//!
//! Two corrections of the seed methods can be applied on top of the plan: bias correction
//! (each quantized layer's mean output shift on the calibration items folded into its bias) and
//! PTQD's noise correction (fitted per step against the float denoiser, written beside the
//! models and applied by the samplers of every pipeline that opens the folder).
//!
//! The output folder is written under a temporary name and renamed into place when complete.

mod bias;
mod calibrate;
mod folder;
mod gptq;
mod prepared;
mod ptqd;

use bitsearch_onnx::rewrite::{self, ActivationParams, CodeArray, Dequantize, WeightCodes};
use bitsearch_onnx::{ExternalData, GraphView, Model, OnnxError, SharedData};
use bitsearch_pipeline::workload::{self, WorkloadSpec};
use bitsearch_quant::{ActQuantizer, ApplyError, Hessian, StoredWeight, range_key, stored_weight};
use bitsearch_records::plan::absolute;
use bitsearch_records::{Corrections, Manifest, ManifestModel, Plan, PlanLayer, SensitivityTable, Storage};
use bitsearch_runtime::SessionOptions;
use bitsearch_types::{FLOAT_BITS, Layer, LayerKind, WeightFormat};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bias::BiasShifts;
use calibrate::ActivationRanges;
use prepared::Prepared;
pub use ptqd::NOISE_CORRECTION_FILE;

/// File name of the weight data every model of a quantized folder points into.
pub const WEIGHTS_FILE: &str = "weights.bin";
/// Tensors smaller than this stay inside each `.onnx` (scalars, shapes).
const MIN_EXTERNAL_BYTES: usize = 256;
/// The only activation width written: uint8 QDQ is what ONNX Runtime fuses into integer kernels.
const ACTIVATION_BITS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(
        "{plan}: the plan was made for {plan_model} (sha256 {plan_sha}…), not for {model} (sha256 {model_sha}…); \
         solve a plan from a sensitivity table of this model"
    )]
    OtherModel { plan: PathBuf, plan_model: PathBuf, plan_sha: String, model: PathBuf, model_sha: String },
    #[error("{plan}: layer '{layer}' is not a layer of {model} (see `bitsearch inspect`)")]
    MissingLayer { plan: PathBuf, layer: String, model: PathBuf },
    #[error("{plan}: {field}: {message}")]
    Plan { plan: PathBuf, field: String, message: String },
    #[error("{}: already exists; pass --overwrite to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("layer '{layer}': {message}")]
    Layer { layer: String, message: String },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Records(#[from] bitsearch_records::RecordError),
    #[error("calibration: {0}")]
    Calibration(#[from] bitsearch_pipeline::PipelineError),
    #[error("PTQD noise correction: {0}")]
    Ptqd(String),
}

pub type Result<T, E = QuantizeError> = std::result::Result<T, E>;

/// How to apply a plan.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub storage: Storage,
    /// The items activation ranges and corrections are calibrated on (used only when the plan
    /// quantizes activations or a correction is asked for); its steps must be the plan's.
    pub calibration: WorkloadSpec,
    /// Fold each quantized layer's mean output shift into its bias.
    pub bias_correction: bool,
    /// Fit PTQD's noise correction and store it with the models.
    pub ptqd: bool,
    /// MixDQ's BOS-aware text embedding: 8-bit cross-attention K/V projections run their first
    /// token row through a float copy, calibrated without it.
    pub bos_aware: bool,
    /// Replace an existing output folder.
    pub overwrite: bool,
}

impl QuantizeOptions {
    /// Whether the calibration items are needed for `plan`.
    pub fn needs_calibration(&self, plan: &Plan) -> bool {
        self.bias_correction
            || self.ptqd
            || gptq::used(plan)
            || plan.layers.iter().any(|l| l.a_bits.iter().any(|&a| a != FLOAT_BITS))
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub manifest: Manifest,
    /// Bytes of the denoiser's files (models, weight file, manifest).
    pub denoiser_bytes: u64,
    /// Distinct tensors in the shared weight file.
    pub stored_tensors: usize,
}

/// Applies the plan at `plan_path` to `model` (a denoiser file or a diffusers folder, whose other
/// components are copied unchanged) and writes the result to `out`.
pub fn quantize(model: &Path, plan_path: &Path, out: &Path, options: &QuantizeOptions) -> Result<Quantized> {
    refuse_out(model, out, options.overwrite)?;
    let Prepared { plan, denoiser, sha, fp, chosen } = Prepared::new(model, plan_path)?;
    let configs = configurations(&plan, &chosen);
    let mut codes = Codebook::default();
    let mut calibration = None;
    if options.needs_calibration(&plan) {
        let workload = calibrate::open(model, &options.calibration, &plan, plan_path)?;
        log::info!("calibrating on {} item(s)", workload.items().len());
        calibration = Some(workload);
    }
    let (device, threads) = (options.calibration.device, options.calibration.threads);
    let session = SessionOptions { device, threads, ..Default::default() };
    let mut ranges = ActivationRanges::default();
    let mut shifts = BiasShifts::default();
    if let Some(workload) = calibration.as_deref_mut() {
        if gptq::used(&plan) {
            gptq::round(workload, &fp, &chosen, &plan, &session, &mut codes)?;
        }
        if chosen.iter().any(|(p, _)| p.a_bits.iter().any(|&a| a != FLOAT_BITS)) {
            ranges = calibrate::calibrate(workload, &fp, &chosen, &plan, &session, |l| {
                options.bos_aware && keeps_first_row(l)
            })?;
        }
        if options.bias_correction {
            shifts = bias::measure(workload, &fp, &chosen, &configs, &mut codes, &plan, &session)?;
        }
    }
    let shifts = options.bias_correction.then_some(&shifts);
    let fixes = Fixes { ranges: &ranges, shifts, bos_aware: options.bos_aware };
    let inputs = Inputs { fp: &fp, chosen: &chosen, plan: &plan, fixes, storage: options.storage };
    let mut built = Vec::new();
    for (k, (config, groups)) in configs.iter().enumerate() {
        log::info!("model {}/{}: step groups {groups:?}", k + 1, configs.len());
        // The last model built needs no codes kept for another: each is let go once written.
        let keep = if k + 1 == configs.len() { Keep::No } else { Keep::Yes };
        built.push(build(&inputs, config, groups, &mut codes, keep)?);
    }
    let noise = match calibration.as_deref_mut() {
        Some(workload) if options.ptqd => Some(ptqd::fit(workload, &fp, &built, steps_of(&plan, &configs), &session)?),
        _ => None,
    };

    let staging = folder::Staging::new(out).map_err(io_error(out))?;
    let denoiser_dir = if model.is_dir() {
        // `unet/`, or a DiT's `transformer/`.
        let denoiser = workload::denoiser_file(model);
        let component = denoiser.parent().and_then(Path::file_name).unwrap_or(std::ffi::OsStr::new("unet"));
        folder::copy_pipeline(model, staging.path(), component).map_err(io_error(model))?
    } else {
        staging.path().to_path_buf()
    };
    let mut data = SharedData::new(WEIGHTS_FILE, MIN_EXTERNAL_BYTES);
    let mut models = Vec::new();
    for (k, (built, (_, groups))) in built.iter().zip(&configs).enumerate() {
        let file = if k == 0 { "model.onnx".to_string() } else { format!("model.{k}.onnx") };
        Model::new(data.externalize(built)).save(denoiser_dir.join(&file), ExternalData::Inline)?;
        models.push(ManifestModel { file, step_groups: groups.clone() });
    }
    if let Some(noise) = &noise {
        noise.write(&denoiser_dir.join(NOISE_CORRECTION_FILE))?;
    }
    let weights = denoiser_dir.join(WEIGHTS_FILE);
    data.write(&weights).map_err(io_error(&weights))?;
    let mut manifest = Manifest {
        bitsearch_quantized: bitsearch_records::manifest::MANIFEST_FORMAT,
        model: absolute(&denoiser),
        model_sha256: sha,
        plan: absolute(plan_path),
        plan_sha256: bitsearch_types::sha256_file(plan_path).map_err(io_error(plan_path))?,
        method: plan.solver.name.clone(),
        avg_bits: plan.summary.avg_bits,
        predicted_sqnr_db: plan.prediction.sqnr_db,
        predicted_ssim: plan.prediction.ssim,
        predicted_psnr_db: plan.prediction.psnr_db,
        storage: options.storage,
        steps: plan.steps(),
        step_groups: plan.step_groups.clone(),
        models,
        weights: WEIGHTS_FILE.to_string(),
        quantized_layers: chosen.iter().filter(|(p, _)| p.weights.iter().any(|&w| w != WeightFormat::Float)).count(),
        activation_layers: chosen.iter().filter(|(p, _)| p.a_bits.iter().any(|&b| b != FLOAT_BITS)).count(),
        split_layers: chosen.iter().filter(|(p, _)| p.weights.iter().any(WeightFormat::split)).count(),
        calibration_items: calibration.as_ref().map(|w| w.items().to_vec()).unwrap_or_default(),
        corrections: Corrections {
            bos_aware: options.bos_aware
                && chosen.iter().any(|(p, l)| keeps_first_row(l) && p.a_bits.iter().any(|&a| a != FLOAT_BITS)),
            bias_correction: options.bias_correction,
            noise_correction: noise.is_some().then(|| NOISE_CORRECTION_FILE.to_string()),
        },
        files: Default::default(),
    };
    manifest.record_files(&denoiser_dir)?;
    manifest.write(&denoiser_dir)?;
    let denoiser_bytes = bitsearch_types::tree_bytes(&denoiser_dir).map_err(io_error(&denoiser_dir))?;
    staging.commit(options.overwrite).map_err(io_error(out))?;
    log::info!("wrote {} ({} distinct tensors in {WEIGHTS_FILE})", out.display(), data.tensors());
    Ok(Quantized { manifest, denoiser_bytes, stored_tensors: data.tensors() })
}

/// Refuses an `out` that exists (unless `overwrite` and it is an earlier output) or lies inside
/// the pipeline folder `model`.
fn refuse_out(model: &Path, out: &Path, overwrite: bool) -> Result<()> {
    if out.exists() && !overwrite {
        return Err(QuantizeError::Exists(out.to_path_buf()));
    }
    if let Some(why) = out.exists().then(|| folder::not_replaceable(out)).flatten() {
        return Err(QuantizeError::Io { path: out.to_path_buf(), message: format!("--overwrite refused: {why}") });
    }
    // A folder copied into itself would never end.
    if model.is_dir() && absolute(out).starts_with(absolute(model)) {
        return Err(QuantizeError::Io {
            path: out.to_path_buf(),
            message: format!(
                "is inside the pipeline folder {} that is copied into it; write it elsewhere",
                model.display()
            ),
        });
    }
    Ok(())
}

/// Reads what simulating the plan at `plan_path` needs besides the model: the plan, and for
/// GPTQ layers the sensitivity table whose items their moments come from. A check to run
/// before long work.
pub fn check_simulation(plan_path: &Path) -> Result<()> {
    let plan = Plan::read(plan_path)?;
    if gptq::used(&plan) {
        SensitivityTable::read(&plan.source.sensitivity_table)?;
    }
    Ok(())
}

/// The plan at `plan_path` simulated in float: for each distinct step-group configuration, a copy
/// of `model`'s denoiser whose quantized weights hold the dequantized codes `quantize` stores
/// (activations stay float), and the index of the copy that runs each denoising step.
pub fn simulate(model: &Path, plan_path: &Path) -> Result<(Vec<Model>, Vec<usize>)> {
    let Prepared { plan, fp, chosen, .. } = Prepared::new(model, plan_path)?;
    let configs = configurations(&plan, &chosen);
    let mut codes = Codebook::default();
    if gptq::used(&plan) {
        let spec = SensitivityTable::read(&plan.source.sensitivity_table)?.meta.config.generation();
        let mut workload = calibrate::open(model, &spec, &plan, plan_path)?;
        let session = SessionOptions { device: spec.device, threads: spec.threads, ..Default::default() };
        gptq::round(workload.as_mut(), &fp, &chosen, &plan, &session, &mut codes)?;
    }
    let mut models = Vec::new();
    for (config, _) in &configs {
        let mut values = HashMap::new();
        for ((_, layer), &(form, _)) in chosen.iter().zip(config) {
            if let Some(form) = form {
                let q = codes.get(&fp, layer, &plan, form)?;
                values.insert(layer.weight.clone().unwrap_or_default(), q.dequantize());
            }
        }
        let mut copy = fp.clone();
        rewrite::replace_initializers(&mut copy, &values);
        models.push(copy);
    }
    Ok((models, steps_of(&plan, &configs)))
}

/// The configuration that runs each denoising step; empty when one runs them all.
fn steps_of(plan: &Plan, configs: &[(Config, Vec<usize>)]) -> Vec<usize> {
    let mut by_step = Vec::new();
    if configs.len() > 1 {
        for (k, (_, groups)) in configs.iter().enumerate() {
            for &g in groups {
                let [first, last] = plan.step_groups[g];
                by_step.resize(by_step.len().max(last + 1), 0);
                by_step[first..=last].fill(k);
            }
        }
    }
    by_step
}

/// An I/O error naming `path`.
pub(crate) fn io_error(path: &Path) -> impl Fn(std::io::Error) -> QuantizeError {
    let path = path.to_path_buf();
    move |e| QuantizeError::Io { path: path.clone(), message: e.to_string() }
}

/// The (weight form, None in float; activation bits) of every chosen layer in one step group.
type Config = Vec<(Option<WeightFormat>, u32)>;

/// The distinct configurations of the plan's step groups, each with the groups that share it.
fn configurations(plan: &Plan, chosen: &[(PlanLayer, Layer)]) -> Vec<(Config, Vec<usize>)> {
    let mut configs: Vec<(Config, Vec<usize>)> = Vec::new();
    for g in 0..plan.step_groups.len().max(1) {
        let config: Config = chosen.iter().map(|(p, _)| (p.weight_form(g), p.a_bits[g])).collect();
        match configs.iter_mut().find(|(c, _)| *c == config) {
            Some((_, groups)) => groups.push(g),
            None => configs.push((config, vec![g])),
        }
    }
    configs
}

/// The codes of each (weight, form), computed once for every model that stores them.
#[derive(Debug, Default)]
struct Codebook {
    codes: HashMap<(String, WeightFormat), StoredWeight>,
}

/// Whether a model built keeps its codes in the [`Codebook`] for the models after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
}

impl Codebook {
    /// Lets the codes of `layer` in `form` go: on a model of gigabytes they would double what
    /// the written tensors hold.
    fn release(&mut self, layer: &Layer, form: WeightFormat) {
        self.codes.remove(&Self::key(layer, form));
    }

    /// Codes are kept per weight initializer, which layers sharing it share.
    fn key(layer: &Layer, form: WeightFormat) -> (String, WeightFormat) {
        (layer.weight.clone().unwrap_or_default(), form)
    }

    fn get(&mut self, model: &Model, layer: &Layer, plan: &Plan, form: WeightFormat) -> Result<&StoredWeight> {
        let key = Self::key(layer, form);
        if !self.codes.contains_key(&key) {
            let q = stored_weight(model, layer, &plan.quantizer.weight, form, None)?;
            self.codes.insert(key.clone(), q);
        }
        Ok(&self.codes[&key])
    }

    /// Rounds `layer`'s weight in the GPTQ `form` against its input `moment`, for [`Self::get`].
    fn round(&mut self, model: &Model, layer: &Layer, plan: &Plan, form: WeightFormat, moment: &Hessian) -> Result<()> {
        let q = stored_weight(model, layer, &plan.quantizer.weight, form, Some(moment))?;
        self.codes.insert(Self::key(layer, form), q);
        Ok(())
    }
}

/// What calibration measured for the models being built: activation ranges, and the output
/// shifts to correct when bias correction is on.
struct Fixes<'a> {
    ranges: &'a ActivationRanges,
    shifts: Option<&'a BiasShifts>,
    bos_aware: bool,
}

/// What every model built from one plan shares.
struct Inputs<'a> {
    fp: &'a Model,
    chosen: &'a [(PlanLayer, Layer)],
    plan: &'a Plan,
    fixes: Fixes<'a>,
    storage: Storage,
}

/// The full-precision model with one configuration (that of step groups `groups`) applied.
fn build(inputs: &Inputs<'_>, config: &Config, groups: &[usize], codebook: &mut Codebook, keep: Keep) -> Result<Model> {
    let Inputs { fp, chosen, plan, ref fixes, storage } = *inputs;
    let mut model = fp.clone();
    rewrite::raise_opset(&mut model, rewrite::LOWBIT_OPSET)?;
    rewrite::strip_node_metadata(&mut model);
    let group = groups.first().copied().unwrap_or(0);
    for ((_, layer), &(weight_form, a_bits)) in chosen.iter().zip(config) {
        let activations = a_bits != FLOAT_BITS;
        let layer_error = |message: String| QuantizeError::Layer { layer: layer.name.clone(), message };
        let mut weight_scales = None;
        if let Some(width) = weight_form {
            let weight = layer.weight.clone().unwrap_or_default();
            let prefix = format!("{weight}/{}", width.label());
            let group_size = width.scheme(&plan.quantizer.weight).group_size;
            if activations
                && (!matches!(width, WeightFormat::Int { .. }) || group_size.is_some() || width.rank().is_some())
            {
                return Err(layer_error(format!(
                    "8-bit activations need integer weights with per-channel scales and no branch, not {width}"
                )));
            }
            let axis = layer.channel_axis.unwrap_or(0);
            let entry = codebook.get(fp, layer, plan, width)?;
            // The branch goes in while the layer still reads its float weight, whatever stores
            // the codes after it.
            if let StoredWeight::Branched(branch, _) = entry {
                let factors = (&branch.left, &branch.right_in_layout(&layer.weight_shape, axis));
                rewrite::add_low_rank_branch(&mut model, &layer.name, &weight, axis, &prefix, factors)?;
            }
            let stored = match entry {
                StoredWeight::Half(values) => {
                    rewrite::store_half(&mut model, &weight, &prefix, values)?;
                    None
                }
                StoredWeight::Fp8(q) => Some((CodeArray::E4m3(&q.codes), &q.scales)),
                StoredWeight::Codes(q) | StoredWeight::Branched(_, q) => {
                    // Integer kernels take int8 weights only: narrower codes go in an int8 container.
                    let codes = match (activations, width.container_bits()) {
                        (false, 2) => CodeArray::Int2(&q.codes),
                        (false, 4) => CodeArray::Int4(&q.codes),
                        _ => CodeArray::Int8(&q.codes),
                    };
                    Some((codes, &q.scales))
                }
            };
            let Some((codes, scales)) = stored else {
                if keep == Keep::No {
                    codebook.release(layer, width);
                }
                continue;
            };
            let w = WeightCodes { codes, scales, axis, group_size };
            let as_nbits = storage == Storage::MatMulNBits
                && !activations
                && rewrite::store_matmul_nbits(&mut model, &layer.name, &weight, &prefix, w)?;
            if !as_nbits {
                let form =
                    if storage == Storage::Unpacked && !activations { Dequantize::CastMul } else { Dequantize::Linear };
                rewrite::store_weight(&mut model, &weight, &prefix, w, form)?;
            }
            weight_scales = Some(scales.iter().copied().collect::<Vec<f32>>());
            if keep == Keep::No {
                codebook.release(layer, width);
            }
            let shift = fixes.shifts.and_then(|s| s.get(&layer.name, width, groups, plan));
            // Integer kernels need the bias as an input of the op: no Add behind a QDQ layer.
            if let Some(shift) = shift.filter(|_| !activations || has_bias_input(layer)) {
                let negated: Vec<f32> = shift.iter().map(|s| -s).collect();
                rewrite::add_to_bias(
                    &mut model,
                    &layer.name,
                    &format!("{}/bc/{}/g{group}", layer.name, width.label()),
                    &negated,
                )?;
            }
        }
        if !activations {
            continue;
        }
        let first_row_float = fixes.bos_aware && keeps_first_row(layer);
        let params = |tensor: &str| -> Result<ActivationParams> {
            let range = fixes
                .ranges
                .get(&range_key(tensor, first_row_float), groups)
                .ok_or_else(|| layer_error(format!("no calibrated range for '{tensor}'")))?;
            let q = ActQuantizer::new(ACTIVATION_BITS as u8, range).map_err(|e| layer_error(e.to_string()))?;
            let (scale, zero_point) = q.params();
            Ok(ActivationParams { scale, zero_point: zero_point as u8 })
        };
        let node = &fp.graph().node[node_position(fp, &layer.name)?];
        let mut input_scale = None;
        for tensor in &layer.inputs {
            let slot = node.input.iter().position(|i| i == tensor).unwrap_or(0);
            let q = params(tensor)?;
            input_scale.get_or_insert(q.scale);
            let prefix = format!("{}/a8/in{slot}/g{group}", layer.name);
            if first_row_float {
                rewrite::quantize_input_keeping_first_row(&mut model, &layer.name, slot, &prefix, q)?;
            } else {
                rewrite::quantize_input(&mut model, &layer.name, slot, &prefix, q)?;
            }
        }
        if layer.kind == LayerKind::Weight {
            rewrite::quantize_output(
                &mut model,
                &layer.name,
                &format!("{}/a8/out/g{group}", layer.name),
                params(&layer.output)?,
            )?;
            // Conv and Gemm take their bias as input 2 (a corrected one by now); QLinearConv and
            // QGemm want it as int32.
            let node = &model.graph().node[node_position(&model, &layer.name)?];
            let bias = node.input.get(2).filter(|b| GraphView::new(model.graph()).initializer(b).is_some()).cloned();
            if let (Some(bias), Some(scales), Some(s)) = (bias, &weight_scales, input_scale) {
                rewrite::store_bias(&mut model, &bias, &format!("{bias}/a8/g{group}"), s, scales)?;
            }
        }
    }
    Ok(model)
}

/// MixDQ's BOS-aware layers: cross-attention K/V MatMuls of the text embedding (one activation
/// input, `[batch, tokens, width]`).
fn keeps_first_row(layer: &Layer) -> bool {
    layer.role.reads_text() && layer.op == "MatMul" && layer.inputs.len() == 1
}

/// Conv, ConvTranspose and Gemm carry a bias input (which may be absent but can be added).
fn has_bias_input(layer: &Layer) -> bool {
    matches!(layer.op.as_str(), "Conv" | "ConvTranspose" | "Gemm")
}

fn node_position(model: &Model, name: &str) -> Result<usize> {
    model
        .graph()
        .node
        .iter()
        .position(|n| n.name() == name)
        .ok_or_else(|| QuantizeError::Layer { layer: name.to_string(), message: "is not a node of the graph".into() })
}
