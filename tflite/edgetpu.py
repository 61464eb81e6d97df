"""EdgeTPU compilation: runs `edgetpu_compiler` on a full-integer model and reports mapped ops."""

import os
import re
import shutil
import subprocess
import tempfile

from tflite import ToolError

COMPILER = "edgetpu_compiler"


def require_compiler(compiler: str = COMPILER) -> str:
    path = shutil.which(compiler)
    if path is None:
        raise ToolError(
            f"{compiler} is not installed (it is not on PATH). It exists for x86-64 Debian/"
            "Ubuntu only: install the 'edgetpu-compiler' apt package from Coral's repository "
            "(https://coral.ai/docs/edgetpu/compiler/), or export without --edgetpu"
        )
    return path


def parse_log(log: str) -> dict:
    """Mapped/unmapped counts and the per-op table of an `edgetpu_compiler -s` log."""

    def count(pattern):
        m = re.search(pattern, log)
        return int(m.group(1)) if m else None

    ops = []
    for m in re.finditer(r"^(\w+)\s{2,}(\d+)\s{2,}(.+?)\s*$", log, re.MULTILINE):
        if m.group(1) != "Operator":
            ops.append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3)})
    mapped = count(r"Number of operations that will run on Edge TPU:\s*(\d+)")
    unmapped = count(r"Number of operations that will run on CPU:\s*(\d+)")
    if mapped is None:
        raise ToolError(
            "edgetpu_compiler did not report how many operations map to the Edge TPU; "
            "its log ended with: " + " | ".join(log.strip().splitlines()[-8:])
        )
    return {"mapped_ops": mapped, "unmapped_ops": unmapped or 0, "ops": ops}


def compile_model(model_path: str, out_dir: str | None = None, compiler: str = COMPILER) -> dict:
    """Compiles `model_path` into OUT_DIR/STEM_edgetpu.tflite (+ its .log). The compiler writes into
    a temporary folder beside them; each output is renamed into place only when complete, so an
    interrupted compilation never leaves a truncated model."""
    exe = require_compiler(compiler)
    out_dir = out_dir or os.path.dirname(os.path.abspath(model_path))
    work = tempfile.mkdtemp(prefix=".tmp-edgetpu-", dir=out_dir)
    try:
        proc = subprocess.run([exe, "-s", "-o", work, model_path], capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise ToolError(
                f"edgetpu_compiler failed (exit {proc.returncode}): "
                + " | ".join(log.strip().splitlines()[-8:])
            )
        result = parse_log(log)
        stem = os.path.splitext(os.path.basename(model_path))[0]
        compiled = f"{stem}_edgetpu.tflite"
        if not os.path.isfile(os.path.join(work, compiled)):
            raise ToolError(f"edgetpu_compiler reported success but wrote no {compiled}")
        for name in sorted(os.listdir(work), key=lambda n: n == compiled):  # the model last
            with open(os.path.join(work, name), "rb") as f:
                os.fsync(f.fileno())
            os.replace(os.path.join(work, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["compiled_model"] = os.path.join(out_dir, compiled)
    result["log"] = log
    return result


def format_result(result: dict) -> str:
    lines = [
        f"EdgeTPU: {result['mapped_ops']} ops mapped to the Edge TPU, {result['unmapped_ops']} run on "
        f"the CPU; compiled model {result['compiled_model']}"
    ]
    lines += [f"  {o['op']:<24} x{o['count']:<4} {o['status']}" for o in result["ops"]]
    return "\n".join(lines)
