//! Tests of what every sampler shares: settings checks, errors, batches and PTQD's correction.

use ndarray::{ArrayD, Axis};

use super::test_support::*;
use super::*;
use crate::noise::batch_noise;
use crate::schedule::TimestepSpacing;

fn discrete() -> TimeDomain {
    TimeDomain::Discrete(sd_schedule(TimestepSpacing::Leading, 1))
}

#[test]
fn every_kind_has_one_sampler_and_a_place_in_the_help() {
    for kind in SamplerKind::ALL {
        assert_eq!(SAMPLERS.iter().filter(|s| s.kind() == kind).count(), 1, "{kind}");
        assert_eq!(of(kind).unwrap().kind(), kind);
    }
    assert_eq!(help(), "Sampler: ddim, euler, lcm (discrete-time models), consistency, edm-euler (sigma models).");
    assert_eq!(default_for(&discrete()), SamplerKind::Ddim);
    assert_eq!(default_for(&edm_domain()), SamplerKind::Consistency);
}

#[test]
fn every_sampler_calls_the_network_once_per_step_at_the_reported_times() {
    for kind in SamplerKind::ALL {
        let domain = match of(kind).unwrap().domain() {
            Domain::Sigma => edm_domain(),
            Domain::Discrete => discrete(),
        };
        let settings = SamplerSettings::new(kind, 7, Prediction::Epsilon, domain);
        let (out, calls) = run_gaussian(&settings, [1, 2]);
        assert_eq!(out.shape(), &[2, 4, 50, 50]);
        assert_calls_match_timesteps(&settings, &calls);
    }
}

#[test]
fn all_prediction_types_give_the_same_trajectory() {
    let cases =
        [(SamplerKind::Ddim, discrete()), (SamplerKind::Euler, discrete()), (SamplerKind::EdmEuler, edm_domain())];
    for (kind, domain) in cases {
        let outputs: Vec<ArrayD<f32>> = Prediction::ALL
            .into_iter()
            .map(|pred| run_gaussian(&SamplerSettings::new(kind, 20, pred, domain.clone()), [1, 2]).0)
            .collect();
        for other in &outputs[1..] {
            let diff = max_diff(&outputs[0], other);
            assert!(diff < 1e-3, "{kind}: predictions disagree by {diff}");
        }
    }
}

#[test]
fn batch_items_do_not_depend_on_their_neighbours() {
    let mut settings = SamplerSettings::new(SamplerKind::Ddim, 10, Prediction::Epsilon, discrete());
    settings.eta = 1.0;
    let pair = run_gaussian(&settings, [1, 2]).0;
    let alone = {
        let mut denoiser = Gaussian::for_settings(&settings);
        let initial = batch_noise(&ITEM_SHAPE, &[2]);
        sample(&settings, &mut denoiser, initial, &mut NoiseSource::new(&[2])).unwrap()
    };
    assert_eq!(pair.index_axis(Axis(0), 1), alone.index_axis(Axis(0), 0));
}

fn config_error(settings: &SamplerSettings, expect: &str) {
    let mut denoiser = Gaussian::for_settings(settings);
    let result = sample(settings, &mut denoiser, batch_noise(&[3], &[1]), &mut NoiseSource::new(&[1]));
    match result {
        Err(SampleError::Config(msg)) => assert!(msg.contains(expect), "{msg:?} lacks {expect:?}"),
        other => panic!("expected a config error mentioning {expect:?}, got {other:?}"),
    }
    assert!(timesteps(settings).is_err());
    assert!(denoiser.calls.is_empty());
}

#[test]
fn bad_settings_are_config_errors() {
    let base = |kind, domain| SamplerSettings::new(kind, 4, Prediction::Epsilon, domain);
    config_error(&SamplerSettings::new(SamplerKind::Ddim, 0, Prediction::Epsilon, discrete()), "steps");
    config_error(&SamplerSettings::new(SamplerKind::Ddim, 1001, Prediction::Epsilon, discrete()), "steps");
    for eta in [-0.1, 1.5, f64::NAN] {
        let mut s = base(SamplerKind::Ddim, discrete());
        s.eta = eta;
        config_error(&s, "eta");
    }
    for kind in [SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::Lcm] {
        config_error(&base(kind, edm_domain()), "discrete-timestep");
    }
    for kind in [SamplerKind::Consistency, SamplerKind::EdmEuler] {
        config_error(&base(kind, discrete()), "sigma-parameterised");
        for (sigma_min, sigma_max, sigma_data) in
            [(0.0, 80.0, 0.5), (1.0, 1.0, 0.5), (0.002, 80.0, 0.0), (0.002, f64::NAN, 0.5)]
        {
            config_error(&base(kind, TimeDomain::Sigma { sigma_min, sigma_max, sigma_data }), "sigma_min");
        }
    }
    let mut lcm = base(SamplerKind::Lcm, discrete());
    lcm.steps = 51;
    config_error(&lcm, "original_inference_steps");
    lcm.steps = 4;
    for original in [0, 1001] {
        lcm.original_inference_steps = original;
        config_error(&lcm, "original_inference_steps");
    }
    lcm.original_inference_steps = 50;
    lcm.timestep_scaling = 0.0;
    config_error(&lcm, "timestep_scaling");
}

#[test]
fn noise_for_the_wrong_batch_is_a_config_error() {
    let mut settings = SamplerSettings::new(SamplerKind::Ddim, 4, Prediction::Epsilon, discrete());
    settings.eta = 1.0;
    let mut denoiser = Gaussian::for_settings(&settings);
    let result = sample(&settings, &mut denoiser, batch_noise(&[3], &[1, 2]), &mut NoiseSource::new(&[1]));
    assert!(matches!(result, Err(SampleError::Config(_))), "{result:?}");
}

/// Answers with a fixed result, to exercise how the samplers treat a misbehaving network.
struct Broken(Result<ArrayD<f32>, String>);

impl Denoiser for Broken {
    fn eval(&mut self, _: usize, _: &ArrayD<f32>, _: f32) -> Result<ArrayD<f32>, SampleError> {
        self.0.clone().map_err(SampleError::Denoiser)
    }
}

#[test]
fn network_failures_and_wrong_shapes_are_denoiser_errors() {
    let settings = SamplerSettings::new(SamplerKind::Euler, 4, Prediction::Epsilon, discrete());
    let run = |mut net: Broken| sample(&settings, &mut net, batch_noise(&[3], &[1]), &mut NoiseSource::new(&[1]));
    match run(Broken(Err("session exploded".into()))) {
        Err(SampleError::Denoiser(msg)) => assert_eq!(msg, "session exploded"),
        other => panic!("{other:?}"),
    }
    match run(Broken(Ok(batch_noise(&[4], &[1])))) {
        Err(SampleError::Denoiser(msg)) => assert!(msg.contains("shape"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

/// Channel biases of [`Corrupted`], one per channel of [`ITEM_SHAPE`].
const BIAS: [f32; 4] = [0.1, -0.2, 0.05, 0.0];

/// The exact Gaussian denoiser with its ε corrupted as a quantized network's might be,
/// ε_q = 1.1·ε + b_c, answered as `prediction`.
struct Corrupted {
    exact: Gaussian,
    prediction: Prediction,
}

impl Denoiser for Corrupted {
    fn eval(&mut self, step: usize, x: &ArrayD<f32>, t: f32) -> Result<ArrayD<f32>, SampleError> {
        let mut eps = self.exact.eval(step, x, t)?.mapv(|e| 1.1 * e);
        for (mut channel, b) in eps.axis_iter_mut(Axis(1)).zip(BIAS) {
            channel.mapv_inplace(|e| e + b);
        }
        let TimeDomain::Discrete(schedule) = &self.exact.domain else { unreachable!() };
        let a = euler::input_alpha(schedule, f64::from(t));
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        Ok(match self.prediction {
            Prediction::Epsilon => eps,
            Prediction::VPrediction => lin(&eps, 1.0 / sa, x, -sb / sa),
            Prediction::Sample => lin(x, 1.0 / sa, &eps, -sb / sa),
            Prediction::Score => eps.mapv(|e| (-f64::from(e) / sb) as f32),
        })
    }
}

/// The correction of [`Corrupted`] for `settings`' timesteps, with residual σ `sigma`.
fn known_correction(settings: &SamplerSettings, sigma: f64) -> Arc<NoiseCorrection> {
    let times = plan(settings).unwrap();
    let steps = times.into_iter().map(|timestep| StepNoise {
        timestep,
        k_fitted: 0.1,
        k: 0.1,
        bias: BIAS.to_vec(),
        sigma,
        rms_error: 1.0,
    });
    Arc::new(NoiseCorrection {
        bitsearch_noise_correction: 1,
        sampler: settings.kind.to_string(),
        prediction: "epsilon".into(),
        calibration_items: Vec::new(),
        steps: steps.collect(),
    })
}

fn run_corrupted(settings: &SamplerSettings, prediction: Prediction) -> ArrayD<f32> {
    let exact = Gaussian { prediction: Prediction::Epsilon, ..Gaussian::for_settings(settings) };
    let mut denoiser = Corrupted { exact, prediction };
    let settings = SamplerSettings { prediction, ..settings.clone() };
    sample(&settings, &mut denoiser, batch_noise(&ITEM_SHAPE, &[1, 2]), &mut NoiseSource::new(&[3, 4])).unwrap()
}

#[test]
fn the_noise_correction_undoes_a_known_corruption_in_every_prediction_type() {
    for (kind, eta) in [(SamplerKind::Ddim, 0.0), (SamplerKind::Ddim, 1.0), (SamplerKind::Euler, 0.0)] {
        let mut settings = SamplerSettings::new(kind, 8, Prediction::Epsilon, discrete());
        settings.eta = eta;
        let mut exact = Gaussian::for_settings(&settings);
        let clean =
            sample(&settings, &mut exact, batch_noise(&ITEM_SHAPE, &[1, 2]), &mut NoiseSource::new(&[3, 4])).unwrap();
        let corrupted = run_corrupted(&settings, Prediction::Epsilon);
        assert!(max_diff(&corrupted, &clean) > 0.05, "{kind} eta {eta}: the corruption must show");
        // σ = 0: nothing is left to take from the fresh noise, so even eta = 1 matches exactly.
        settings.correction = Some(known_correction(&settings, 0.0));
        for prediction in [Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample] {
            let err = max_diff(&run_corrupted(&settings, prediction), &clean);
            assert!(err < 2e-3, "{kind} eta {eta} {prediction}: max error {err}");
        }
    }
}

#[test]
fn a_residual_takes_its_share_from_the_fresh_noise_only_when_there_is_some() {
    let std = |eta: f64, sigma: f64| {
        let mut settings = SamplerSettings::new(SamplerKind::Ddim, 8, Prediction::Epsilon, discrete());
        settings.eta = eta;
        settings.correction = Some(known_correction(&settings, sigma));
        let out = run_corrupted(&settings, Prediction::Epsilon);
        f64::from(out.std(0.0))
    };
    assert!(std(1.0, 0.5) < std(1.0, 0.0) - 1e-3, "{} vs {}", std(1.0, 0.5), std(1.0, 0.0));
    assert_eq!(std(0.0, 0.5), std(0.0, 0.0), "a deterministic sampler adds no noise to reduce");
}

#[test]
fn a_correction_for_other_timesteps_or_samplers_is_refused() {
    let settings = SamplerSettings::new(SamplerKind::Ddim, 8, Prediction::Epsilon, discrete());
    let fitted = known_correction(&settings, 0.0);
    let message = |settings: &SamplerSettings| {
        let mut net = Gaussian::for_settings(settings);
        let result = sample(settings, &mut net, batch_noise(&[3], &[1]), &mut NoiseSource::new(&[1]));
        match result {
            Err(SampleError::Config(m)) => m,
            other => panic!("{other:?}"),
        }
    };
    let mut other_steps = SamplerSettings::new(SamplerKind::Ddim, 6, Prediction::Epsilon, discrete());
    other_steps.correction = Some(fitted.clone());
    assert!(message(&other_steps).contains("fitted for ddim 8 steps; this run is ddim 6 steps"));
    let mut lcm = SamplerSettings::new(SamplerKind::Lcm, 8, Prediction::Epsilon, discrete());
    lcm.correction = Some(fitted);
    assert!(message(&lcm).contains("ddim and euler samplers, not by lcm"), "{}", message(&lcm));
}
