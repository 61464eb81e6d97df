import os
import shutil

import pytest

from tflite import ToolError, edgetpu

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def test_parse_recorded_log():
    result = edgetpu.parse_log(open(os.path.join(FIXTURES, "edgetpu_compiler.log")).read())
    assert (result["mapped_ops"], result["unmapped_ops"]) == (66, 2)
    ops = {o["op"]: o for o in result["ops"]}
    assert ops["CONV_2D"]["count"] == 46 and ops["CONV_2D"]["status"] == "Mapped to Edge TPU"
    assert ops["QUANTIZE"]["status"].startswith("Operation is otherwise supported")
    with pytest.raises(ToolError, match="did not report"):
        edgetpu.parse_log("Internal compiler error. Aborting!")


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError, match="edgetpu_compiler is not installed"):
        edgetpu.require_compiler()


def test_compile_with_fake_compiler(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(os.path.join(FIXTURES, "fake_edgetpu_compiler.py"), bindir / "edgetpu_compiler")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0\0\0\0TFL3")
    result = edgetpu.compile_model(str(model))
    assert result["mapped_ops"] == 66 and os.path.exists(result["compiled_model"])
    assert "66 ops mapped to the Edge TPU, 2 run on the CPU" in edgetpu.format_result(result)
