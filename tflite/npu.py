"""NPU: ahead-of-time compilation of a full-integer model with LiteRT's AOT compiler and a vendor
plugin, the report of what each partition put on the NPU, and the dispatch runtime to run it.

    python -m tflite.export --model conv_small --int8 --calibration sklearn_digits \\
        --output cs.tflite --npu intel_openvino          # -> cs_npu_intel_openvino_LNL.tflite
    python -m tflite.benchmark cs_npu_intel_openvino_LNL.tflite --accelerator npu

Vendors (`--npu VENDOR[:TARGET]`): qualcomm (QNN, the successor of the Hexagon delegate the paper
benchmarks), mediatek, google_tensor and intel_openvino. The first three need the vendor SDK that
their `ai-edge-litert-sdk-*` package downloads when it is installed (impossible offline); this
module says so in one line. Intel's plugin installs from PyPI (`openvino`, the `npu` extra of this
package) and compiles offline. On a machine without an Intel NPU the OpenVINO partitions are
compiled for, and run on, OpenVINO's CPU graph backend (`--npu intel_openvino` does this by
default; `intel_openvino:LNL/npu` asks for the NPU device, which needs Intel's NPU compiler).
"""

import contextlib
import dataclasses
import importlib
import io
import importlib.util
import os
import re
import shutil
import tempfile

from mobilenetv4 import fileio
from tflite import ToolError, analysis, runtime

# vendor -> (AOT vendor module, SDK module to import, pip package, what its install needs, default
# target, the dispatch runtime's SoC manufacturer name)
VENDORS = {
    "qualcomm": (
        "qualcomm",
        "ai_edge_litert_sdk_qualcomm",
        "ai-edge-litert-sdk-qualcomm",
        "downloads Qualcomm's QNN SDK from Qualcomm when installed (network access)",
        "SM8650",
        "Qualcomm",
    ),
    "mediatek": (
        "mediatek",
        "ai_edge_litert_sdk_mediatek",
        "ai-edge-litert-sdk-mediatek",
        "downloads MediaTek's NeuroPilot SDK when installed (network access)",
        "MT6989",
        "MediaTek",
    ),
    "google_tensor": (
        "google_tensor",
        "ai_edge_litert_sdk_google_tensor",
        "ai-edge-litert-sdk-google-tensor",
        "downloads Google's Tensor compiler when installed (network access); or set "
        "GOOGLE_TENSOR_COMPILER_LIB",
        "Tensor_G4",
        "Google",
    ),
    "intel_openvino": (
        "intel_openvino",
        "openvino",
        "openvino",
        "installs from PyPI (pip install -e '.[npu]')",
        "LNL",
        "IntelOpenVINO",
    ),
}
OPENVINO_DEVICES = ("cpu", "gpu", "npu")


@dataclasses.dataclass
class NpuTarget:
    vendor: str
    soc_model: str
    device: str | None = None  # OpenVINO graph backend

    @property
    def label(self) -> str:
        return f"{self.vendor}_{self.soc_model}" + (
            f"_{self.device}" if self.device not in (None, "cpu") else ""
        )


def parse_target(text: str) -> NpuTarget:
    """'VENDOR[:TARGET]' (intel_openvino: TARGET may end in /cpu, /gpu or /npu, default /cpu)."""
    vendor, _, target = text.partition(":")
    if vendor not in VENDORS:
        raise ToolError(f"unknown NPU vendor {vendor!r}; choose one of {', '.join(VENDORS)}")
    module, *_, default, _ = VENDORS[vendor]
    target, _, device = (target or default).partition("/")
    if vendor == "intel_openvino":
        device = (device or "cpu").lower()
        if device not in OPENVINO_DEVICES:
            raise ToolError(
                f"--npu {text}: OpenVINO device must be one of {', '.join(OPENVINO_DEVICES)}"
            )
    elif device:
        raise ToolError(f"--npu {text}: only intel_openvino takes a /DEVICE")
    socs = _soc_models(module)
    match = {s.lower(): s for s in socs}.get(target.lower())
    if match is None:
        raise ToolError(
            f"unknown {vendor} target {target!r}; choose one of {', '.join(s for s in socs if s != 'ALL')}"
        )
    return NpuTarget(vendor, match, device or None)


def _soc_models(module: str) -> list[str]:
    target = importlib.import_module(f"ai_edge_litert.aot.vendors.{module}.target")
    return [s.value for s in target.SocModel]


def require_sdk(vendor: str) -> None:
    """A one-line error naming the package when the vendor's SDK is not installed."""
    _, sdk_module, package, needs, *_ = VENDORS[vendor]
    if vendor == "google_tensor" and os.environ.get("GOOGLE_TENSOR_COMPILER_LIB"):
        return
    if importlib.util.find_spec(sdk_module) is None:
        raise ToolError(
            f"--npu {vendor} needs the {package} package, which {needs}; it is not installed here"
        )


def require_int8(path: str) -> None:
    interp = runtime.load_interpreter(path, xnnpack=False)
    precision = analysis.precision(interp, interp._get_ops_details())
    if precision != "INT8":
        raise ToolError(
            f"{path} is a {precision} model; NPU compilation takes a full-integer model: "
            "export it with --int8"
        )


def compiled_path(model_path: str, target: NpuTarget) -> str:
    stem = os.path.splitext(model_path)[0]
    return f"{stem}_npu_{target.label}.tflite"


def report_paths(compiled: str) -> tuple[str, str]:
    stem = os.path.splitext(compiled)[0]
    return stem + ".report.md", stem + ".report.json"


def _op_names(data: bytes) -> list[str]:
    """Op names of subgraph 0 in order (custom ops by their custom code)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for oc in model.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        codes.append(oc.customCode.decode() if oc.customCode else names.get(code, str(code)))
    return [codes[op.opcodeIndex] for op in model.subgraphs[0].operators]


def partition_report(source: bytes, compiled: bytes, stats=None) -> dict:
    """What the plugin put on the NPU: per subgraph the offloaded / total ops and partitions (the
    AOT compiler's partition stats), and which ops stayed on the CPU (the compiled graph's ops other
    than the DISPATCH_OP each partition became)."""
    before, after = _op_names(source), _op_names(compiled)
    cpu_ops = [op for op in after if op != "DISPATCH_OP"]
    subgraphs = [
        {
            "subgraph": s.subgraph_index,
            "ops_on_npu": s.num_ops_offloaded,
            "ops": s.num_total_ops,
            "partitions": s.num_partitions_offloaded,
        }
        for s in (stats.subgraph_stats if stats is not None else [])
    ]
    counts: dict[str, int] = {}
    for op in cpu_ops:
        counts[op] = counts.get(op, 0) + 1
    return {
        "ops": len(before),
        "ops_on_npu": len(before) - len(cpu_ops),
        "partitions": after.count("DISPATCH_OP"),
        "cpu_ops": counts,
        "subgraphs": subgraphs,
    }


def compile_model(model_path: str, target: NpuTarget, *, output=None, overwrite=False, log=print):
    """Compiles `model_path` for `target` into `output` (default next to it) with its report; the
    AOT compiler works in a temporary folder and each file is renamed into place only when complete,
    so a failed compilation writes nothing."""
    output = output or compiled_path(model_path, target)
    md_path, json_path = report_paths(output)
    fileio.check_outputs([output, md_path, json_path], inputs=[model_path], overwrite=overwrite)
    source = runtime.read_model(model_path)
    require_int8(model_path)
    require_sdk(target.vendor)
    from ai_edge_litert.aot import aot_compile

    module = VENDORS[target.vendor][0]
    tmod = importlib.import_module(f"ai_edge_litert.aot.vendors.{module}.target")
    kwargs = {"intel_openvino_graph_backends": target.device} if target.device else {}
    work = tempfile.mkdtemp(prefix=".tmp-npu-", dir=os.path.dirname(os.path.abspath(output)))
    quiet = io.StringIO()  # the AOT compiler's progress bars and 'Skipping failed ...' lines
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            result = aot_compile.aot_compile(
                os.path.abspath(model_path),
                output_dir=work,
                target=tmod.Target(tmod.SocModel(target.soc_model)),
                keep_going=True,
                **kwargs,
            )
        if result.failed_backends or not result.models_with_backend:
            reason = result.failed_backends[0][1] if result.failed_backends else "no model"
            raise ToolError(
                f"{target.vendor} AOT compilation of {model_path} failed: " + _error_line(reason)
            )
        _, model = result.models_with_backend[0]
        compiled = model.model_bytes if model.in_memory else open(model.path, "rb").read()
        stats = getattr(model, "partition_stats", None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if saved is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved
    report = {
        "source": model_path,
        "compiled_model": output,
        "vendor": target.vendor,
        "soc_model": target.soc_model,
        "openvino_device": target.device,
        **partition_report(source, compiled, stats),
    }
    fileio.write_bytes(output, compiled)
    fileio.write_json(json_path, report)
    fileio.write_text(md_path, format_report(report))
    log(format_report(report))
    return report


def _error_line(reason: str) -> str:
    m = re.search(r"See (\S+\.error)", reason)
    if m and os.path.isfile(m.group(1)):
        text = open(m.group(1), errors="replace").read()
        os.remove(m.group(1))
        errors = [
            line.strip()
            for line in text.splitlines()
            if re.search(r"ERROR|Exception|Cannot", line) and len(line.strip()) > 20
        ]
        if errors:
            return " | ".join(errors[-2:])[:400]
    return reason


def format_report(report: dict) -> str:
    cpu = ", ".join(f"{op} x{n}" for op, n in sorted(report["cpu_ops"].items())) or "none"
    lines = [
        f"NPU ({report['vendor']} {report['soc_model']}"
        + (f", OpenVINO {report['openvino_device']} backend" if report["openvino_device"] else "")
        + f"): {report['ops_on_npu']}/{report['ops']} ops in {report['partitions']} NPU "
        f"partition(s); on the CPU: {cpu}; compiled model {report['compiled_model']}"
    ]
    lines += [
        f"  subgraph {s['subgraph']}: {s['ops_on_npu']}/{s['ops']} ops selected, "
        f"{s['partitions']} partition(s)"
        for s in report["subgraphs"]
    ]
    return "\n".join(lines)


def runtime_environment(path: str, stamp):
    """(LiteRT Environment, extra Options kwargs) to run `path` on the NPU here: the dispatch
    library of the SoC it was compiled for (a plain model is compiled on load by the plugin)."""
    import ai_edge_litert
    from ai_edge_litert.environment import Environment, EnvironmentOptions

    root = os.path.dirname(ai_edge_litert.__file__)
    available = {
        VENDORS[v][5]: v
        for v in VENDORS
        if os.path.isdir(os.path.join(root, "vendors", VENDORS[v][0], "dispatch"))
    }
    if stamp is not None and stamp[0] not in available:
        raise ToolError(
            f"{path} is compiled for {stamp[0]} {stamp[1]}; this machine has the NPU runtime of "
            f"{', '.join(available) or 'no vendor'} only: run it on that device "
            "(--adb --accelerator npu) or compile for intel_openvino"
        )
    vendor = available.get(stamp[0]) if stamp else "intel_openvino"
    if vendor is None:
        raise ToolError("no NPU runtime (vendor dispatch library) is installed with ai-edge-litert")
    require_sdk(vendor)
    folder = os.path.join(root, "vendors", VENDORS[vendor][0])
    env = Environment.create(
        options=EnvironmentOptions(
            runtime_path=root,
            dispatch_library_path=os.path.join(folder, "dispatch"),
            compiler_plugin_path=os.path.join(folder, "compiler"),
        )
    )
    extra = {}
    if vendor == "intel_openvino":
        from ai_edge_litert.intel_openvino_options import IntelOpenVinoGraphBackend
        from ai_edge_litert.options import IntelOpenVinoOptions

        # The partitions' OpenVINO bytecode was compiled for its device already; a plain model
        # compiled on load goes to the CPU graph backend (no Intel NPU here).
        extra["intel_openvino_options"] = IntelOpenVinoOptions(
            graph_backend=IntelOpenVinoGraphBackend.CPU
        )
    return env, extra
