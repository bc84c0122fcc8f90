//! Writing generated samples as PNG. Three-channel samples become RGB images; one-channel
//! samples are height fields: a colour-mapped, hill-shaded picture for people and a 16-bit
//! grayscale file that keeps the heights' precision for programs.

use crate::error::PipelineError;
use bitsearch_types::write_atomically;
use image::{ImageBuffer, ImageFormat, Luma, Rgb};
use ndarray::{ArrayView3, ArrayViewD, Axis};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Colour ramp for heights, low to high: valley green, meadow, sand, rock, snow.
const TERRAIN_RAMP: [(f32, [f32; 3]); 5] = [
    (0.0, [0.13, 0.32, 0.18]),
    (0.3, [0.45, 0.62, 0.30]),
    (0.55, [0.80, 0.74, 0.50]),
    (0.8, [0.55, 0.40, 0.28]),
    (1.0, [0.97, 0.97, 0.97]),
];

/// Writes each item of `samples` ([batch, channels, height, width], values in `range`) to
/// `dir/{prefix}{first + i:03}.png` and returns the paths written.
pub fn save_samples(
    samples: ArrayViewD<'_, f32>,
    range: (f32, f32),
    dir: &Path,
    prefix: &str,
    first: usize,
) -> Result<Vec<PathBuf>, PipelineError> {
    let samples = samples
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|_| PipelineError::Request("samples must have shape [batch, channels, height, width]".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::file(dir, format!("cannot create: {e}")))?;
    let mut written = Vec::new();
    for (i, item) in samples.axis_iter(Axis(0)).enumerate() {
        let path = dir.join(format!("{prefix}{:03}.png", first + i));
        match item.shape()[0] {
            1 => {
                write_png(&path, &height_map(item, range))?;
                let raw = path.with_file_name(format!("{prefix}{:03}_height16.png", first + i));
                write_png(&raw, &height_gray16(item, range))?;
                written.extend([path, raw]);
            }
            3 => {
                write_png(&path, &rgb(item, range))?;
                written.push(path);
            }
            c => {
                return Err(PipelineError::Request(format!(
                    "cannot write a {c}-channel sample as PNG (1 or 3 expected)"
                )));
            }
        }
    }
    Ok(written)
}

fn unit(v: f32, (lo, hi): (f32, f32)) -> f32 {
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

fn rgb(item: ArrayView3<'_, f32>, range: (f32, f32)) -> image::DynamicImage {
    let (h, w) = (item.shape()[1], item.shape()[2]);
    let img = ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        Rgb(std::array::from_fn(|c| (unit(item[[c, y as usize, x as usize]], range) * 255.0).round() as u8))
    });
    image::DynamicImage::ImageRgb8(img)
}

fn height_gray16(item: ArrayView3<'_, f32>, range: (f32, f32)) -> image::DynamicImage {
    let (h, w) = (item.shape()[1], item.shape()[2]);
    let img = ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        Luma([(unit(item[[0, y as usize, x as usize]], range) * 65535.0).round() as u16])
    });
    image::DynamicImage::ImageLuma16(img)
}

/// Colour by height (stretched to the item's own range so relief shows) times a hill shade
/// lit from the north-west.
fn height_map(item: ArrayView3<'_, f32>, range: (f32, f32)) -> image::DynamicImage {
    let z = item.index_axis(Axis(0), 0);
    let (h, w) = (z.shape()[0], z.shape()[1]);
    let (lo, hi) = z.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { (lo, hi) } else { range };
    // Slopes in units of the whole range per pixel, exaggerated so gentle terrain still shades.
    let relief = 4.0 * w as f32 / (range.1 - range.0);
    let img = ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let at = |xx: usize, yy: usize| z[[yy.min(h - 1), xx.min(w - 1)]];
        let dx = (at(x + 1, y) - at(x.saturating_sub(1), y)) * 0.5 * relief;
        let dy = (at(x, y + 1) - at(x, y.saturating_sub(1))) * 0.5 * relief;
        let normal = [-dx, -dy, 1.0];
        let norm = (normal[0] * normal[0] + normal[1] * normal[1] + 1.0).sqrt();
        let light = [-0.577_f32, -0.577, 0.577];
        let shade = ((normal[0] * light[0] + normal[1] * light[1] + normal[2] * light[2]) / norm).clamp(0.0, 1.0);
        let colour = ramp(unit(z[[y, x]], span));
        Rgb(colour.map(|c| ((c * (0.45 + 0.55 * shade)) * 255.0).round().clamp(0.0, 255.0) as u8))
    });
    image::DynamicImage::ImageRgb8(img)
}

fn ramp(t: f32) -> [f32; 3] {
    for pair in TERRAIN_RAMP.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        if t <= t1 {
            let f = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
            return std::array::from_fn(|i| c0[i] + f * (c1[i] - c0[i]));
        }
    }
    TERRAIN_RAMP[TERRAIN_RAMP.len() - 1].1
}

fn write_png(path: &Path, img: &image::DynamicImage) -> Result<(), PipelineError> {
    let mut bytes = Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png).map_err(|e| PipelineError::file(path, format!("PNG encoding: {e}")))?;
    write_atomically(path, bytes.get_ref()).map_err(|e| PipelineError::file(path, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn rgb_and_height_samples_round_trip_through_png() {
        let dir = tempfile::tempdir().unwrap();
        let rgb_samples = Array4::from_shape_fn((2, 3, 4, 5), |(b, c, y, x)| (b + c + y + x) as f32 / 10.0 - 1.0);
        let paths = save_samples(rgb_samples.view().into_dyn(), (-1.0, 1.0), dir.path(), "img_", 7).unwrap();
        assert_eq!(paths.len(), 2);
        let first = image::open(&paths[0]).unwrap().to_rgb8();
        assert_eq!((first.width(), first.height()), (5, 4));
        // (0 + 1 + 2 + 3) / 10 − 1 = −0.4 → (0.6 / 2) · 255 = 76.5 → 77.
        assert_eq!(first.get_pixel(3, 2)[1], 77);
        assert!(paths[1].ends_with("img_008.png"));

        let heights = Array4::from_shape_fn((1, 1, 6, 6), |(_, _, y, x)| (x as f32 - y as f32) / 6.0);
        let paths = save_samples(heights.view().into_dyn(), (-1.0, 1.0), dir.path(), "h_", 0).unwrap();
        let gray = image::open(&paths[1]).unwrap().to_luma16();
        // Value 5/6 maps to (5/6 + 1) / 2 · 65535.
        assert_eq!(gray.get_pixel(5, 0)[0], ((5.0f32 / 6.0 + 1.0) / 2.0 * 65535.0).round() as u16);
    }

    #[test]
    fn other_channel_counts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let two = Array4::<f32>::zeros((1, 2, 3, 3));
        assert!(save_samples(two.view().into_dyn(), (-1.0, 1.0), dir.path(), "x", 0).is_err());
    }
}
