"""Fastest-core detection and pinning (Appendix B: "set the CPU affinity to the fastest core").

The fastest core is the one with the highest `cpuinfo_max_freq` (big.LITTLE phones expose it per
core). Containers and VMs often hide cpufreq; then all cores are taken as equally fast and the one
other processes used least over a short /proc/stat sample is chosen (on a shared machine that is
the core the benchmark will be disturbed on least); the reason string says which rule applied.
"""

import dataclasses
import glob
import os
import re
import time

from tflite import ToolError

SYSFS_CPU = "/sys/devices/system/cpu"


@dataclasses.dataclass(frozen=True)
class CoreChoice:
    core: int
    max_freq_khz: int | None  # None when cpufreq is not exposed
    reason: str

    @property
    def mask(self) -> str:
        """Hex affinity mask for `taskset` (Android toybox takes hex)."""
        return format(1 << self.core, "x")


def read_max_freqs(sysfs_root: str = SYSFS_CPU) -> dict[int, int]:
    """{core index: cpuinfo_max_freq in kHz} for every core that exposes it."""
    freqs = {}
    for path in glob.glob(os.path.join(sysfs_root, "cpu[0-9]*", "cpufreq", "cpuinfo_max_freq")):
        m = re.search(r"cpu(\d+)", os.path.relpath(path, sysfs_root))
        try:
            with open(path) as f:
                freqs[int(m.group(1))] = int(f.read().strip())
        except (OSError, ValueError):
            continue
    return freqs


def idle_fractions(seconds: float = 0.25, stat_path: str = "/proc/stat") -> dict[int, float]:
    """{core: fraction of the sample it spent idle}; empty when /proc/stat is unreadable."""

    def sample():
        out = {}
        try:
            with open(stat_path) as f:
                for line in f:
                    m = re.match(r"cpu(\d+)\s+(.*)", line)
                    if m:
                        v = [int(x) for x in m.group(2).split()]
                        out[int(m.group(1))] = (v[3] + (v[4] if len(v) > 4 else 0), sum(v))
        except OSError:
            pass
        return out

    a = sample()
    time.sleep(seconds)
    b = sample()
    return {c: (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1]) for c in a if c in b}


def choose_fastest(
    freqs: dict[int, int], allowed: set[int], idle: dict[int, float] | None = None
) -> CoreChoice:
    """Highest max frequency among allowed cores; ties go to the highest index (big cores sit last
    on Arm SoCs). Without frequencies: the most idle core when `idle` is given, else the lowest."""
    if not allowed:
        raise ToolError("no CPU core is available to this process (empty affinity set)")
    known = {c: f for c, f in freqs.items() if c in allowed}
    if known:
        best = max(known.values())
        core = max(c for c, f in known.items() if f == best)
        ties = sorted(c for c, f in known.items() if f == best)
        why = f"cpu{core} has the highest cpuinfo_max_freq ({best / 1e6:.2f} GHz)" + (
            f"; tied with cpu{','.join(map(str, ties))}" if len(ties) > 1 else ""
        )
        return CoreChoice(core, best, why)
    idle = {c: f for c, f in (idle or {}).items() if c in allowed}
    if idle:
        core = max(sorted(idle), key=lambda c: idle[c])
        return CoreChoice(
            core,
            None,
            f"cpufreq is not exposed here (container/VM), so cores are taken as "
            f"equally fast; cpu{core} was the most idle ({100 * idle[core]:.0f}% idle)",
        )
    core = min(allowed)
    return CoreChoice(
        core,
        None,
        f"cpufreq is not exposed here (container/VM), cores assumed equal; "
        f"using cpu{core}, the lowest-numbered core allowed to this process",
    )


def fastest_core(sysfs_root: str = SYSFS_CPU) -> CoreChoice:
    freqs = read_max_freqs(sysfs_root)
    return choose_fastest(freqs, set(os.sched_getaffinity(0)), None if freqs else idle_fractions())


def pin_to_core(core: int) -> None:
    """Pins the calling process (and the threads it starts later) to one core."""
    allowed = os.sched_getaffinity(0)
    if core not in allowed:
        raise ToolError(
            f"cannot pin to cpu{core}: this process may only use cores {sorted(allowed)}"
        )
    os.sched_setaffinity(0, {core})
