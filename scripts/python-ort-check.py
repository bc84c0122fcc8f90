"""Loads every model of a `bitsearch quantize` folder with ONNX Runtime's Python API (the way
other clients run it), feeds it the same random inputs as the float model, and prints the
output SQNR against the float model.

Usage: python3 python-ort-check.py FLOAT.onnx QUANTIZED_DIR
"""

import pathlib
import sys

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}


def inputs(session: ort.InferenceSession, rng: np.random.Generator) -> dict:
    feeds = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        values = np.abs(rng.standard_normal(shape)) + 0.1 if len(shape) <= 1 else rng.standard_normal(shape)
        feeds[i.name] = values.astype(TYPES[i.type])
    return feeds


def main(float_model: str, folder: str) -> None:
    manifest = pathlib.Path(folder) / "bitsearch-quantized.yaml"
    files = [line.split("file:")[1].strip() for line in manifest.read_text().splitlines() if "file:" in line]
    reference = ort.InferenceSession(float_model, providers=["CPUExecutionProvider"])
    feeds = inputs(reference, np.random.default_rng(0))
    y = reference.run(None, feeds)[0]
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    for name in files:
        session = ort.InferenceSession(str(pathlib.Path(folder) / name), providers=["CPUExecutionProvider"])
        q = session.run(None, feeds)[0]
        sqnr = 10 * np.log10(np.sum(y.astype(np.float64) ** 2) / np.sum((q.astype(np.float64) - y) ** 2))
        print(f"{name}: output {q.shape}, finite {bool(np.isfinite(q).all())}, SQNR vs float {sqnr:.2f} dB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
