"""Writes the trained shapes-t2i networks as a diffusers/optimum ONNX folder, checks every ONNX
file against PyTorch under ONNX Runtime, makes the folder loadable by diffusers' and optimum's
pipelines (client_compat.py), stores reference generations for bitsearch's test, and prints the
held-out alignment accuracy of a Python sampler.

    python export.py --work WORK_DIR --out models/shapes-t2i
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

import client_compat
import nets
import shapes
from train import BETA_END, BETA_START, TRAIN_TIMESTEPS, alphas_cumprod

OPSET = 17
TEXT_WIDTH = 64
# The generations bitsearch's test must reproduce: (prompt, seed, steps, guidance).
REFERENCE_CASES = [
    ("a large red circle on the left and a small blue triangle at the top", 0, 20, 4.0),
    ("a small yellow square at the bottom", 1, 4, 4.0),
    ("a large green triangle on the right", 2, 20, 1.0),
]


def export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict):
    """Exports with readable initializer names: the exporter's transposed Linear weights
    (`onnx::MatMul_N`) are renamed after the parameter they came from."""
    buffer = io.BytesIO()
    torch.onnx.export(module, args, buffer, dynamo=False, input_names=inputs, output_names=outputs,
                      dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    params = {name: p.detach().numpy() for name, p in module.named_parameters()}
    renames = {}
    for init in model.graph.initializer:
        if not init.name.startswith("onnx::"):
            continue
        value = onnx.numpy_helper.to_array(init)
        matches = [n for n, p in params.items() if p.ndim == 2 and p.T.shape == value.shape and np.array_equal(p.T, value)]
        if len(matches) == 1:
            renames[init.name] = matches[0] + "_t"
    for init in model.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def check(path: Path, module: torch.nn.Module, feeds: dict[str, np.ndarray], tolerance: float = 1e-4) -> float:
    """ONNX Runtime against PyTorch on `feeds`; returns the largest difference relative to the output's scale."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    with torch.no_grad():
        want = module(*[torch.from_numpy(v) for v in feeds.values()])
    want = want if isinstance(want, tuple) else (want,)
    worst = max(float(np.abs(g - w.numpy()).max() / (np.abs(w.numpy()).max() + 1e-12)) for g, w in zip(got, want))
    assert worst < tolerance, f"{path}: ONNX Runtime differs from PyTorch by {worst:.2e} (relative)"
    print(f"{path}: ONNX Runtime = PyTorch within {worst:.1e} (relative to the output's largest value)")
    return worst


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def tokenizer_json() -> dict:
    """A Hugging Face fast-tokenizer file: lowercase, split on whitespace, word-level vocabulary,
    BOS and EOS around every prompt."""
    special = [shapes.PAD, shapes.BOS, shapes.EOS, shapes.UNK]
    token = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}  # noqa: E731
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": shapes.VOCAB.index(t), "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t in special
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [token(shapes.BOS), {"Sequence": {"id": "A", "type_id": 0}}, token(shapes.EOS)],
            "pair": [token(shapes.BOS), {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}},
                     token(shapes.EOS)],
            "special_tokens": {t: {"id": t, "ids": [shapes.VOCAB.index(t)], "tokens": [t]} for t in (shapes.BOS, shapes.EOS)},
        },
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(shapes.VOCAB)}, "unk_token": shapes.UNK},
    }


class Pipeline:
    """The sampler bitsearch implements, written again over the exported ONNX files: DDIM with
    trailing timesteps, classifier-free guidance with the empty prompt, VAE decode."""

    def __init__(self, folder: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        load = lambda name: ort.InferenceSession(str(folder / name / "model.onnx"), opts)  # noqa: E731
        self.text, self.unet, self.vae = load("text_encoder"), load("unet"), load("vae_decoder")
        self.abar = alphas_cumprod().double().numpy()
        self.scaling = json.loads((folder / "vae_decoder/config.json").read_text())["scaling_factor"]

    def encode(self, prompts: list[str]) -> np.ndarray:
        ids = np.array([shapes.tokenize(p) for p in prompts], np.int32)
        return self.text.run(None, {"input_ids": ids})[0]

    def generate(self, prompts: list[str], noise: np.ndarray, steps: int, guidance: float) -> np.ndarray:
        cond = self.encode(prompts)
        context = np.concatenate([self.encode([""] * len(prompts)), cond]) if guidance > 1 else cond
        ratio = TRAIN_TIMESTEPS / steps
        ts = [float(np.round(TRAIN_TIMESTEPS - i * ratio) - 1) for i in range(steps)]
        x = noise.astype(np.float32)
        for i, t in enumerate(ts):
            batch = np.concatenate([x, x]) if guidance > 1 else x
            out = self.unet.run(None, {"sample": batch, "timestep": np.full(len(batch), t, np.float32),
                                       "encoder_hidden_states": context})[0]
            if guidance > 1:
                u, c = np.split(out, 2)
                out = u + np.float32(guidance) * (c - u)
            a = self.abar[int(t)]
            a_prev = self.abar[int(ts[i + 1])] if i + 1 < steps else 1.0
            x0 = (x - np.float32(np.sqrt(1 - a)) * out) / np.float32(np.sqrt(a))
            x = np.float32(np.sqrt(a_prev)) * x0 + np.float32(np.sqrt(1 - a_prev)) * out
        return self.vae.run(None, {"latent_sample": x / np.float32(self.scaling)})[0]


def accuracy(classifier: ort.InferenceSession, images: np.ndarray, scenes: list[list[shapes.Obj]]) -> dict[str, float]:
    """Per-attribute accuracy over the prompts' objects and whole-caption accuracy over images,
    as bitsearch's `align` command computes them."""
    presence, shape, colour, size = classifier.run(None, {"image": np.clip(images, -1.0, 1.0)})
    hits = {"shape": [], "colour": [], "size": [], "position": [], "caption": []}
    for i, scene in enumerate(scenes):
        found = presence[i].argmax(-1) == 1
        wanted = np.zeros(len(shapes.POSITIONS), bool)
        whole = True
        for o in scene:
            p = shapes.POSITIONS.index(o.position)
            wanted[p] = True
            checks = {
                "position": bool(found[p]),
                "shape": bool(found[p]) and shapes.SHAPES[shape[i, p].argmax()] == o.shape,
                "colour": bool(found[p]) and shapes.COLOURS[colour[i, p].argmax()] == o.colour,
                "size": bool(found[p]) and shapes.SIZES[size[i, p].argmax()] == o.size,
            }
            for k, v in checks.items():
                hits[k].append(v)
            whole &= all(checks.values())
        hits["caption"].append(whole and not (found & ~wanted).any())
    return {k: float(np.mean(v)) for k, v in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=4, help="images per held-out prompt in the accuracy check")
    args = parser.parse_args()
    summary = json.loads((args.work / "summary.json").read_text())
    scaling = summary["scaling_factor"]

    ae, classifier, unet, text = nets.Autoencoder(), nets.Classifier(), nets.UNet(), nets.TextEncoder()
    ae.load_state_dict(torch.load(args.work / "autoencoder.pt"))
    classifier.load_state_dict(torch.load(args.work / "classifier.pt"))
    unet.load_state_dict(torch.load(args.work / "diffusion.pt"))
    text.load_state_dict(torch.load(args.work / "text_encoder.pt"))
    for m in (ae, classifier, unet, text):
        m.eval()

    out = args.out
    for sub in ("scheduler", "tokenizer", "text_encoder", "unet", "vae_decoder", "classifier", "reference"):
        shutil.rmtree(out / sub, ignore_errors=True)
    batch = {0: "batch"}
    rng = np.random.default_rng(0)
    ids = np.array([shapes.tokenize(shapes.caption(p)) for p in shapes.held_out().prompts[:3]], np.int64)
    export(text, (torch.from_numpy(ids),), out / "text_encoder/model.onnx", ["input_ids"], ["last_hidden_state"],
           {"input_ids": batch, "last_hidden_state": batch})
    check(out / "text_encoder/model.onnx", text, {"input_ids": ids})
    sample = rng.standard_normal((3, 4, 8, 8), dtype=np.float32)
    timestep = np.array([999.0, 500.0, 3.0], np.float32)
    with torch.no_grad():
        context = text(torch.from_numpy(ids)).numpy()
    unet_feeds = {"sample": sample, "timestep": timestep, "encoder_hidden_states": context}
    export(unet, tuple(torch.from_numpy(v) for v in unet_feeds.values()), out / "unet/model.onnx", list(unet_feeds),
           ["out_sample"], {**{k: batch for k in unet_feeds}, "out_sample": batch})
    check(out / "unet/model.onnx", unet, unet_feeds)
    latent = rng.standard_normal((3, 4, 8, 8), dtype=np.float32)
    export(ae.decoder, (torch.from_numpy(latent),), out / "vae_decoder/model.onnx", ["latent_sample"], ["sample"],
           {"latent_sample": batch, "sample": batch})
    check(out / "vae_decoder/model.onnx", ae.decoder, {"latent_sample": latent})
    image = rng.uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    export(classifier, (torch.from_numpy(image),), out / "classifier/model.onnx", ["image"], list(nets.HEADS),
           {"image": batch, **{h: batch for h in nets.HEADS}})
    check(out / "classifier/model.onnx", classifier, {"image": image})

    write_json(out / "model_index.json", {
        "_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False,
    })
    write_json(out / "scheduler/scheduler_config.json", {
        "_class_name": "DDIMScheduler", "num_train_timesteps": TRAIN_TIMESTEPS, "beta_start": BETA_START,
        "beta_end": BETA_END, "beta_schedule": "linear", "prediction_type": "epsilon",
        "timestep_spacing": "trailing", "set_alpha_to_one": True, "clip_sample": False,
    })
    write_json(out / "tokenizer/tokenizer.json", tokenizer_json())
    write_json(out / "tokenizer/tokenizer_config.json", {
        "model_max_length": shapes.MAX_LENGTH, "pad_token": shapes.PAD, "bos_token": shapes.BOS,
        "eos_token": shapes.EOS, "unk_token": shapes.UNK, "tokenizer_class": "PreTrainedTokenizerFast",
    })
    write_json(out / "unet/config.json", {"sample_size": 8, "in_channels": 4, "out_channels": 4,
                                          "cross_attention_dim": TEXT_WIDTH})
    write_json(out / "vae_decoder/config.json", {"scaling_factor": scaling, "latent_channels": 4,
                                                 "block_out_channels": [16, 32, 64]})
    write_json(out / "classifier/config.json", {
        "image_range": [-1.0, 1.0],
        "slots": list(shapes.POSITIONS),
        "presence": "presence",
        "attributes": {"shape": list(shapes.SHAPES), "colour": list(shapes.COLOURS), "size": list(shapes.SIZES)},
    })
    split = shapes.held_out()
    (out / "heldout_prompts.txt").write_text("".join(shapes.caption(p) + "\n" for p in split.prompts))

    client_compat.apply(out)

    pipeline = Pipeline(out)
    cases = []
    for k, (prompt, seed, steps, guidance) in enumerate(REFERENCE_CASES):
        noise = np.random.default_rng(seed).standard_normal((1, 4, 8, 8), dtype=np.float32)
        images = pipeline.generate([prompt], noise, steps, guidance)
        (out / "reference").mkdir(exist_ok=True)
        np.save(out / f"reference/noise_{k}.npy", noise)
        np.save(out / f"reference/image_{k}.npy", images)
        cases.append({"prompt": prompt, "seed": seed, "steps": steps, "guidance": guidance,
                      "noise": f"noise_{k}.npy", "image": f"image_{k}.npy"})
    write_json(out / "reference/cases.json", {"sampler": "ddim", "cases": cases})

    scenes = [p for p in split.prompts for _ in range(args.seeds)]
    prompts = [shapes.caption(s) for s in scenes]
    cls = ort.InferenceSession(str(out / "classifier/model.onnx"))
    for steps in (20, 4):
        noise = np.random.default_rng(100).standard_normal((len(prompts), 4, 8, 8), dtype=np.float32)
        images = np.concatenate([pipeline.generate(prompts[i:i + 64], noise[i:i + 64], steps, 4.0)
                                 for i in range(0, len(prompts), 64)])
        print(f"python DDIM {steps} steps, guidance 4:", json.dumps(accuracy(cls, images, scenes)))
    data = shapes.dataset(512, split, seed=999)
    print("classifier on real images:", json.dumps(accuracy(cls, data[0], _scenes_of(data[2]))))


def _scenes_of(captions: list[str]) -> list[list[shapes.Obj]]:
    """Objects back from captions (the inverse of shapes.caption)."""
    scenes = []
    for c in captions:
        objs = []
        for clause in c.split(" and "):
            w = clause.split()
            objs.append(shapes.Obj(w[1], w[2], w[3], w[-1]))
        scenes.append(objs)
    return scenes


if __name__ == "__main__":
    main()
