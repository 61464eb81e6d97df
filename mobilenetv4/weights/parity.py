"""Check imported weights against timm: max |logits_keras - logits_timm| per fixture case.

    python -m mobilenetv4.weights.parity tests/weights/fixtures     # the committed small cases
    python -m mobilenetv4.weights.parity /tmp/mnv4_full              # after make_timm_fixtures --full
    python -m mobilenetv4.weights.parity tests/weights/fixtures --cases conv_small_w0125,conv_large_w00625

A case (written by scripts/make_timm_fixtures.py) holds a timm checkpoint, inputs and timm's
logits for them; this builds our model for it, loads the checkpoint and compares. Exit code 0 when
every case is within --tolerance, 1 when one is not, 2 for a user error (one `error:` line).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Dict, List

import numpy as np

from mobilenetv4 import cli

DEFAULT_TOLERANCE = 1e-4  # max |logits_keras - logits_timm| in float32


def list_cases(directory: str) -> List[str]:
    return sorted(
        os.path.splitext(os.path.basename(p))[0]
        for p in glob.glob(os.path.join(directory, "*.json"))
    )


def _meta(directory: str, case: str) -> dict:
    path = os.path.join(directory, case + ".json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise cli.UserError(
            f"no fixture case {case!r} in {directory} ({path} does not exist); "
            f"cases there: {', '.join(list_cases(directory)) or 'none'}"
        ) from None
    except (OSError, ValueError) as e:
        raise cli.UserError(f"{path} is not a readable fixture case: {e}") from None
    missing = {"model", "width_multiplier", "classes", "sizes"} - set(meta)
    if missing:
        raise cli.UserError(
            f"{path} lacks {', '.join(sorted(missing))}; re-create it with "
            "scripts/make_timm_fixtures.py"
        )
    return meta


def case_model(directory: str, case: str) -> str:
    return _meta(directory, case)["model"]


def _arrays(path: str, count: int):
    """[(input, timm logits)] of a case's .npz, read without pickles (a fixture never runs code)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return [
                (arrays[f"input_{i}"].astype(np.float32), arrays[f"logits_{i}"])
                for i in range(count)
            ]
    except (OSError, KeyError, ValueError) as e:
        raise cli.UserError(
            f"{path} is not a usable fixture (arrays input_i / logits_i without "
            f"pickles): {' '.join(str(e).split())}"
        ) from None


def check_case(directory: str, case: str) -> Dict[str, object]:
    """Builds the case's model, loads its checkpoint, returns the max |diff| per input size."""
    import mobilenetv4

    base = os.path.join(directory, case)
    meta = _meta(directory, case)
    model = mobilenetv4.create_model(
        meta["model"],
        weights=base + ".safetensors",
        width_multiplier=meta["width_multiplier"],
        classes=meta["classes"],
        input_shape=(None, None, 3),
    )
    diffs, scales, sizes = [], [], []
    for x, expected in _arrays(base + ".npz", len(meta["sizes"])):
        got = model(x, training=False).numpy()
        diffs.append(float(np.abs(got - expected).max()))
        scales.append(float(np.abs(expected).max()))
        sizes.append("x".join(map(str, x.shape[1:3])))
    return {
        "case": case,
        "model": meta["model"],
        "width": meta["width_multiplier"],
        "classes": meta["classes"],
        "sizes": sizes,
        "max_abs_diff": diffs,
        "max_abs_logit": scales,
    }


def main(argv=None):
    """Prints a Markdown table of the differences; 1 if any exceeds --tolerance."""
    parser = cli.ArgumentParser(
        "python -m mobilenetv4.weights.parity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("directory", help="folder of fixture cases (*.json/.npz/.safetensors)")
    parser.add_argument(
        "--cases",
        type=cli.comma_list,
        default=None,
        help="only these cases, comma-separated (default: every case)",
    )
    cli.add_number_flag(
        parser,
        "--tolerance",
        DEFAULT_TOLERANCE,
        "largest accepted max |diff|",
        type=cli.positive_float,
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        raise cli.UserError(f"{args.directory} is not a directory of fixture cases")
    cases = args.cases or list_cases(args.directory)
    if not cases:
        raise cli.UserError(f"no fixture cases (*.json) in {args.directory}")
    for case in cases:  # every case readable before TensorFlow loads
        _meta(args.directory, case)
    print("| case | model | width | classes | input (HxW) | max abs logit | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for n, case in enumerate(cases, 1):
        start = time.time()
        r = check_case(args.directory, case)
        for size, scale, diff in zip(r["sizes"], r["max_abs_logit"], r["max_abs_diff"]):
            print(
                f"| {case} | {r['model']} | {r['width']} | {r['classes']} | {size} | {scale:.2f} "
                f"| {diff:.2e} |",
                flush=True,
            )
            worst = max(worst, diff)
        print(f"[{n}/{len(cases)}] {case} checked in {time.time() - start:.1f}s", file=sys.stderr)
    print(f"\nworst max |logits_keras - logits_timm|: {worst:.2e} (float32, batch of 2 per size)")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    cli.run(main)
