"""Generates every prompt of a file through a client library's own pipeline, loading a diffusers
ONNX folder as it is, and writes the images as `bitsearch align --images` reads them: float32
[prompts × seeds, 3, H, W] in [-1, 1], prompt-major.

    python scripts/client-generate.py {diffusers,optimum} FOLDER --prompts FILE --out IMAGES.npy

`diffusers` is diffusers' OnnxStableDiffusionPipeline, `optimum` optimum's
ORTStableDiffusionPipeline, both on ONNX Runtime's CPU provider. Each draws its own initial noise
(numpy's RandomState, torch's generator), so the images are not bitsearch's: accuracies compare,
pixels do not. Prints one JSON line: the versions, the image count and the seconds per image.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# Nothing may come from a hub: the folder is local and complete.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def load(client: str, folder: Path):
    if client == "diffusers":
        from diffusers import OnnxStableDiffusionPipeline

        # The class takes a VAE encoder (for image-to-image); a text-to-image folder has none.
        return OnnxStableDiffusionPipeline.from_pretrained(folder, vae_encoder=None)  # CPU provider by default
    from optimum.onnxruntime import ORTStableDiffusionPipeline

    return ORTStableDiffusionPipeline.from_pretrained(folder, provider="CPUExecutionProvider")


def generate(client: str, pipe, folder: Path, prompts: list[str], seed: int, args) -> np.ndarray:
    """Images [len(prompts) · seeds, H, W, 3] in [0, 1]; the pipelines repeat each prompt's
    embedding `seeds` times in a row, so the batch comes out prompt-major."""
    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, num_images_per_prompt=args.seeds,
                  output_type="np")
    if client == "diffusers":
        # This pipeline sizes latents as height // 8 whatever the VAE's factor: ask for 8 pixels
        # per latent pixel to get the UNet's sample size.
        side = json.loads((folder / "unet/config.json").read_text())["sample_size"] * 8
        return pipe(prompts, height=side, width=side, generator=np.random.RandomState(seed), **common).images
    import torch

    return pipe(prompts, generator=torch.Generator().manual_seed(seed), **common).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("client", choices=["diffusers", "optimum"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--prompts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=4, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the client's generator")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=16, help="prompts per pipeline call")
    args = parser.parse_args()

    lines = [line.strip() for line in args.prompts.read_text().splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    pipe = load(args.client, args.folder)
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    parts = [
        generate(args.client, pipe, args.folder, prompts[i : i + args.batch], args.seed + i, args)
        for i in range(0, len(prompts), args.batch)
    ]
    seconds = time.perf_counter() - start
    images = np.concatenate(parts).transpose(0, 3, 1, 2).astype(np.float32) * 2.0 - 1.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    with open(partial, "wb") as f:
        np.save(f, images)
    partial.replace(args.out)

    from importlib.metadata import version

    import diffusers
    import onnxruntime

    print(json.dumps({
        "client": args.client, "images": len(images), "seconds_per_image": seconds / len(images),
        "diffusers": diffusers.__version__, "optimum-onnx": version("optimum-onnx"),
        "onnxruntime": onnxruntime.__version__, "torch": version("torch"),
    }))


if __name__ == "__main__":
    main()
