#!/usr/bin/env python3
"""The models users make instead of bitsearch's: ONNX Runtime's own quantizers on one denoiser.

    peers.py MODEL OUT_DIR

MODEL is a denoiser file (the terrain UNet) or a diffusers folder (shapes-t2i: its UNet is
quantized and the folder copied with the UNet replaced). Every peer keeps the float model's
interface, so `bitsearch eval` measures it like any other candidate. Writes under OUT_DIR:

- one `.onnx` file per peer (a denoiser) or one folder per peer (a pipeline);
- `peers.tsv`: per peer its path (empty when it could not be made), the share of the layer
  weight bytes it quantizes, its layer bytes (what `solve --budget memory=` counts), the
  seconds it took and a note (why it was not made, if not).

Peers: MatMulNBits at 4 bits with round-to-nearest, HQQ and GPTQ weights (block 32 and 128),
and quantize_static's QDQ models (per-channel int8 or int4 weights with uint8 or uint16
activations), calibrated with min-max ranges on calibration items: seeds 0-7 of the denoiser
(eval holds out 1000 and up), or the pipeline's calibration prompts with seed 0, every step of
the sampler recorded (eval holds out its held-out prompts and seeds 1000 and up).
"""

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization import matmul_nbits_quantizer as mnb

# The layers bitsearch quantizes: these ops with a constant weight.
LAYER_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# The denoiser items bitsearch's calibration and sensitivity runs draw from: small seeds.
CALIBRATION_SEEDS = range(8)
# The terrain UNet's sampler: one consistency step from sigma_max.
SIGMA_MAX = 80.0
BLOCKS = (32, 128)


class Items(CalibrationDataReader):
    """Feeds a list of input dicts once; `rewind` starts over for the next quantizer."""

    def __init__(self, feeds):
        self.feeds = feeds
        self.next = 0

    def get_next(self):
        if self.next == len(self.feeds):
            return None
        self.next += 1
        return self.feeds[self.next - 1]

    def rewind(self):
        self.next = 0

    def __len__(self):
        return len(self.feeds)


def noise(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def denoiser_items(model):
    """The terrain UNet's inputs on the calibration seeds: noise at sigma_max, difficulty 0.5."""
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    sample = [1] + inputs["noisy"][1:]
    one = np.ones(1, dtype=np.float32)
    return [
        {"noisy": noise(sample, seed) * SIGMA_MAX, "sigma": one * SIGMA_MAX, "difficulty": one * 0.5}
        for seed in CALIBRATION_SEEDS
    ]


def tokenize(folder, prompts):
    """Word-level ids as the folder's tokenizer.json makes them: BOS, words, EOS, padding."""
    spec = json.loads((folder / "tokenizer/tokenizer.json").read_text())
    config = json.loads((folder / "tokenizer/tokenizer_config.json").read_text())
    vocab, length = spec["model"]["vocab"], config["model_max_length"]
    ids = np.full((len(prompts), length), vocab[config["pad_token"]], dtype=np.int32)
    for row, prompt in enumerate(prompts):
        words = [vocab.get(w, vocab[config["unk_token"]]) for w in prompt.lower().split()]
        tokens = [vocab[config["bos_token"]], *words, vocab[config["eos_token"]]][:length]
        ids[row, : len(tokens)] = tokens
    return ids


def pipeline_items(folder, steps, guidance):
    """Every UNet call of a DDIM run with classifier-free guidance on each calibration prompt
    (seed 0, the empty prompt as the unconditional half), as diffusers' DDIMScheduler does it."""
    prompts = [p for p in (folder / "calibration_prompts.txt").read_text().splitlines() if p.strip()]
    text = ort.InferenceSession(str(folder / "text_encoder/model.onnx"), providers=["CPUExecutionProvider"])
    unet = ort.InferenceSession(str(folder / "unet/model.onnx"), providers=["CPUExecutionProvider"])
    ids = text.get_inputs()[0]
    if ids.type != "tensor(int32)":
        sys.exit(f"peers.py: the text encoder takes {ids.type} ids; calibration makes int32")

    def embed(texts):
        return text.run(None, {ids.name: tokenize(folder, texts)})[0]

    cond, uncond = embed(prompts), embed([""])
    sched = json.loads((folder / "scheduler/scheduler_config.json").read_text())
    if sched["beta_schedule"] != "linear" or sched["timestep_spacing"] != "trailing":
        sys.exit("peers.py: calibration knows the linear beta schedule with trailing spacing only")
    train = sched["num_train_timesteps"]
    betas = np.linspace(sched["beta_start"], sched["beta_end"], train, dtype=np.float64)
    alphas = np.cumprod(1.0 - betas)
    times = np.round(np.arange(train, 0, -train / steps)).astype(np.int64) - 1
    shape = [1] + [int(d) for d in unet.get_inputs()[0].shape[1:]]
    feeds = []
    for p in range(len(prompts)):
        latents = noise(shape, 0)
        hidden = np.concatenate([uncond, cond[p : p + 1]])
        for i, t in enumerate(times):
            feed = {
                "sample": np.concatenate([latents, latents]),
                "timestep": np.full(2, t, dtype=np.float32),
                "encoder_hidden_states": hidden,
            }
            feeds.append(feed)
            eps_u, eps_c = unet.run(None, feed)[0]
            eps = eps_u + guidance * (eps_c - eps_u)
            prev = alphas[times[i + 1]] if i + 1 < len(times) else (1.0 if sched["set_alpha_to_one"] else alphas[0])
            x0 = (latents - np.sqrt(1 - alphas[t]) * eps) / np.sqrt(alphas[t])
            latents = (np.sqrt(prev) * x0 + np.sqrt(1 - prev) * eps).astype(np.float32)
    return feeds


def tensor_bytes(tensor):
    """Bytes a stored tensor takes: its raw data, else its elements at their width (int4 packed)."""
    if tensor.raw_data:
        return len(tensor.raw_data)
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        bits = 4
    else:
        bits = 8 * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return (int(np.prod(tensor.dims)) * bits + 7) // 8


def stored_bytes(model):
    return sum(tensor_bytes(t) for t in model.graph.initializer)


def coverage(model):
    """Bytes of layer weights (constant inputs 1 of LAYER_OPS) in all, and those MatMulNBits can
    take: 2-D float MatMul weights (or N-D with unit leading axes)."""
    sizes = {t.name: (tensor_bytes(t), list(t.dims)) for t in model.graph.initializer}
    total = matmul = 0
    for node in model.graph.node:
        if node.op_type in LAYER_OPS and len(node.input) > 1 and node.input[1] in sizes:
            size, dims = sizes[node.input[1]]
            total += size
            if node.op_type == "MatMul" and len(dims) >= 2 and all(d == 1 for d in dims[:-2]):
                matmul += size
    return total, matmul


def matmul_nbits(model, config):
    quantizer = mnb.MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    return quantizer.model.model


def static(model_path, calibration, weights, activations):
    def make(out):
        calibration.rewind()
        quantize_static(
            str(model_path),
            str(out),
            calibration,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=sorted(LAYER_OPS),
            per_channel=True,
            activation_type=activations,
            weight_type=weights,
            calibrate_method=CalibrationMethod.MinMax,
        )

    return make


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=10, help="sampler steps of a pipeline's calibration run")
    parser.add_argument("--guidance", type=float, default=4.0)
    args = parser.parse_args()
    pipeline = args.model.is_dir()
    denoiser = args.model / "unet/model.onnx" if pipeline else args.model
    args.out.mkdir(parents=True, exist_ok=True)
    float_model = onnx.load(str(denoiser))
    total, matmul = coverage(float_model)
    started = time.time()
    items = pipeline_items(args.model, args.steps, args.guidance) if pipeline else denoiser_items(float_model)
    print(f"{len(items)} calibration calls in {time.time() - started:.1f} s", flush=True)
    calibration = Items(items)

    def weight_only(config):
        def make(out):
            onnx.save(matmul_nbits(onnx.load(str(denoiser)), config), str(out))

        return make

    def gptq(block):
        def make(out):
            calibration.rewind()
            # Given a path, ONNX Runtime's GPTQ reads a config.json beside the model with
            # transformers (a diffusers UNet has one); the loaded model skips that.
            quantizer = mnb.MatMulNBitsQuantizer(
                onnx.load(str(denoiser)),
                block_size=block,
                algo_config=mnb.GPTQWeightOnlyQuantConfig(calibration_data_reader=calibration),
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(out))

        return make

    # name, the share of layer bytes it quantizes, how to make it
    peers = []
    for block in BLOCKS:
        peers.append((f"ort-rtn-w4-b{block}", matmul, weight_only(mnb.DefaultWeightOnlyQuantConfig(block_size=block))))
        peers.append((f"ort-hqq-w4-b{block}", matmul, weight_only(mnb.HQQWeightOnlyQuantConfig(block_size=block))))
        peers.append((f"ort-gptq-w4-b{block}", matmul, gptq(block)))
    peers.append(("ort-qdq-w8a8", total, static(denoiser, calibration, QuantType.QInt8, QuantType.QUInt8)))
    peers.append(("ort-qdq-w4a8", total, static(denoiser, calibration, QuantType.QInt4, QuantType.QUInt8)))
    peers.append(("ort-qdq-w4a16", total, static(denoiser, calibration, QuantType.QInt4, QuantType.QUInt16)))

    # Tensors that are not layer weights (norms, biases, tables) stay as they are in every peer,
    # so a peer's layer bytes, what `solve --budget memory=` counts, are its tensors less these.
    others = stored_bytes(float_model) - total
    rows = ["name\tpath\tquantized_share\tlayer_bytes\tseconds\tnote"]
    for name, covered, make in peers:
        share = covered / total if total else 0.0
        path, note, layer_bytes = "", "", ""
        started = time.time()
        if covered == 0:
            note = "quantizes no layer of this model (no MatMul with a constant weight)"
        else:
            target = args.out / name
            file = target / "unet/model.onnx" if pipeline else target.with_suffix(".onnx")
            try:
                if pipeline:
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(args.model, target)
                make(file)
                path = str(target if pipeline else file)
                layer_bytes = stored_bytes(onnx.load(str(file))) - others
            except Exception as e:  # a peer that fails is recorded, the others still run
                traceback.print_exc()
                note = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if pipeline:
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    file.unlink(missing_ok=True)
        seconds = time.time() - started
        print(f"{name}: {path or note} ({seconds:.1f} s)", flush=True)
        rows.append(f"{name}\t{path}\t{share:.4f}\t{layer_bytes}\t{seconds:.1f}\t{note}")
    (args.out / "peers.tsv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
