"""Trains the shapes-t2i pipeline from nothing: data, autoencoder, attribute classifier, then the
text encoder and latent UNet together. Each stage saves its weights in the work folder and is
skipped when they are already there, so an interrupted run goes on where it stopped.

    python train.py --work WORK_DIR [--quick]

`export.py` then writes the diffusers/optimum ONNX folder from WORK_DIR.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import nets
import shapes

SEED = 0
TRAIN_IMAGES = 100_000
# Linear betas of DDPM; scheduler_config.json says the same.
BETA_START, BETA_END, TRAIN_TIMESTEPS = 1e-4, 0.02, 1000
CAPTION_DROPOUT = 0.1
MIN_SNR_GAMMA = 5.0


def alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(BETA_START, BETA_END, TRAIN_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).float()


def log(stage: str, message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {stage}: {message}", flush=True)


def batches(n: int, size: int, steps: int, generator: torch.Generator):
    """`steps` random minibatches of indices, epoch by epoch."""
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            if done == steps:
                return
            yield order[start : start + size]
            done += 1


def cosine_lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def optimise(stage: str, opt: torch.optim.Optimizer, losses, steps: int, peak: float, warmup: int) -> None:
    """One optimiser step per loss that `losses` yields, on the cosine schedule, logged every 500."""
    t = time.time()
    for step, loss in enumerate(losses):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, peak, warmup)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == steps - 1:
            log(stage, f"step {step}/{steps} loss {loss.item():.5f} ({time.time() - t:.0f} s)")


def restore(module: torch.nn.Module, path: Path) -> bool:
    """Loads a finished stage's weights into `module`; False when the stage has not run yet."""
    if not path.exists():
        return False
    module.load_state_dict(torch.load(path))
    return True


def data(work: Path, n: int) -> dict[str, np.ndarray]:
    path = work / "data.npz"
    if not path.exists():
        t = time.time()
        images, ids, captions, labels = shapes.dataset(n, shapes.held_out(), SEED)
        np.savez(path, images=images, ids=ids, labels=labels, captions=np.array(captions))
        log("data", f"{n} images in {time.time() - t:.0f} s")
    loaded = np.load(path)
    return {k: loaded[k] for k in loaded.files}


def train_autoencoder(work: Path, images: torch.Tensor, steps: int) -> nets.Autoencoder:
    path = work / "autoencoder.pt"
    ae = nets.Autoencoder().to(memory_format=torch.channels_last)
    if restore(ae, path):
        return ae
    g = torch.Generator().manual_seed(SEED + 1)
    opt = torch.optim.AdamW(ae.parameters(), lr=2e-3, weight_decay=0.0)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        x = images[idx]
        z = ae.encode(x)
        # Noise on the latent teaches the decoder to draw clean shapes from slightly-off latents,
        # which is what a denoiser hands it.
        noisy = z + 0.1 * z.detach().std() * torch.randn(z.shape, generator=g)
        out = ae.decoder(noisy)
        return F.mse_loss(out, x) + 0.5 * F.l1_loss(out, x) + 1e-4 * z.pow(2).mean()

    optimise("autoencoder", opt, map(loss, batches(len(images), 64, steps, g)), steps, 2e-3, 200)
    torch.save(ae.state_dict(), path)
    return ae


@torch.no_grad()
def encode_all(ae: nets.Autoencoder, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([ae.encode(images[i : i + 1000]) for i in range(0, len(images), 1000)])


def train_classifier(work: Path, images: torch.Tensor, labels: torch.Tensor, ae: nets.Autoencoder, steps: int):
    path = work / "classifier.pt"
    model = nets.Classifier().to(memory_format=torch.channels_last)
    if restore(model, path):
        return model
    g = torch.Generator().manual_seed(SEED + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        x = images[idx]
        # Half the batch through the autoencoder, so decoded images are in-domain; noise on all.
        with torch.no_grad():
            half = len(x) // 2
            x = torch.cat([ae.decoder(ae.encode(x[:half])), x[half:]])
            x = x + torch.rand(len(x), 1, 1, 1, generator=g) * 0.1 * torch.randn(x.shape, generator=g)
        return classifier_loss(model(x), labels[idx])

    optimise("classifier", opt, map(loss, batches(len(images), 64, steps, g)), steps, 1e-3, 100)
    torch.save(model.state_dict(), path)
    return model


def classifier_loss(outputs: tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per head; attribute heads only where an object is present."""
    total = torch.zeros(())
    for k, logits in enumerate(outputs):
        target = labels[:, :, k]
        keep = target >= 0
        total = total + F.cross_entropy(logits[keep], target[keep])
    return total


def train_text_encoder(work: Path, steps: int) -> nets.TextEncoder:
    """Teaches the encoder to describe, on every token of a clause, the object that clause names
    (shapes.token_targets), on training captions only. Trained end to end by the diffusion loss
    alone, a first version learned to draw single objects but bound two objects' attributes
    almost at random (whole-caption accuracy 0.44 after 4000 steps)."""
    path = work / "text_encoder.pt"
    text = nets.TextEncoder()
    if restore(text, path):
        return text
    torch.manual_seed(SEED + 4)
    rng = np.random.default_rng(SEED + 4)
    head = torch.nn.Linear(text.final_norm.normalized_shape[0], sum(shapes.TARGET_CLASSES))
    opt = torch.optim.AdamW(list(text.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=0.01)
    split = shapes.held_out()

    def loss(_: int) -> torch.Tensor:
        scenes = shapes.sample_scenes(256, split, rng)
        # Some empty captions, as caption dropout feeds them: every token must say "none".
        scenes = [[] if rng.random() < CAPTION_DROPOUT else s for s in scenes]
        ids = torch.tensor([shapes.tokenize(shapes.caption(s)) for s in scenes])
        targets = torch.from_numpy(np.stack([shapes.token_targets(s) for s in scenes]))
        logits = torch.split(head(text(ids)), shapes.TARGET_CLASSES, dim=-1)
        return sum(F.cross_entropy(l.reshape(-1, l.shape[-1]), targets[..., k].reshape(-1)) for k, l in enumerate(logits))

    optimise("text encoder", opt, map(loss, range(steps)), steps, 1e-3, 100)
    torch.save(text.state_dict(), path)
    return text


def train_diffusion(work: Path, latents: torch.Tensor, ids: torch.Tensor, text: nets.TextEncoder, steps: int,
                    batch: int):
    """The UNet on the frozen text encoder, epsilon prediction, min-SNR weighting, EMA weights kept."""
    path = work / "diffusion.pt"
    unet = nets.UNet()
    if restore(unet, path):
        return unet
    torch.manual_seed(SEED + 3)
    g = torch.Generator().manual_seed(SEED + 3)
    text.requires_grad_(False)
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    ema_unet = copy.deepcopy(unet)
    ema_params = list(ema_unet.parameters())
    abar = alphas_cumprod()
    empty = torch.tensor(shapes.tokenize(""), dtype=torch.long)
    checkpoint = work / "diffusion-partial.pt"
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint)
        for module, key in ((unet, "unet"), (ema_unet, "ema_unet")):
            module.load_state_dict(state[key])
        opt.load_state_dict(state["opt"])
        g.set_state(state["generator"])
        start = state["step"]
        log("diffusion", f"resuming at step {start}")
    t = time.time()
    running = 0.0
    for step, idx in enumerate(batches(len(latents), batch, steps - start, g), start=start):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, 1e-3, 500)
        x0 = latents[idx]
        tokens = ids[idx].clone()
        tokens[torch.rand(len(idx), generator=g) < CAPTION_DROPOUT] = empty
        ts = torch.randint(0, TRAIN_TIMESTEPS, (len(idx),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = abar[ts][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            context = text(tokens)
        pred = unet(xt, ts.float(), context)
        snr = abar[ts] / (1 - abar[ts])
        weight = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                e.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step > start else loss.item()
        if step % 200 == 0 or step == steps - 1:
            rate = (step + 1 - start) * batch / (time.time() - t)
            log("diffusion", f"step {step}/{steps} loss {running:.4f} ({time.time() - t:.0f} s, {rate:.0f} img/s)")
        if step % 1000 == 999:
            state = {"unet": unet.state_dict(), "ema_unet": ema_unet.state_dict(), "opt": opt.state_dict(),
                     "generator": g.get_state(), "step": step + 1}
            torch.save(state, checkpoint)
    torch.save(ema_unet.state_dict(), path)
    return ema_unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for data and checkpoints")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything, to check the script")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    scale = 0.01 if args.quick else 1.0
    steps = {k: max(20, int(v * scale)) for k, v in {"ae": 2500, "classifier": 1500, "text": 2000, "diffusion": 4000}.items()}
    started = time.time()
    d = data(args.work, 4000 if args.quick else TRAIN_IMAGES)
    # Channels-last runs the small convolutions about twice as fast on CPU.
    images = torch.from_numpy(d["images"]).contiguous(memory_format=torch.channels_last)
    ae = train_autoencoder(args.work, images, steps["ae"]).eval()
    latents = encode_all(ae, images)
    scaling = float(1.0 / latents.std())
    classifier = train_classifier(args.work, images, torch.from_numpy(d["labels"]), ae, steps["classifier"])
    text = train_text_encoder(args.work, steps["text"]).eval()
    unet = train_diffusion(args.work, latents * scaling, torch.from_numpy(d["ids"]), text, steps["diffusion"], 128)
    summary = {
        "scaling_factor": scaling,
        "train_images": len(images),
        "steps": steps,
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in
                       {"unet": unet, "text_encoder": text, "vae_decoder": ae.decoder, "classifier": classifier}.items()},
        "seconds": round(time.time() - started),
    }
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    log("done", json.dumps(summary))


if __name__ == "__main__":
    main()
