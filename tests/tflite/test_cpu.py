import os

import pytest

from tflite import ToolError, cpu


def make_sysfs(root, freqs):
    for core, freq in freqs.items():
        d = root / f"cpu{core}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text(f"{freq}\n")
    (root / "cpufreq").mkdir()  # sibling entries that are not cores must be ignored
    return str(root)


def test_fastest_core_is_highest_max_freq(tmp_path):
    # Pixel 6: 4 little, 2 medium, 2 big cores; ties go to the highest index.
    root = make_sysfs(
        tmp_path,
        {
            0: 1803000,
            1: 1803000,
            2: 1803000,
            3: 1803000,
            4: 2253000,
            5: 2253000,
            6: 2802000,
            7: 2802000,
        },
    )
    freqs = cpu.read_max_freqs(root)
    assert freqs[6] == 2802000 and len(freqs) == 8
    choice = cpu.choose_fastest(freqs, allowed=set(range(8)))
    assert (choice.core, choice.mask) == (7, "80")
    assert "2.80 GHz" in choice.reason


def test_fastest_core_respects_affinity(tmp_path):
    freqs = cpu.read_max_freqs(make_sysfs(tmp_path, {0: 1000, 1: 3000, 2: 2000}))
    assert cpu.choose_fastest(freqs, allowed={0, 2}).core == 2


def test_fallback_without_cpufreq(tmp_path):
    assert cpu.read_max_freqs(str(tmp_path)) == {}
    choice = cpu.choose_fastest({}, allowed={1, 3})
    assert choice.core == 1 and "cpufreq is not exposed" in choice.reason
    choice = cpu.choose_fastest({}, allowed={1, 3}, idle={1: 0.2, 3: 0.9})
    assert choice.core == 3 and "most idle" in choice.reason


def test_idle_fractions_parse_proc_stat():
    idle = cpu.idle_fractions(0.05)
    assert set(idle) >= set(os.sched_getaffinity(0)) and all(0.0 <= v <= 1.0 for v in idle.values())


def test_pin_rejects_core_outside_affinity():
    with pytest.raises(ToolError, match="may only use cores"):
        cpu.pin_to_core(max(os.sched_getaffinity(0)) + 1000)
    with pytest.raises(ToolError, match="no CPU core"):
        cpu.choose_fastest({}, allowed=set())


def test_core_flag_takes_fastest_none_or_an_index(capsys):
    from tflite import benchmark

    assert benchmark.parse_args(["m.tflite", "--core", "3"]).core == 3
    assert benchmark.parse_args(["m.tflite", "--core", "none"]).core == "none"
    assert benchmark.parse_args(["m.tflite"]).core == "fastest"
    for bad in ("big", "1.5", "-1"):
        with pytest.raises(SystemExit) as e:
            benchmark.parse_args(["m.tflite", "--core", bad])
        err = capsys.readouterr().err
        assert (
            e.value.code == 2 and err.startswith("error: argument --core") and err.count("\n") == 1
        )
