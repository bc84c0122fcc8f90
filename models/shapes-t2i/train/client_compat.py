"""Makes an exported shapes-t2i folder load unchanged in diffusers' OnnxStableDiffusionPipeline
and optimum's ORTStableDiffusionPipeline, without changing what the networks compute:

- text encoder: `input_ids` taken as int32, which both clients feed, and cast to int64 inside;
- VAE decoder: the latent scale folded into its first convolution, so that the config's factor
  is Stable Diffusion's 0.18215, the one diffusers' ONNX pipeline hard-codes;
- the `config.json` fields optimum reads beside each model, and the scheduler's `steps_offset`
  at 1, which both clients would otherwise rewrite with a warning (trailing timesteps ignore it).

Every change is skipped where it is already made; `export.py` applies them after exporting.

    python client_compat.py models/shapes-t2i
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# What diffusers' OnnxStableDiffusionPipeline divides latents by, whatever the config says.
SD_SCALING_FACTOR = 0.18215
# The text encoder's shape (nets.TextEncoder), for the config optimum reads.
TEXT_LAYERS = 3
TEXT_HEADS = 4


def _rewire(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]


def _input(graph: onnx.GraphProto, name: str) -> onnx.ValueInfoProto:
    found = [i for i in graph.input if i.name == name]
    if not found:
        raise SystemExit(f"{graph.name}: no input '{name}'")
    return found[0]


def text_encoder_int32(model: onnx.ModelProto) -> bool:
    """int32 `input_ids`, cast to int64 in front of everything that read them."""
    ids = _input(model.graph, "input_ids")
    if ids.type.tensor_type.elem_type == TensorProto.INT32:
        return False
    _rewire(model.graph, "input_ids", "input_ids_int64")
    cast = helper.make_node("Cast", ["input_ids"], ["input_ids_int64"], name="/input_ids/Cast", to=TensorProto.INT64)
    model.graph.node.insert(0, cast)
    ids.type.tensor_type.elem_type = TensorProto.INT32
    return True


def vae_fold_scale(model: onnx.ModelProto, ratio: float) -> None:
    """Multiplies the weight of the convolution that reads `latent_sample` by `ratio`:
    conv(ratio·z) = conv'(z) with W' = ratio·W, the bias unchanged."""
    readers = [n for n in model.graph.node if "latent_sample" in n.input]
    if len(readers) != 1 or readers[0].op_type != "Conv" or readers[0].input[0] != "latent_sample":
        raise SystemExit("vae_decoder: expected latent_sample to be read by one Conv only")
    weight_name = readers[0].input[1]
    weight = next(i for i in model.graph.initializer if i.name == weight_name)
    scaled = (numpy_helper.to_array(weight).astype(np.float64) * ratio).astype(np.float32)
    weight.CopyFrom(numpy_helper.from_array(scaled, weight_name))


def _update_json(path: Path, fields: dict) -> None:
    value = json.loads(path.read_text()) if path.exists() else {}
    if any(value.get(k, object()) != v for k, v in fields.items()):
        value.update(fields)
        path.write_text(json.dumps(value, indent=2) + "\n")
        print(f"{path}: {', '.join(fields)}")


def _save(model: onnx.ModelProto, path: Path, change: str) -> None:
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"{path}: {change}")


def apply(folder: Path) -> None:
    text_path = folder / "text_encoder/model.onnx"
    text = onnx.load(text_path)
    if text_encoder_int32(text):
        _save(text, text_path, "input_ids int32")
    vocab = next(i for i in text.graph.initializer if i.name == "token.weight").dims
    _update_json(folder / "text_encoder/config.json", {
        "architectures": ["ShapesTextEncoder"], "model_type": "shapes-t2i-text", "vocab_size": vocab[0],
        "hidden_size": vocab[1], "num_hidden_layers": TEXT_LAYERS, "num_attention_heads": TEXT_HEADS,
        "max_position_embeddings": json.loads((folder / "tokenizer/tokenizer_config.json").read_text())[
            "model_max_length"],
    })

    # Not an LCM UNet: no guidance embedding input. `timestep` stays [batch]: optimum feeds a
    # scalar to UNets declared so and warns that it unsqueezes it for this one, but diffusers
    # feeds [1], which a scalar input would refuse (and ONNX requires inputs to have a rank).
    _update_json(folder / "unet/config.json", {"time_cond_proj_dim": None})

    _update_json(folder / "scheduler/scheduler_config.json", {"steps_offset": 1})

    vae_config = folder / "vae_decoder/config.json"
    factor = json.loads(vae_config.read_text())["scaling_factor"]
    if factor != SD_SCALING_FACTOR:
        # The pipelines feed z / 0.18215 where the network was trained on z / factor.
        vae_path = folder / "vae_decoder/model.onnx"
        vae = onnx.load(vae_path)
        vae_fold_scale(vae, SD_SCALING_FACTOR / factor)
        _save(vae, vae_path, f"latent scale {factor} folded into the first convolution")
        _update_json(vae_config, {"scaling_factor": SD_SCALING_FACTOR})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    apply(parser.parse_args().folder)


if __name__ == "__main__":
    main()
