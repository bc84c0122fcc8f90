//! Seeded Gaussian noise, reproducible per batch item.
//!
//! Every batch item draws from its own ChaCha8 generator seeded by that item's seed, so image
//! `i` of a run is the same whatever else shares its batch. Initial noise uses stream 0 of the
//! generator and the fresh noise stochastic samplers inject mid-run uses stream 1, so the two
//! never overlap.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::sampler::SampleError;

/// Stream of the per-item generators that [`NoiseSource`] draws from.
const MID_RUN_STREAM: u64 = 1;

/// Unit Gaussian noise of `shape`, fully determined by `seed`.
pub fn gaussian(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.sample(StandardNormal))
}

/// A batch `[seeds.len(), ..per_item_shape]` whose item `i` equals `gaussian(per_item_shape, seeds[i])`.
pub fn batch_noise(per_item_shape: &[usize], seeds: &[u64]) -> ArrayD<f32> {
    let mut rngs: Vec<ChaCha8Rng> = seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect();
    let mut shape = vec![seeds.len()];
    shape.extend_from_slice(per_item_shape);
    per_item(&shape, &mut rngs)
}

/// Fresh noise for stochastic samplers, one independent generator per batch item.
#[derive(Debug, Clone)]
pub struct NoiseSource {
    rngs: Vec<ChaCha8Rng>,
}

impl NoiseSource {
    /// One generator per batch item, seeded like [`batch_noise`] but on a separate stream.
    pub fn new(seeds: &[u64]) -> Self {
        let rngs = seeds
            .iter()
            .map(|&seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(MID_RUN_STREAM);
                rng
            })
            .collect();
        Self { rngs }
    }

    /// Unit Gaussian noise for a whole batch; `shape[0]` must equal the number of seeds.
    pub fn draw(&mut self, shape: &[usize]) -> Result<ArrayD<f32>, SampleError> {
        if shape.first() != Some(&self.rngs.len()) {
            return Err(SampleError::Config(format!(
                "the noise source was seeded for a batch of {} but the sample has shape {shape:?}; \
                 give one seed per batch item",
                self.rngs.len()
            )));
        }
        Ok(per_item(shape, &mut self.rngs))
    }
}

/// Fills `shape` item by item along axis 0, item `i` drawn from `rngs[i]` in row-major order.
fn per_item(shape: &[usize], rngs: &mut [ChaCha8Rng]) -> ArrayD<f32> {
    let item_len: usize = shape.iter().skip(1).product();
    let mut index = 0;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let value = rngs[index / item_len].sample(StandardNormal);
        index += 1;
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    #[test]
    fn same_seed_same_noise_other_seed_other_noise() {
        assert_eq!(gaussian(&[2, 3, 4], 7), gaussian(&[2, 3, 4], 7));
        assert_ne!(gaussian(&[2, 3, 4], 7), gaussian(&[2, 3, 4], 8));
    }

    #[test]
    fn noise_is_unit_gaussian() {
        let x = gaussian(&[100_000], 3);
        let mean = x.mean().unwrap();
        let std = x.std(0.0);
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((std - 1.0).abs() < 0.01, "std {std}");
    }

    #[test]
    fn batch_item_is_independent_of_batch_composition() {
        let item = [2, 3, 5];
        let big = batch_noise(&item, &[11, 22, 33]);
        let small = batch_noise(&item, &[22]);
        assert_eq!(big.shape(), &[3, 2, 3, 5]);
        assert_eq!(big.index_axis(Axis(0), 1), small.index_axis(Axis(0), 0));
        for (i, seed) in [11, 22, 33].into_iter().enumerate() {
            assert_eq!(big.index_axis(Axis(0), i), gaussian(&item, seed));
        }
    }

    #[test]
    fn noise_source_is_deterministic_per_item_and_apart_from_initial_noise() {
        let mut a = NoiseSource::new(&[5, 6]);
        let mut b = NoiseSource::new(&[6]);
        let first = a.draw(&[2, 4, 4]).unwrap();
        assert_eq!(first.index_axis(Axis(0), 1), b.draw(&[1, 4, 4]).unwrap().index_axis(Axis(0), 0));
        assert_ne!(first, a.draw(&[2, 4, 4]).unwrap(), "successive draws must differ");
        assert_eq!(first, NoiseSource::new(&[5, 6]).draw(&[2, 4, 4]).unwrap());
        assert_ne!(first, batch_noise(&[4, 4], &[5, 6]));
    }

    #[test]
    fn noise_source_rejects_a_batch_of_the_wrong_size() {
        let mut source = NoiseSource::new(&[1, 2]);
        assert!(matches!(source.draw(&[3, 4]), Err(SampleError::Config(_))));
        assert!(matches!(source.draw(&[]), Err(SampleError::Config(_))));
    }
}
