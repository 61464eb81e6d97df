"""Read a safetensors checkpoint into numpy arrays, without torch.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw data. We parse the header ourselves rather than calling the
`safetensors` package so that a file that is not safetensors (a PyTorch pickle, an HTML error page
saved by a failed download) or a truncated download gets an error saying which it is and what to
do, and so that BF16 tensors (which numpy cannot hold) are widened to float32.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import numpy as np

from mobilenetv4.cli import UserError

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class CheckpointError(UserError):
    """A checkpoint file could not be used; the message says why and what to do (a UserError, so a
    CLI reports it as one `error:` line and exit 2; still a ValueError)."""


def _not_safetensors(path: str, head: bytes) -> CheckpointError:
    if head.startswith(b"\x93NUMPY") or path.endswith(".npz"):
        what = "a numpy array file (.npy/.npz), not a checkpoint (it is not read)"
        fix = "pass the model.safetensors file of a timm MobileNetV4 checkpoint"
    elif head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        what = "a zip/pickle archive (a PyTorch .pth/.bin checkpoint written by torch.save)"
        fix = (
            "download the model.safetensors file from the timm Hugging Face repository instead, "
            "or convert it where torch is installed with safetensors.torch.save_file(state_dict, PATH)"
        )
    elif head.lstrip()[:1] in (b"<", b"{"):
        what = "a text file (HTML or JSON), e.g. an error page saved by a failed download"
        fix = "download the file again"
    else:
        what = "not in safetensors format"
        fix = "pass the model.safetensors file of a timm MobileNetV4 checkpoint"
    return CheckpointError(f"{path}: {what}; {fix}.")


def read_header(path: str) -> Tuple[dict, Dict[str, str], int]:
    """Returns (tensor entries, metadata, byte offset of the data section), validating sizes."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file.")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
        if size < 8:
            raise _not_safetensors(path, head)
        n = int.from_bytes(head[:8], "little")
        if n == 0 or n > _MAX_HEADER_BYTES or head[8:9] != b"{":
            raise _not_safetensors(path, head)
        if 8 + n > size:
            raise CheckpointError(
                f"{path}: file is truncated inside its header ({size} bytes, header needs {8 + n}); "
                "the download is incomplete, download it again."
            )
        f.seek(8)
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _not_safetensors(path, head) from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, head)
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    end = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, stop) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}.") from None
        itemsize = 2 if dtype == "BF16" else np.dtype(_DTYPES.get(dtype, np.uint8)).itemsize
        if dtype != "BF16" and dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}.")
        if stop - begin != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise CheckpointError(
                f"{path}: header of tensor {name!r} is inconsistent (corrupt file)."
            )
        end = max(end, stop)
    if data_start + end > size:
        raise CheckpointError(
            f"{path}: file is truncated: its header describes {end} bytes of tensor data but only "
            f"{size - data_start} are present; the download is incomplete, download it again."
        )
    return header, metadata, data_start


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays (BF16 widened to float32)."""
    path = os.fspath(path)
    header, _, data_start = read_header(path)
    end = max((e["data_offsets"][1] for e in header.values()), default=0)
    data = np.fromfile(path, dtype=np.uint8, count=end, offset=data_start)
    tensors = {}
    for name, entry in header.items():
        begin, stop = entry["data_offsets"]
        raw = data[begin:stop]
        if entry["dtype"] == "BF16":
            # bfloat16 is the upper half of a float32.
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")).astype(
                _DTYPES[entry["dtype"]], copy=True
            )
        tensors[name] = arr.reshape(entry["shape"])
    return tensors


def read_metadata(path: str) -> Dict[str, str]:
    """The free-form string metadata stored in a safetensors header."""
    return read_header(os.fspath(path))[1]
