"""Loads a diffusers/optimum ONNX pipeline folder with optimum's own pipeline class on ONNX
Runtime's CPU provider and generates one image, one step, at the smallest size the folder allows.

    python scripts/optimum-load.py FOLDER [--prompt TEXT] [--guidance G]

The class follows model_index.json: ORTStableDiffusionXLPipeline for StableDiffusionXLPipeline,
ORTStableDiffusionPipeline otherwise. The size is the UNet's sample_size capped at 32 latent
pixels (256×256 for SD 1.5 and SDXL), a multiple of what the UNet's downsamplers need. Prints
the load time, the generate time, the peak resident memory and the image's shape; exits 1 on any
failure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

# Nothing may come from a hub: the folder is local and complete.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Latent pixels along a side at most: small enough for a CPU, large enough for every preset.
MAX_LATENT = 32


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def smallest_side(folder: Path) -> int:
    """Image pixels along a side: latent pixels that every UNet downsampler halves evenly,
    times the VAE's scale factor."""
    unet = json.loads((folder / "unet/config.json").read_text())
    vae = json.loads((folder / "vae_decoder/config.json").read_text())
    multiple = 2 ** (len(unet["block_out_channels"]) - 1)
    latent = max(multiple, min(unet["sample_size"], MAX_LATENT) // multiple * multiple)
    return latent * 2 ** (len(vae["block_out_channels"]) - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--prompt", default="a red cat in the snow")
    parser.add_argument("--guidance", type=float, default=5.0)
    args = parser.parse_args()

    try:
        import torch
        from optimum.onnxruntime import ORTStableDiffusionPipeline, ORTStableDiffusionXLPipeline

        class_name = json.loads((args.folder / "model_index.json").read_text())["_class_name"]
        xl = class_name == "StableDiffusionXLPipeline"
        pipeline_class = ORTStableDiffusionXLPipeline if xl else ORTStableDiffusionPipeline
        side = smallest_side(args.folder)
        print(f"{args.folder}: {class_name} → {pipeline_class.__name__}, {side}×{side}, 1 step", flush=True)

        start = time.perf_counter()
        pipe = pipeline_class.from_pretrained(args.folder, provider="CPUExecutionProvider")
        pipe.set_progress_bar_config(disable=True)
        load_s = time.perf_counter() - start
        print(f"load: {load_s:.1f} s (peak RSS so far {peak_rss_gib():.2f} GiB)", flush=True)

        start = time.perf_counter()
        images = pipe(
            args.prompt,
            height=side,
            width=side,
            num_inference_steps=1,
            guidance_scale=args.guidance,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images
        generate_s = time.perf_counter() - start
    except Exception:  # noqa: BLE001 - any failure is the answer: report it and exit 1
        traceback.print_exc()
        print(f"FAILED (peak RSS {peak_rss_gib():.2f} GiB)")
        return 1

    finite = bool(abs(images).max() < float("inf")) and not (images != images).any()
    print(f"generate: {generate_s:.1f} s")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")
    print(f"image: shape {tuple(images.shape)}, dtype {images.dtype}, finite {finite}")
    return 0 if finite and images.shape[1:3] == (side, side) else 1


if __name__ == "__main__":
    sys.exit(main())
