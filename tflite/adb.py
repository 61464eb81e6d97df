"""Appendix B on an Android device through adb and LiteRT's `benchmark_model` binary.

Pushes the binary and the model to /data/local/tmp, pins to the fastest core with `taskset`,
runs exactly `num_runs` invocations (`--num_runs=N --min_secs=0`, large `--max_secs`) `repeats`
times, parses each run's 'Inference (avg)' (microseconds, possibly in exponent form) and reports the
median of the means. Untested on a real device: the tests replay recorded output through a fake adb.
"""

import dataclasses
import os
import re
import shlex
import shutil
import statistics
import subprocess

from mobilenetv4 import cli
from tflite import ToolError, cpu

REMOTE_DIR = "/data/local/tmp"
DELEGATE_FLAGS = {
    "cpu": ["--use_xnnpack=true"],
    # FP16 is the paper's GPU precision; the GPU delegate then computes in half precision.
    "gpu": ["--use_gpu=true", "--gpu_precision_loss_allowed=true"],
    # Older Snapdragons (Hexagon DSP delegate; its libraries pushed with --push).
    "hexagon": ["--use_hexagon=true", f"--hexagon_lib_path={REMOTE_DIR}"],
    # LiteRT's NPU path: a model AOT-compiled for the device's SoC (tflite.export --npu), run by
    # LiteRT's benchmark binary with the vendor's dispatch library (libLiteRtDispatch_*.so, pushed
    # with --push) and without CPU fallback, so a partial delegation fails instead of timing the CPU.
    "npu": [
        "--use_npu=true",
        "--use_cpu=false",
        "--require_full_delegation=true",
        f"--dispatch_library_dir={REMOTE_DIR}",
    ],
    "nnapi": ["--use_nnapi=true"],
}
_AVG = re.compile(r"Inference \(avg\):\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")
# benchmark_model's wording when a requested delegate cannot be created or applied.
_DELEGATE_FAILURE = re.compile(
    r"(Failed to (?:apply|create)[^\n]*delegate[^\n]*|[^\n]*delegate[^\n]*(?:not supported|unsupported|"
    r"is not available|could not be created|Could not)[^\n]*|[^\n]*(?:NNAPI|Hexagon|GPU)[^\n]*"
    r"(?:unsupported|not supported|unavailable)[^\n]*)",
    re.IGNORECASE,
)


def tail(output: str, lines: int = 8) -> str:
    """The last `lines` lines of a program's output on one line (errors are one line)."""
    return " | ".join(line.strip() for line in output.strip().splitlines()[-lines:] if line.strip())


def parse_inference_avg_ms(output: str) -> float:
    """The 'Inference (avg)' figure of one benchmark_model run, converted from us to ms."""
    m = _AVG.search(output)
    if not m:
        raise ToolError(
            "benchmark_model printed no 'Inference (avg)' line; its output ended with: "
            + tail(output)
        )
    return float(m.group(1)) / 1000.0


def parse_max_freqs(output: str) -> dict[int, int]:
    """Lines 'cpuN <kHz>' -> {N: kHz}."""
    freqs = {}
    for line in output.splitlines():
        m = re.match(r"\s*cpu(\d+)\s+(\d+)\s*$", line)
        if m:
            freqs[int(m.group(1))] = int(m.group(2))
    return freqs


def add_flags(parser) -> None:
    """The Android flag group (`--adb`, `--adb_path`, `--serial`, `--delegate`,
    `--benchmark_binary`, `--push`), the same in every tool that times on a device."""
    a = parser.add_argument_group("Android (--adb); untested on a real device")
    a.add_argument(
        "--adb", action="store_true", help="run on an Android device with benchmark_model"
    )
    a.add_argument("--adb_path", default="adb")
    a.add_argument("--serial", default=None)
    a.add_argument("--delegate", default="cpu", choices=list(DELEGATE_FLAGS))  # = --accelerator
    a.add_argument(
        "--benchmark_binary",
        default="benchmark_model",
        help="local path of an Android arm64 benchmark_model build to push",
    )
    a.add_argument(
        "--push",
        action=cli.CommaList,
        default=[],
        help="extra files to push, comma-separated (e.g. Hexagon libraries)",
    )


def check_flags(args, parser) -> None:
    """Device-only flags without --adb, or a host core pinned for a device run: parser errors."""
    if not args.adb and (args.delegate != "cpu" or args.serial):
        parser.error("--delegate and --serial apply to --adb runs only")
    if args.adb and args.core != "fastest":
        parser.error("--core applies to local runs; on --adb the device's fastest core is used")


def device_protocol(args) -> dict:
    """The protocol flags of a device run: on a device AdbBenchmark pins the fastest core itself."""
    protocol = cli.protocol_options(args)
    del protocol["core"]
    return protocol


def runner(args, log=print) -> "AdbBenchmark":
    """An AdbBenchmark from `add_flags`' and the protocol flags."""
    return AdbBenchmark(
        binary=args.benchmark_binary,
        adb=args.adb_path,
        serial=args.serial,
        delegate=args.delegate,
        extra_files=tuple(args.push),
        log=log,
        **device_protocol(args),
    )


@dataclasses.dataclass
class AdbBenchmark:
    binary: str  # local path of an Android benchmark_model build
    adb: str = "adb"
    serial: str | None = None
    delegate: str = "cpu"
    num_runs: int = 1000
    repeats: int = 5
    num_threads: int = 1
    warmup_runs: int = 50
    extra_flags: tuple[str, ...] = ()
    extra_files: tuple[str, ...] = ()  # e.g. Hexagon libraries, pushed next to the binary
    log: callable = print

    def __post_init__(self):
        if self.delegate not in DELEGATE_FLAGS:
            raise ToolError(
                f"unknown delegate {self.delegate!r}; choose one of {sorted(DELEGATE_FLAGS)}"
            )
        if shutil.which(self.adb) is None and not os.path.isfile(self.adb):
            raise ToolError(
                f"adb not found ({self.adb!r}); install Android platform-tools or pass --adb_path"
            )
        for path in (self.binary, *self.extra_files):
            if not os.path.isfile(path):
                raise ToolError(
                    f"no such file to push: {path} (pass --benchmark_binary with an Android "
                    "arm64 build of LiteRT's benchmark_model)"
                )

    def adb_command(self, *args: str) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def _adb(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.adb_command(*args), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ToolError(
                f"`{shlex.join(self.adb_command(*args))}` failed (exit {proc.returncode}): "
                f"{tail(proc.stderr or proc.stdout)}"
            )
        return proc

    def check_device(self) -> None:
        proc = self._adb("get-state", check=False)
        if proc.returncode != 0 or proc.stdout.strip() != "device":
            who = f"device {self.serial!r}" if self.serial else "an Android device"
            raise ToolError(
                f"adb cannot reach {who}: {tail(proc.stderr or proc.stdout)}. "
                "Check `adb devices` and pass --serial when several are attached"
            )

    def fastest_core(self) -> cpu.CoreChoice:
        script = (
            "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
            "c=${f#/sys/devices/system/cpu/}; echo ${c%%/*} $(cat $f); done"
        )
        freqs = parse_max_freqs(self._adb("shell", script).stdout)
        present = parse_present(self._adb("shell", "cat /sys/devices/system/cpu/present").stdout)
        return cpu.choose_fastest(freqs, present or set(freqs))

    def push(self, local: str) -> str:
        remote = f"{REMOTE_DIR}/{os.path.basename(local)}"
        self._adb("push", local, remote)
        return remote

    def shell_command(self, remote_binary: str, remote_model: str, core: cpu.CoreChoice) -> str:
        flags = [
            f"--graph={remote_model}",
            f"--num_runs={self.num_runs}",
            "--min_secs=0",
            "--max_secs=100000",
            f"--warmup_runs={self.warmup_runs}",
            "--warmup_min_secs=0",
            f"--num_threads={self.num_threads}",
            *DELEGATE_FLAGS[self.delegate],
            *self.extra_flags,
        ]
        return shlex.join(["taskset", core.mask, remote_binary, *flags])

    def run(self, model_path: str) -> dict:
        if not os.path.isfile(model_path):
            raise ToolError(f"no such model file: {model_path}")
        self.check_device()
        core = self.fastest_core()
        self.log(f"device core: {core.reason}; taskset mask {core.mask}")
        remote_binary = self.push(self.binary)
        self._adb("shell", f"chmod 755 {remote_binary}")
        for path in self.extra_files:
            self.push(path)
        remote_model = self.push(model_path)
        command = self.shell_command(remote_binary, remote_model, core)
        means = []
        for i in range(self.repeats):
            proc = self._adb("shell", command, check=False)
            output = proc.stdout + proc.stderr
            failure = _DELEGATE_FAILURE.search(output)
            if failure and self.delegate != "cpu":
                raise ToolError(
                    f"the {self.delegate} delegate is unavailable on the device: "
                    f"{failure.group(0).strip()}"
                )
            if proc.returncode != 0 and not _AVG.search(output):
                raise ToolError(
                    f"benchmark_model failed on the device (exit {proc.returncode}): "
                    + tail(output)
                )
            means.append(parse_inference_avg_ms(output))
            self.log(
                f"  repeat {i + 1}/{self.repeats}: mean {means[-1]:.3f} ms over {self.num_runs} runs"
            )
        return {
            "model": model_path,
            "median_ms": statistics.median(means),
            "means_ms": means,
            "core": core.core,
            "core_reason": core.reason,
            "delegate": self.delegate,
            "command": command,
            "device": self.serial,
        }


def parse_present(text: str) -> set[int]:
    """'0-3,6' -> {0, 1, 2, 3, 6} (the sysfs CPU list format)."""
    cores = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return cores
