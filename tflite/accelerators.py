"""LiteRT's hardware accelerators (`CompiledModel`): run a .tflite on the CPU, GPU or NPU, say whether
every op is on the accelerator, time it with the Appendix B protocol and compare its outputs with
the CPU (XNNPACK) run of the same model on the same real images.

    python -m tflite.benchmark MODEL.tflite --accelerator gpu [--check_images sklearn_digits]
    python -m tflite.export --model conv_small --fp32 --output cs.tflite --check gpu

GPU: LiteRT's WebGPU accelerator over Vulkan. On a machine without a GPU that is Mesa's lavapipe
(software Vulkan, `scripts/install_vulkan.sh`): its latency is a CPU figure, not a device one; use
`--adb --accelerator gpu` for device latency. FP32 models run with `enforce_f32` (full precision),
FP16 models in half precision, as the GPU delegate runs them on phones. A GPU run only finishes when
its output is read: every timed invocation here reads the output (LiteRT's own
`benchmark_litert_model.py` does not, and its GPU figures measure only the queueing).
NPU: a model compiled ahead of time (`tflite.npu`, `tflite.export --npu`) runs through the vendor's
dispatch library; a plain INT8 model is compiled when loaded (the vendor's compiler plugin).
"""

import contextlib
import dataclasses
import os
import re
import tempfile
import time

import numpy as np

from tflite import ToolError, analysis, runtime

ACCELERATORS = ("cpu", "gpu", "npu")
# LiteRT's message when WebGPU finds no Vulkan device (Debian 12's Mesa 22.3 ends here too).
_NO_ADAPTER = re.compile(r"No adapters found|Failed to create .*WebGPU|Failed to .*adapter", re.I)
INSTALL_HINT = "run scripts/install_vulkan.sh (Mesa >= 25 lavapipe from bookworm-backports)"
SHADER_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "mobilenetv4", "mesa_shader_cache")


def vulkan_missing() -> str | None:
    """Why LiteRT's GPU accelerator cannot run here, or None when a Vulkan driver is installed
    (a static check: the loader library and an ICD; lavapipe must be Mesa >= 25)."""
    import ctypes.util
    import glob

    if not ctypes.util.find_library("vulkan"):
        return f"no Vulkan loader (libvulkan1); {INSTALL_HINT}"
    icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
    override = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    icds = (
        [p for p in override.split(os.pathsep) if os.path.isfile(p)]
        if override
        else [p for d in icd_dirs for p in glob.glob(os.path.join(d, "*.json"))]
    )
    if not icds:
        return f"no Vulkan driver (ICD) installed; {INSTALL_HINT}"
    if all("lvp_icd" in os.path.basename(p) for p in icds):
        version = _mesa_version()
        if version is not None and version < (25,):
            return (
                f"Mesa {'.'.join(map(str, version))} lavapipe is too old for LiteRT's GPU "
                f"accelerator ('No adapters found'); {INSTALL_HINT}"
            )
    return None


def _mesa_version():
    import subprocess

    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "mesa-vulkan-drivers"],
            capture_output=True,
            text=True,
        ).stdout
    except OSError:
        return None
    m = re.match(r"(?:\d+:)?(\d+)\.(\d+)", out.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


@contextlib.contextmanager
def native_stderr(keep: list):
    """Collects what LiteRT's C++ code prints on fd 2 (its INFO lines) into `keep[0]` instead of
    the terminal; errors quote it."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            keep[:] = [f.read().decode("utf-8", "replace")]


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if re.search(r"error|fail", line, re.I)]
    return lines[-1] if lines else (text.strip().splitlines() or ["(no message)"])[-1]


def io_details(path_or_bytes) -> tuple[dict, dict]:
    """(input, output) of subgraph 0 as {'dtype', 'shape', 'quantization'} read from the flatbuffer
    itself (works for AOT-compiled models the interpreter cannot open)."""
    from ai_edge_litert.tools import flatbuffer_utils

    data = runtime.read_model(path_or_bytes) if isinstance(path_or_bytes, str) else path_or_bytes
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    types = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}

    def detail(index):
        t = graph.tensors[index]
        q = t.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
        zero = (
            int(q.zeroPoint[0])
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint)
            else 0
        )
        return {
            "dtype": types.get(t.type, np.float32),
            "shape": list(t.shape),
            "quantization": (scale, zero),
        }

    return detail(graph.inputs[0]), detail(graph.outputs[0])


def compiled_for(path: str) -> tuple[str, str] | None:
    """(SoC manufacturer, SoC model) an AOT-compiled model was built for (its 'LiteRtStamp'
    metadata), or None for a plain model."""
    data = runtime.read_model(path)
    if b"DISPATCH_OP" not in data or b"LiteRtStamp" not in data:
        return None
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for md in model.metadata or []:
        if md.name == b"LiteRtStamp":
            raw = bytes(model.buffers[md.buffer].data)
            parts = [p.decode("ascii", "replace") for p in raw.split(b"\0") if p.strip()]
            return (parts[0], parts[1] if len(parts) > 1 else "?") if parts else None
    return None


class Runner:
    """One model compiled for one accelerator. `invoke()` runs it once and reads the output (a GPU
    run is asynchronous until then), so it can stand in for an interpreter in the protocol."""

    def __init__(self, path: str, accelerator: str, *, num_threads: int = 1, log=print):
        if accelerator not in ACCELERATORS:
            raise ToolError(
                f"unknown accelerator {accelerator!r}; choose one of {', '.join(ACCELERATORS)}"
            )
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator as HA
        from ai_edge_litert.options import CpuOptions, GpuOptions, Options

        self.path, self.accelerator = path, accelerator
        data = runtime.read_model(path)
        self.input, self.output = io_details(data)
        self.precision = None
        stamp = compiled_for(path)
        if stamp and accelerator != "npu":
            raise ToolError(
                f"{path} is compiled for the {stamp[0]} {stamp[1]} NPU; run it with "
                "--accelerator npu, or pass the plain .tflite"
            )
        if accelerator == "gpu":
            reason = vulkan_missing()
            if reason:
                raise ToolError(f"the GPU accelerator needs Vulkan: {reason}")
            os.environ.setdefault("MESA_SHADER_CACHE_DIR", SHADER_CACHE)
            os.makedirs(os.environ["MESA_SHADER_CACHE_DIR"], exist_ok=True)
            self.precision = precision(data)
            gpu = GpuOptions(enforce_f32=self.precision == "FP32")
        else:
            gpu = None
        env, npu_options = None, None
        if accelerator == "npu":
            from tflite import npu

            env, npu_options = npu.runtime_environment(path, stamp)
        accel = {"cpu": HA.CPU, "gpu": HA.GPU | HA.CPU, "npu": HA.NPU | HA.CPU}[accelerator]
        options = Options(
            hardware_accelerators=accel,
            cpu_options=CpuOptions(num_threads=num_threads),
            gpu_options=gpu,
            **(npu_options or {}),
        )
        log_text = [""]
        t0 = time.perf_counter()
        try:
            with native_stderr(log_text):
                self.model = CompiledModel.from_buffer(data, environment=env, options=options)
                self.inputs = self.model.create_input_buffers(0)
                self.outputs = self.model.create_output_buffers(0)
                self.fully_accelerated = bool(self.model.is_fully_accelerated())
                self._size = int(np.prod(self.output["shape"]))
                self.write(np.zeros(self.input["shape"], self.input["dtype"]))
                self.invoke()  # the first run: shaders / kernels are compiled here
        except (RuntimeError, ValueError) as e:
            text = log_text[0] + "\n" + str(e)
            if accelerator == "gpu" and _NO_ADAPTER.search(text):
                raise ToolError(
                    f"the GPU accelerator found no Vulkan device ('No adapters found'); {INSTALL_HINT}"
                ) from None
            raise ToolError(
                f"LiteRT cannot compile {path} for the {accelerator.upper()}: {_last_error(text)}"
            ) from None
        self.compile_ms = (time.perf_counter() - t0) * 1000.0
        self.native_log = log_text[0]

    def write(self, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array, self.input["dtype"])
        _retry_lock(lambda: self.inputs[0].write(data))

    def invoke(self):
        _retry_lock(lambda: self.model.run_by_index(0, self.inputs, self.outputs))
        return _retry_lock(lambda: self.outputs[0].read(self._size, self.output["dtype"]))

    def run(self, images: np.ndarray) -> np.ndarray:
        """Float outputs for float pixel images, one at a time (static batch 1)."""
        shape = tuple(self.input["shape"][1:])
        if tuple(images.shape[1:]) != shape:
            raise ToolError(f"images have shape {images.shape[1:]} but the model takes {shape}")
        out = []
        for image in images:
            self.write(runtime.quantize_pixels(image[None], self.input))
            y = np.asarray(self.invoke()).reshape(self.output["shape"])
            out.append(runtime.dequantize(y, self.output)[0])
        return np.stack(out)


def _retry_lock(fn, attempts: int = 5):
    """LiteRT 2.3's WebGPU buffers on lavapipe sometimes fail to map ('Failed to lock custom tensor
    buffer', seen on about one model in ten here); a retry after a moment succeeds."""
    for attempt in range(attempts):
        try:
            return fn()
        except RuntimeError as e:
            if "lock" not in str(e).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def precision(data: bytes) -> str:
    interp = runtime.load_interpreter(data, xnnpack=False)
    return analysis.precision(interp, interp._get_ops_details())


_NOT_SUPPORTED = re.compile(
    r"Following operations are not supported by GPU delegate:\s*\n(.*?)\n[^\n]*operations will run",
    re.DOTALL,
)


def logged_fallback_ops(native_log: str) -> list[str]:
    """The ops LiteRT's GPU accelerator says, in its log, it leaves to the CPU ('OP: reason' lines
    under 'Following operations are not supported by GPU delegate:')."""
    m = _NOT_SUPPORTED.search(native_log or "")
    return [line.strip() for line in m.group(1).splitlines() if line.strip()] if m else []


def gpu_fallback_ops(path: str) -> list[str]:
    """Ops LiteRT's model analyzer flags as GPU-incompatible ('GPU COMPATIBILITY WARNING'): the ops
    a GPU run leaves to the CPU. One line each: 'OP_NAME: reason'."""
    from ai_edge_litert import _pywrap_analyzer_wrapper

    text = _pywrap_analyzer_wrapper.ModelAnalyzer(path, True, True)
    ops = []
    for line in text.splitlines():
        m = re.search(r"Op#\d+\s+(\w+).*GPU COMPATIBILITY WARNING:\s*(.*)", line)
        if m:
            ops.append(f"{m.group(1)}: {m.group(2).strip()}")
    return ops


@dataclasses.dataclass
class Check:
    accelerator: str
    model: str
    fully_accelerated: bool
    compile_ms: float
    images: int
    sqnr_db: float
    max_rel_diff: float
    top1_agreement: float
    gpu_precision: str | None
    fallback_ops: list

    def to_dict(self):
        return dataclasses.asdict(self)

    def line(self) -> str:
        where = (
            "every op on the accelerator"
            if self.fully_accelerated
            else f"NOT fully on the accelerator ({len(self.fallback_ops)} op(s) on the CPU: "
            + "; ".join(self.fallback_ops[:5])
            + ")"
        )
        return (
            f"{self.accelerator.upper()} check of {os.path.basename(self.model)}: {where}; "
            f"first-run compile {self.compile_ms:.0f} ms; vs CPU (XNNPACK) on {self.images} images: "
            f"SQNR {self.sqnr_db:.1f} dB, max relative diff {self.max_rel_diff:.2e}, top-1 "
            f"agreement {100 * self.top1_agreement:.1f}%"
            + (f" (GPU computes in {self.gpu_precision})" if self.gpu_precision else "")
        )


def compare(reference: np.ndarray, test: np.ndarray) -> dict:
    scale = float(np.max(np.abs(reference))) or 1.0
    return {
        "sqnr_db": analysis.sqnr_db(reference, test),
        "max_rel_diff": float(np.max(np.abs(reference - test))) / scale,
        "top1_agreement": analysis.top1_agreement(reference, test),
    }


def check(
    path: str,
    accelerator: str,
    images: np.ndarray,
    *,
    reference: str | None = None,
    num_threads: int = 1,
    runner: Runner | None = None,
) -> Check:
    """Runs `images` through `path` on the accelerator and through `reference` (default `path`) on
    the CPU with XNNPACK; compares the float outputs."""
    runner = runner or Runner(path, accelerator, num_threads=num_threads)
    ref_path = reference or path
    if compiled_for(ref_path):
        raise ToolError(
            f"{path} is compiled for an NPU: the CPU reference needs the plain .tflite it was "
            "compiled from"
        )
    cpu = runtime.run(runtime.load_interpreter(ref_path, num_threads=num_threads), images)
    test = runner.run(images)
    fallback = []
    if not runner.fully_accelerated and accelerator == "gpu":
        fallback = (  # the analyzer's legacy GPU rules miss ops the accelerator refuses
            logged_fallback_ops(runner.native_log)
            or gpu_fallback_ops(path)
            or ["(LiteRT does not say which)"]
        )
    elif not runner.fully_accelerated:
        fallback = ["(LiteRT does not say which)"]
    return Check(
        accelerator,
        path,
        runner.fully_accelerated,
        runner.compile_ms,
        int(len(images)),
        gpu_precision=None
        if accelerator != "gpu"
        else ("FP32" if runner.precision == "FP32" else "FP16"),
        fallback_ops=fallback,
        **compare(cpu, test),
    )


def check_images(
    path: str, source: str = "sklearn_digits", count: int = 32, log=print, crop_fraction=None
):
    """`count` real held-out images at the model's input size (sklearn digits by default: the
    offline real images `tflite.calibration` ships with)."""
    from tflite import calibration

    shape = io_details(path)[0]["shape"]
    size = (int(shape[1]), int(shape[2]))
    return calibration.load(source, size, 0, count, crop_fraction=crop_fraction, log=log).heldout


# LiteRT's GPU accelerator (Mesa's LLVM) crashes in a process that has loaded TensorFlow (seen
# here: a segmentation fault on the first GPU run after an export), and a vendor plugin may crash
# too: accelerator runs happen in a fresh Python process that imports no TensorFlow.
def isolated(task: str, **kwargs) -> dict:
    """Runs `_TASKS[task](**kwargs)` in a child Python process; numpy arrays travel as .npy files.
    A UserError there is re-raised here; a crash is a ToolError naming the signal."""
    import json
    import signal
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="mnv4-accel-") as work:
        for key, value in list(kwargs.items()):
            if isinstance(value, np.ndarray):
                np.save(os.path.join(work, key + ".npy"), value)
                kwargs[key] = {"npy": os.path.join(work, key + ".npy")}
        to_stderr = kwargs.pop("log_to_stderr", False)  # keep stdout for the caller's JSON
        with open(os.path.join(work, "task.json"), "w") as f:
            json.dump({"task": task, "kwargs": kwargs}, f)
        proc = subprocess.run(
            [sys.executable, "-c", "from tflite import accelerators; accelerators._worker()", work],
            stdout=2 if to_stderr else None,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        result = os.path.join(work, "result.json")
        error = os.path.join(work, "error.txt")
        if os.path.exists(result):
            with open(result) as f:
                return json.load(f)
        if os.path.exists(error):
            raise ToolError(open(error).read().strip())
        code = proc.returncode
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        raise ToolError(
            f"LiteRT's {kwargs.get('accelerator', '')} run crashed ({what}): "
            f"{_last_error(proc.stderr or '')}"
        )


def _check_task(path, accelerator, images, reference=None, num_threads=1) -> dict:
    return check(path, accelerator, images, reference=reference, num_threads=num_threads).to_dict()


def _benchmark_task(paths, accelerator, **protocol) -> dict:
    return benchmark(paths, accelerator, log=lambda m: print(m, flush=True), **protocol)


_TASKS = {"check": _check_task, "benchmark": _benchmark_task}


def _worker() -> None:
    import json
    import sys

    from mobilenetv4.cli import UserError

    work = sys.argv[1]
    # LiteRT prints some INFO lines on fd 1: send fd 1 to stderr; Python's prints keep stdout.
    sys.stdout.flush()
    sys.stdout = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    with open(os.path.join(work, "task.json")) as f:
        spec = json.load(f)
    kwargs = {
        k: np.load(v["npy"]) if isinstance(v, dict) and "npy" in v else v
        for k, v in spec["kwargs"].items()
    }
    try:
        result = _TASKS[spec["task"]](**kwargs)
    except UserError as e:
        with open(os.path.join(work, "error.txt"), "w") as f:
            f.write(str(e))
        return
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f)


def benchmark(
    paths: list[str],
    accelerator: str,
    *,
    num_runs: int = 1000,
    repeats: int = 5,
    num_threads: int = 1,
    warmup_runs: int = 20,
    core="fastest",
    log=print,
) -> dict:
    """The Appendix B protocol (`tflite.benchmark.appendix_b`, models interleaved) on `accelerator`
    through CompiledModel; each timed invocation runs the model and reads its output."""
    from tflite import benchmark as bench

    runners = {}

    def prepare(path, *, num_threads, xnnpack, warmup_runs):
        runner = Runner(path, accelerator, num_threads=num_threads)
        rng = np.random.default_rng(0)
        runner.write(runtime.random_input(runner.input, rng))
        for _ in range(warmup_runs):
            runner.invoke()
        runners[path] = runner
        return runner

    result = bench.appendix_b(
        paths,
        num_runs=num_runs,
        repeats=repeats,
        num_threads=num_threads,
        warmup_runs=warmup_runs,
        core=core,
        log=log,
        prepare=prepare,
    )
    result["protocol"]["accelerator"] = accelerator
    result["protocol"]["statistic"] += " (each invocation: run, then read the output)"
    for m in result["models"]:
        r = runners[m["model"]]
        m["fully_accelerated"] = r.fully_accelerated
        m["first_run_compile_ms"] = r.compile_ms
        if accelerator == "gpu":
            m["gpu_precision"] = "FP32" if r.precision == "FP32" else "FP16"
    return result


ADB_ACCELERATORS = ("cpu", "gpu", "npu", "hexagon", "nnapi")


def check_accelerator_flag(args, parser) -> None:
    """`--accelerator`: cpu/gpu/npu locally; with --adb also hexagon/nnapi, and it sets the
    benchmark_model delegate (the older --delegate says the same)."""
    choices = ADB_ACCELERATORS if args.adb else ACCELERATORS
    if args.accelerator not in choices:
        extra = "" if args.adb else " (hexagon and nnapi run on a device: add --adb)"
        parser.error(
            f"argument --accelerator: unknown accelerator {args.accelerator!r}; choose one of "
            f"{', '.join(choices)}{extra}"
        )
    if args.adb:
        if args.delegate not in ("cpu", args.accelerator):
            parser.error("give --accelerator or the older --delegate, not both")
        args.delegate = args.accelerator
    elif args.no_xnnpack:
        parser.error("--no_xnnpack applies to the interpreter path, not --accelerator")


def _reference_of(path: str) -> str | None:
    """The plain .tflite an AOT-compiled model came from (its report's 'source'), if known."""
    import json

    from tflite import npu

    report = npu.report_paths(path)[1]
    if os.path.isfile(report):
        with open(report) as f:
            source = json.load(f).get("source")
        if source and os.path.isfile(source):
            return source
    return None


def benchmark_cli(args, log) -> dict:
    """`tflite.benchmark --accelerator A`: the protocol in a TensorFlow-free child process, then the
    correctness check of each model against the CPU on real images."""
    for path in args.models:
        runtime.read_model(path)
    result = isolated(
        "benchmark",
        paths=list(args.models),
        accelerator=args.accelerator,
        num_runs=args.num_runs,
        repeats=args.repeats,
        num_threads=args.num_threads,
        warmup_runs=args.warmup_runs,
        core=args.core,
        log_to_stderr=args.json == "-",
    )
    for m in result["models"]:
        path = m["model"]
        extra = f" ({m['gpu_precision']})" if m.get("gpu_precision") else ""
        log(
            f"{os.path.basename(path)} on the {args.accelerator.upper()}{extra}: "
            + ("every op on the accelerator" if m["fully_accelerated"] else "NOT every op on it")
            + f"; first-run compile {m['first_run_compile_ms']:.0f} ms; median {m['median_ms']:.3f} ms"
        )
        if args.check_images == "none":
            continue
        reference = _reference_of(path) if compiled_for(path) else None
        if compiled_for(path) and reference is None:
            log(f"  no check: {path} is AOT-compiled and its source .tflite is not known")
            continue
        images = check_images(reference or path, args.check_images, log=lambda *_: None)
        m["check"] = isolated(
            "check",
            path=path,
            accelerator=args.accelerator,
            images=images,
            reference=reference,
            num_threads=args.num_threads,
        )
        log("  " + Check(**m["check"]).line())
    partial = [m for m in result["models"] if not m["fully_accelerated"]]
    if partial:  # a mixed CPU+accelerator latency is not the accelerator's figure
        m = partial[0]
        ops = "; ".join((m.get("check") or {}).get("fallback_ops") or ["LiteRT does not say which"])
        raise ToolError(
            f"{m['model']} does not run whole on the {args.accelerator.upper()} (not whole: "
            f"ops on the CPU: {ops}); no result written"
        )
    if args.accelerator == "gpu":
        log(
            "note: on this machine the GPU is Mesa's lavapipe (software Vulkan on the CPU): its "
            "latency is not a device figure; use --adb --accelerator gpu on a phone"
        )
    return result


def add_export_flags(parser) -> None:
    """`tflite.export --check ACCELERATOR` and `--npu VENDOR[:TARGET]`."""
    parser.add_argument(
        "--check",
        default=None,
        metavar="ACCELERATOR",
        help="after export, run the model on LiteRT's gpu (or cpu, npu) accelerator and compare it "
        "with the CPU (XNNPACK) run on real images: every op on the accelerator, FP32 within 1e-4 "
        "relative, SQNR reported (exit 1 when FP32 differs more)",
    )
    parser.add_argument(
        "--npu",
        default=None,
        metavar="VENDOR[:TARGET]",
        help="compile the INT8 model ahead of time for an NPU with LiteRT's AOT compiler: "
        "qualcomm, mediatek, google_tensor or intel_openvino (e.g. intel_openvino:LNL, "
        "qualcomm:SM8650); writes OUTPUT_npu_VENDOR_TARGET.tflite and its report",
    )


def export_plan(args):
    """Validates --check / --npu before any work (unknown names, missing SDK, a float model for the
    NPU, existing outputs): returns (check accelerator, NPU target)."""
    from mobilenetv4 import fileio
    from tflite import npu

    check_with = getattr(args, "check", None)
    if check_with is not None and check_with not in ACCELERATORS:
        raise ToolError(
            f"--check: unknown accelerator {check_with!r}; choose one of {', '.join(ACCELERATORS)}"
        )
    if check_with == "gpu" and vulkan_missing():
        raise ToolError(f"--check gpu needs Vulkan: {vulkan_missing()}")
    target = None
    if getattr(args, "npu", None):
        target = npu.parse_target(args.npu)
        if args.precision != "int8":
            raise ToolError(
                f"--npu compiles a full-integer model; this is a {args.precision.upper()} "
                "export: use --int8"
            )
        npu.require_sdk(target.vendor)
        compiled = npu.compiled_path(args.output, target)
        fileio.check_outputs(
            [compiled, *npu.report_paths(compiled)], overwrite=getattr(args, "overwrite", False)
        )
    if check_with == "npu" and target is None:
        raise ToolError("--check npu checks the --npu compiled model: add --npu VENDOR[:TARGET]")
    return check_with, target


def after_export(args, report: dict, plan, log=print) -> dict:
    """The NPU compilation and the accelerator check of an exported model (tflite.export)."""
    from mobilenetv4.cli import UserError
    from tflite import npu

    check_with, target = plan
    path = report["output"]
    if target is not None:
        result = npu.compile_model(path, target, overwrite=args.overwrite, log=log)
        report["npu"] = result
    if check_with is None:
        return report
    source = args.calibration if args.calibration not in (None, "random") else "sklearn_digits"
    crop = report.get("eval_crop_fraction")  # the export's (the build record's) eval crop
    images = check_images(path, source, log=lambda *_: None, crop_fraction=crop)
    compiled = report["npu"]["compiled_model"] if check_with == "npu" else path
    result = isolated(
        "check",
        path=compiled,
        accelerator=check_with,
        images=images,
        reference=path if check_with == "npu" else None,
    )
    c = Check(**result)
    log(c.line())
    report[f"{check_with}_check"] = result
    if not c.fully_accelerated:
        raise UserError(
            f"{os.path.basename(compiled)} does not run whole on the {check_with.upper()}: "
            f"{'; '.join(c.fallback_ops)}"
        )
    if c.gpu_precision == "FP32" and c.max_rel_diff > 1e-4:
        log(f"check failed: FP32 on the GPU differs from the CPU by {c.max_rel_diff:.1e} (> 1e-4)")
        report["check_failed"] = True
    return report
