"""The torch-free safetensors reader: dtypes, and clear errors for damaged or foreign files."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from mobilenetv4.weights import CheckpointError, read_safetensors
from mobilenetv4.weights.safetensors_file import read_metadata


def test_round_trip_of_numpy_dtypes_and_metadata(tmp_path):
    tensors = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1.5, -2.25], np.float16),
        "n": np.array(7, np.int64),
    }
    path = str(tmp_path / "t.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    loaded = read_safetensors(path)
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        np.testing.assert_array_equal(loaded[k], v)
    assert read_metadata(path) == {"format": "pt"}


def _write_raw(path, header, data):
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + data)


def test_bf16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -3.5, 0.15625], np.float32)  # exactly representable in bfloat16
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = str(tmp_path / "bf16.safetensors")
    _write_raw(path, {"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}, raw)
    out = read_safetensors(path)["w"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


def test_truncated_file_says_truncated(tmp_path, small_checkpoint_copy):
    with open(small_checkpoint_copy, "rb") as f:
        data = f.read()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated.*download it again"):
        read_safetensors(str(path))
    path.write_bytes(data[:100])  # cut inside the header
    with pytest.raises(CheckpointError, match="truncated inside its header"):
        read_safetensors(str(path))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"PK\x03\x04" + b"\x00" * 64, "PyTorch .pth/.bin checkpoint"),
        (b"\x80\x02}q\x00" + b"\x00" * 64, "PyTorch .pth/.bin checkpoint"),
        (b"<!DOCTYPE html><html>Not Found</html>", "text file"),
        (b"\x01\x02\x03", "not in safetensors format"),
        (b"", "not in safetensors format"),
    ],
)
def test_foreign_files_are_named(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_safetensors(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_safetensors(str(tmp_path / "absent.safetensors"))
