//! A bit allocation — which option every layer takes in every step group — and what it costs
//! and is predicted to lose, computed directly from the problem (never from the solver), so
//! plans and tests can check the solver's answers.

use crate::problem::{Precision, Problem};
use bitsearch_records::{Combination, Resource};
use bitsearch_types::WeightFormat;
use bitsearch_types::{FLOAT_BITS, LossBasis, MetricGroup, Rounding};
use serde::{Deserialize, Serialize};

/// `assignment[layer][step_group]`: the index of the option taken, None for protected layers.
pub type Assignment = Vec<Vec<Option<usize>>>;

/// What an allocation costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Weight bytes (each distinct weight bit-width a layer uses is stored once).
    pub memory: f64,
    pub bops: f64,
    /// Parameter-weighted mean stored weight bits of the quantized layers.
    pub avg_bits: f64,
}

impl Usage {
    pub fn get(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Memory => self.memory,
            Resource::Bops => self.bops,
            Resource::AvgBits => self.avg_bits,
        }
    }
}

/// An allocation's cost and predicted loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub usage: Usage,
    /// Normalised quality loss plus content weight times normalised content loss, as the
    /// program sums them (around a base plan, with the base counted once per layer).
    pub objective: f64,
    /// Σ 10^(−SQNR/10) over quality layers and step groups (around a base plan: the base's
    /// plus every layer's change from it).
    pub quality_loss: f64,
    /// Σ (1 − SSIM) over content layers and step groups (likewise).
    pub content_loss: f64,
    /// Σ final-image MSE over every quantized layer and step group, whatever the loss basis
    /// (likewise).
    pub image_mse: f64,
    /// What the quality and content losses measure.
    pub basis: LossBasis,
    /// Around a base plan: the changes predicted less noise than none (held at none), so the
    /// plan lies where the linear model around the base says nothing.
    pub beyond_base: bool,
    /// How the summed losses combine into the predicted metrics (default: additively).
    pub combination: Combination,
}

impl Evaluation {
    /// The denoiser-output SQNR the summed noise powers predict through the fit, dB (NaN on
    /// the image basis, which predicts no SQNR).
    pub fn predicted_sqnr_db(&self) -> f64 {
        self.combination.sqnr_db(self.additive_sqnr_db())
    }

    /// The final-image SSIM the summed content losses predict through the fit (NaN on the
    /// image basis).
    pub fn predicted_ssim(&self) -> f64 {
        self.combination.ssim(self.additive_ssim())
    }

    /// The final-image PSNR the summed image MSEs predict through the fit, dB.
    pub fn predicted_psnr_db(&self) -> f64 {
        self.combination.psnr_db(self.additive_psnr_db())
    }

    /// The headline prediction of the basis, dB: denoiser SQNR (decoupled) or image PSNR (image).
    pub fn predicted_db(&self) -> f64 {
        match self.basis {
            LossBasis::Decoupled => self.predicted_sqnr_db(),
            LossBasis::Image => self.predicted_psnr_db(),
        }
    }

    /// The SQNR of the summed noise powers alone, as if the layers' errors were independent.
    pub fn additive_sqnr_db(&self) -> f64 {
        match self.basis {
            LossBasis::Image => f64::NAN,
            LossBasis::Decoupled if self.quality_loss > 0.0 => -10.0 * self.quality_loss.log10(),
            LossBasis::Decoupled => f64::INFINITY,
        }
    }

    /// The SSIM of the summed content losses alone.
    pub fn additive_ssim(&self) -> f64 {
        match self.basis {
            LossBasis::Image => f64::NAN,
            LossBasis::Decoupled => 1.0 - self.content_loss,
        }
    }

    /// The PSNR of the summed image MSEs alone.
    pub fn additive_psnr_db(&self) -> f64 {
        bitsearch_metrics::psnr_db(self.image_mse)
    }
}

impl Problem {
    /// What option `o` of layer `l` adds to `resource` when taken in step group `g`: BOPs
    /// of the group's steps, or (for a plan with one step group) the stored weight's bytes or
    /// bits. Storage across several groups is counted per distinct width instead.
    pub fn coefficient(&self, resource: Resource, l: usize, o: usize, g: usize) -> f64 {
        let layer = &self.layers[l];
        let p = layer.options[o];
        match resource {
            Resource::Bops => {
                layer.macs() as f64 * layer.value_bits(o) * f64::from(p.a_bits) * self.steps_per_group[g] as f64
            }
            Resource::Memory => layer.bytes[o] as f64,
            Resource::AvgBits => layer.layer.params as f64 * layer.value_bits(o),
        }
    }

    /// What the protected layers (in float) use of `resource`, whatever the plan.
    pub fn protected_usage(&self, resource: Resource) -> f64 {
        let protected = self.layers.iter().filter(|l| l.protected);
        match resource {
            Resource::Memory => protected.map(|l| l.float_bytes() as f64).sum(),
            Resource::Bops => {
                protected.map(|l| l.macs() as f64).sum::<f64>()
                    * f64::from(FLOAT_BITS * FLOAT_BITS)
                    * self.total_steps() as f64
            }
            Resource::AvgBits => 0.0,
        }
    }

    /// Every layer in float.
    pub fn full_precision(&self) -> Usage {
        let memory = self.layers.iter().map(|l| l.float_bytes() as f64).sum();
        let bops = self.layers.iter().map(|l| l.macs() as f64).sum::<f64>()
            * f64::from(FLOAT_BITS * FLOAT_BITS)
            * self.total_steps() as f64;
        Usage { memory, bops, avg_bits: f64::from(FLOAT_BITS) }
    }

    pub fn evaluate(&self, assignment: &Assignment, content_weight: f64) -> Evaluation {
        let (mut memory, mut bops, mut bits, mut quality_loss, mut content_loss) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut image_mse = 0.0;
        for (l, (layer, chosen)) in self.layers.iter().zip(assignment).enumerate() {
            if layer.protected {
                memory += layer.float_bytes() as f64;
                bops += layer.macs() as f64 * f64::from(FLOAT_BITS * FLOAT_BITS) * self.total_steps() as f64;
                continue;
            }
            let mut stored: Vec<WeightFormat> = Vec::new();
            for (g, option) in chosen.iter().enumerate() {
                let Some(o) = *option else { continue };
                let p = layer.options[o];
                if !stored.contains(&p.weight) {
                    stored.push(p.weight);
                    memory += self.coefficient(Resource::Memory, l, o, g);
                    bits += self.coefficient(Resource::AvgBits, l, o, g);
                }
                bops += self.coefficient(Resource::Bops, l, o, g);
                match self.group(l) {
                    MetricGroup::Quality => quality_loss += layer.loss[o][g],
                    MetricGroup::Content => content_loss += layer.loss[o][g],
                }
                image_mse += layer.image_mse[o][g];
            }
        }
        let params = self.quantized_params();
        let avg_bits = if params > 0 { bits / params as f64 } else { 0.0 };
        let objective = quality_loss / self.quality_scale + content_weight * content_loss / self.content_scale;
        // Around a base plan the changes are linear estimates; one that predicts less noise
        // than none is held at none.
        let o = self.offset;
        let beyond_base = quality_loss < o.quality || content_loss < o.content || image_mse < o.image_mse;
        Evaluation {
            usage: Usage { memory, bops, avg_bits },
            objective,
            quality_loss: (quality_loss - o.quality).max(0.0),
            content_loss: (content_loss - o.content).max(0.0),
            image_mse: (image_mse - o.image_mse).max(0.0),
            basis: self.basis,
            beyond_base,
            combination: self.combination(),
        }
    }

    /// Every quantized layer at `w_bits` weights, plain (activation-only layers and the activation
    /// side at the fewest activation bits offered), if every layer offers it. Codes are rounded
    /// to nearest where the layer offers that, else by GPTQ (a table probed with GPTQ alone).
    pub fn uniform(&self, w_bits: u32) -> Option<Assignment> {
        self.layers
            .iter()
            .map(|layer| {
                if layer.protected {
                    return Some(vec![None; self.groups()]);
                }
                let wanted = if layer.layer.params > 0 { w_bits } else { FLOAT_BITS };
                let plain = |p: Precision| !p.weight.rounded(Rounding::Nearest).unwrap_or(p.weight).variant();
                let option = (0..layer.options.len())
                    .filter(|&o| {
                        let p = layer.options[o];
                        p.w_bits() == wanted && plain(p) && layer.loss[o].iter().all(|l| l.is_finite())
                    })
                    .min_by_key(|&o| {
                        (layer.options[o].a_bits, layer.options[o].weight.rounding() != Rounding::Nearest)
                    })?;
                Some(vec![Some(option); self.groups()])
            })
            .collect()
    }

    /// Every quantized layer at its least lossy option in every group (ties: the option least
    /// lossy over the whole set). The smallest objective any plan can have.
    pub fn least_loss(&self, content_weight: f64) -> Assignment {
        let mut assignment: Assignment = (0..self.layers.len())
            .map(|l| {
                let layer = &self.layers[l];
                (0..self.groups())
                    .map(|g| {
                        let by_loss = |a: &usize, b: &usize| {
                            self.cost(l, *a, g, content_weight).total_cmp(&self.cost(l, *b, g, content_weight))
                        };
                        (!layer.protected).then(|| (0..layer.options.len()).min_by(by_loss)).flatten()
                    })
                    .collect()
            })
            .collect();
        for tie in &self.ties {
            let lead = &self.layers[tie[0]];
            // `g` indexes the costs and every tied layer's row of the assignment alike.
            #[allow(clippy::needless_range_loop)]
            for g in 0..self.groups() {
                let total = |p: Precision| -> f64 {
                    tie.iter()
                        .map(|&l| {
                            let o = self.layers[l].options.iter().position(|&q| q == p).unwrap_or(0);
                            self.cost(l, o, g, content_weight)
                        })
                        .sum()
                };
                let Some(best) = lead.options.iter().copied().min_by(|&a, &b| total(a).total_cmp(&total(b))) else {
                    continue;
                };
                for &l in tie {
                    assignment[l][g] = self.layers[l].options.iter().position(|&q| q == best);
                }
            }
        }
        assignment
    }

    /// The allocation using the least (or with `most`, the most) of `resource` among plans
    /// that keep one option per layer: every quantized layer at its cheapest (dearest) finite
    /// option by [`Problem::coefficient`].
    pub fn extreme(&self, resource: Resource, most: bool) -> Assignment {
        (0..self.layers.len())
            .map(|l| {
                let layer = &self.layers[l];
                if layer.protected {
                    return vec![None; self.groups()];
                }
                let cost = |o: &usize| self.coefficient(resource, l, *o, 0);
                let by_cost = |a: &usize, b: &usize| cost(a).total_cmp(&cost(b));
                let finite = (0..layer.options.len()).filter(|o| layer.loss[*o].iter().all(|l| l.is_finite()));
                let pick = if most { finite.max_by(by_cost) } else { finite.min_by(by_cost) };
                vec![pick; self.groups()]
            })
            .collect()
    }
}
