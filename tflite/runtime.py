"""LiteRT interpreter helpers: load a .tflite with clear errors, run it on float pixel images.

Exported models take pixels in [0, 255] (the exporter folds normalisation into the graph), so
callers always pass float pixels; quantized inputs/outputs are (de)quantized here (an integer input
with scale 1 takes the pixel bytes: `quantize_pixels`).
"""

import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tflite import ToolError

FLATBUFFER_ID = b"TFL3"  # file identifier at bytes 4..8 of every TFLite flatbuffer


def read_model(path: str) -> bytes:
    """Bytes of a .tflite file, or a ToolError saying what is wrong with it."""
    if not os.path.exists(path):
        raise ToolError(f"no such model file: {path}")
    if os.path.isdir(path):
        raise ToolError(f"{path} is a directory; pass the .tflite file itself")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != FLATBUFFER_ID:
        raise ToolError(
            f"{path} is not a TFLite flatbuffer (missing the 'TFL3' identifier); "
            "it may be truncated or another format. Re-export it with python -m tflite.export"
        )
    return data


def load_interpreter(
    model: str | bytes, *, num_threads: int = 1, xnnpack: bool = True, name: str | None = None
) -> Interpreter:
    """An allocated interpreter. xnnpack=True applies the default XNNPACK delegate (as
    benchmark_model --use_xnnpack=true does); False runs the builtin kernels only."""
    data = read_model(model) if isinstance(model, str) else model
    label = name or (model if isinstance(model, str) else "model")
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(
            model_content=data, num_threads=num_threads, experimental_op_resolver_type=resolver
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ToolError(
            f"LiteRT cannot load {label}: {first}. The file is corrupt or uses ops this "
            "runtime lacks; re-export it with python -m tflite.export"
        ) from None
    return interp


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float -> the tensor's dtype using its (scale, zero point); float tensors pass through."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def quantize_pixels(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float pixels in [0, 255] -> an exported model's input. An integer input with scale 1 is a
    pixel input and takes the pixel bytes as its dtype: int8 pixel - 128 (`pixels ^ 0x80`), uint8
    the pixels, whatever its zero point (`tflite.export --stem_border zero_point` sets the zero point
    to c - 128 (c for uint8), so the real input is pixel - c); any other input is `quantize`d."""
    dtype = detail["dtype"]
    scale, _ = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and abs(scale - 1.0) < 1e-6:
        info = np.iinfo(dtype)
        return np.clip(np.round(x) + info.min, info.min, info.max).astype(dtype)
    return quantize(x, detail)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def run(interp: Interpreter, images: np.ndarray) -> np.ndarray:
    """Runs a single-input single-output model image by image (static batch 1); float outputs."""
    (inp,) = interp.get_input_details()
    out = interp.get_output_details()[0]
    expected = tuple(inp["shape"][1:])
    if tuple(images.shape[1:]) != expected:
        raise ToolError(f"images have shape {images.shape[1:]} but the model takes {expected}")
    results = []
    for image in images:
        interp.set_tensor(inp["index"], quantize_pixels(image[None], inp))
        interp.invoke()
        results.append(dequantize(interp.get_tensor(out["index"]), out)[0])
    return np.stack(results)


def random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    """A random tensor of the input's shape and dtype (latency only: values do not matter)."""
    shape, dtype = detail["shape"], detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.uniform(0, 255, size=shape).astype(dtype)
