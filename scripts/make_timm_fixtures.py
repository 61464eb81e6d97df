"""Make weight-import test fixtures from timm: random checkpoints and timm's logits for them.

Needs torch and timm (dev-only; not runtime dependencies):

    pip install torch timm==1.0.31
    python scripts/make_timm_fixtures.py --overwrite      # regenerate the committed fixtures (tests/weights/fixtures)
    python scripts/make_timm_fixtures.py --full --output_dir /tmp/mnv4_full   # full size, default resolutions

Each case is a timm MobileNetV4 built through timm's own generator `_gen_mobilenet_v4` (so a
reduced width goes through timm's channel rounding), random-initialised, with randomised BN
affine parameters, BN running statistics and layer-scale values, evaluated in float32 on random
inputs. A case is three files:

    <case>.safetensors   timm's state dict, exactly as in a hub model.safetensors
    <case>.npz           input_<i> (NHWC float32) and logits_<i> (timm's output) per input size
    <case>.json          model name, width multiplier, class count, timm/torch versions
    <model>_keys.tsv     (small mode) timm's full-size state-dict keys and shapes per model

Every file is written atomically; existing files are refused unless --overwrite. Full-size cases
run at each model's `Architecture.default_size`.

`python -m mobilenetv4.weights.parity DIR` loads every case into our Keras model and prints
max |logits_keras - logits_timm| per case.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from mobilenetv4 import cli, fileio, model_names, specs

# Our model name -> timm's anti-aliasing layer for the variants timm builds with one.
AA_LAYERS = {"conv_aa_large": "avg", "conv_blur_medium": "blurpc"}
# Our model name -> the width multiplier timm's registered function uses.
WIDTHS = {"conv_small_050": 0.5, "hybrid_medium_075": 0.75, "hybrid_large_075": 0.75}
MODELS = tuple(sorted(specs.ARCHITECTURES))  # default sizes: Architecture.default_size
NON_SQUARE = {224: (224, 288), 256: (256, 320), 384: (384, 320)}

# Committed fixtures: (case, model, width, classes, input sizes), one per distinct architecture.
# Widths are cut so the whole set stays ~2 MB (the width-named variants differ from their base only
# in the multiplier, which the full-size check covers). 80 px gives odd maps at stride 16 (5x5),
# where 2x2 average-pool anti-aliasing floors and strided convs ceil; the second size is non-square.
SMALL_CASES = [
    ("conv_small_w0125", "conv_small", 0.125, 10, [(80, 80), (96, 64)]),
    ("conv_medium_w0125", "conv_medium", 0.125, 10, [(80, 80)]),
    ("conv_large_w00625", "conv_large", 0.0625, 10, [(80, 80)]),
    ("conv_aa_large_w00625", "conv_aa_large", 0.0625, 10, [(80, 80), (112, 80)]),
    ("conv_blur_medium_w0125", "conv_blur_medium", 0.125, 10, [(80, 80), (112, 80)]),
    ("hybrid_medium_w0125", "hybrid_medium", 0.125, 10, [(80, 80), (128, 96)]),
    ("hybrid_large_w00625", "hybrid_large", 0.0625, 10, [(80, 80), (128, 96)]),
]


def full_cases(models, classes=1000):
    cases = []
    for model in models:
        size = model_names.default_resolution(model)[0]
        sizes = [(size, size)]
        if model.startswith("hybrid"):
            sizes.append(NON_SQUARE[size])
        cases.append(
            (
                f"{model}_full" + ("_in12k" if classes != 1000 else ""),
                model,
                WIDTHS.get(model, 1.0),
                classes,
                sizes,
            )
        )
    return cases


def build_timm_model(model, width, classes):
    """timm's MobileNetV4 `model` at `width`, through timm's generator (random init, eval mode)."""
    from timm.models.mobilenetv3 import _gen_mobilenet_v4

    kwargs = {"aa_layer": AA_LAYERS[model]} if model in AA_LAYERS else {}
    return _gen_mobilenet_v4(
        f"mobilenetv4_{model}", channel_multiplier=width, num_classes=classes, **kwargs
    )


def randomise(net, seed, calibration_sizes):
    """Random BN affine, layer scale and BN running statistics that keep activations O(1).

    Each BN's running statistics are set, in eval mode and in forward order, from the statistics
    of its actual input on a random batch and then perturbed (mean +- 0.2 std, variance x 0.7-1.4),
    so eval-mode BN is not the identity yet downstream layers see what they were calibrated on.
    With several input sizes the raw statistics are averaged over one pass per size."""
    import torch
    from timm.layers import LayerScale2d

    g = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        return torch.rand(t.shape, generator=g) * (hi - lo) + lo

    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, LayerScale2d):
                m.gamma.copy_(uniform(m.gamma, 0.2, 1.0))
        for bn in bns:
            bn.weight.copy_(uniform(bn.weight, 0.5, 1.5))
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.2)
        net.classifier.weight.copy_(torch.randn(net.classifier.weight.shape, generator=g) * 0.02)
        net.classifier.bias.copy_(torch.randn(net.classifier.bias.shape, generator=g) * 0.1)
        noise = {
            bn: (
                torch.randn(bn.running_mean.shape, generator=g) * 0.2,
                uniform(bn.running_var, 0.7, 1.4),
            )
            for bn in bns
        }
        raw = {bn: [] for bn in bns}

        def set_stats(bn, inputs):
            x = inputs[0]
            raw[bn].append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)))
            mean = torch.stack([r[0] for r in raw[bn]]).mean(0)
            var = torch.stack([r[1] for r in raw[bn]]).mean(0)
            shift, scale = noise[bn]
            bn.running_mean.copy_(mean + shift * var.sqrt())
            bn.running_var.copy_(var * scale)

        hooks = [bn.register_forward_pre_hook(set_stats) for bn in bns]
        net.eval()
        for size in calibration_sizes:
            net(torch.randn((8, 3) + tuple(size), generator=g))
        for h in hooks:
            h.remove()


def make_case(out_dir, case, model, width, classes, sizes, seed=0, batch=2, half=False):
    """Writes one case. `half` rounds every float weight and input to float16 first and stores them
    as float16 (half the bytes); timm still computes in float32, on exactly those values."""
    import timm
    import torch
    from safetensors.numpy import save_file

    torch.manual_seed(seed)
    net = build_timm_model(model, width, classes)
    randomise(net, seed, sizes)
    if half:
        net.half().float()
    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    if half:
        state = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in state.items()}
    meta = {
        "model": model,
        "width_multiplier": width,
        "classes": classes,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "sizes": [list(s) for s in sizes],
    }
    with fileio.atomic_path(os.path.join(out_dir, f"{case}.safetensors")) as tmp:
        save_file(state, tmp, metadata={k: json.dumps(v) for k, v in meta.items()})
    g = torch.Generator().manual_seed(seed + 1)
    arrays = {}
    with torch.no_grad():
        for i, (h, w) in enumerate(sizes):
            x = torch.randn((batch, 3, h, w), generator=g)
            if half:
                x = x.half().float()
            nhwc = x.permute(0, 2, 3, 1).numpy()
            arrays[f"input_{i}"] = nhwc.astype(np.float16) if half else nhwc
            arrays[f"logits_{i}"] = net(x).numpy()
    with fileio.atomic_path(os.path.join(out_dir, f"{case}.npz")) as tmp:
        np.savez(tmp, **arrays)
    fileio.write_json(os.path.join(out_dir, f"{case}.json"), meta, indent=1)
    return arrays


def case_outputs(out_dir, case):
    return [os.path.join(out_dir, f"{case}.{ext}") for ext in ("safetensors", "npz", "json")]


def key_listing_path(out_dir, model):
    return os.path.join(out_dir, f"{model}_keys.tsv")


def write_key_listing(out_dir, model):
    """timm's full-size state-dict keys and shapes for `model` (no weights), one "key<TAB>shape"
    per line: lets tests check every full-size variant's mapping without torch."""
    net = build_timm_model(model, WIDTHS.get(model, 1.0), 1000)
    lines = [f"{k}\t{'x'.join(map(str, v.shape))}" for k, v in net.state_dict().items()]
    fileio.write_text(key_listing_path(out_dir, model), "\n".join(lines) + "\n")


def parse_args(argv=None):
    parser = cli.ArgumentParser("python scripts/make_timm_fixtures.py", __doc__.split("\n\n")[0])
    cli.add_output_flags(
        parser,
        kind="dir",
        default=os.path.join("tests", "weights", "fixtures"),
        help="folder for the fixtures (default tests/weights/fixtures)",
    )
    parser.add_alias("--out", "--output_dir")
    parser.add_argument(
        "--full",
        action="store_true",
        help="full-size models at their default resolution (large files; not for the repo)",
    )
    parser.add_argument(
        "--in12k",
        action="store_true",
        help="with --full: 11821-class ImageNet-12k heads instead of 1000",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        type=cli.comma_list,
        default=None,
        help="only these models, comma-separated (default: all)",
    )
    args = parser.parse_args(argv)
    if args.models is not None:
        if len(args.models) > 1:
            print(
                "warning: space-separated values for --models are deprecated and will be removed in "
                f"the next release; use --models {','.join(m for ms in args.models for m in ms)}",
                file=sys.stderr,
            )
        args.models = [m for ms in args.models for m in ms]
        for model in args.models:
            specs.get(model)  # UserError naming the valid models
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise cli.UserError(
            f"this script needs torch and timm (pip install torch timm==1.0.31): {e}"
        )
    models = args.models or list(MODELS)
    if args.full:
        cases = full_cases(models, 11821 if args.in12k else 1000)
    else:
        cases = [c for c in SMALL_CASES if not args.models or c[1] in args.models]
    fileio.check_writable_dir(args.output_dir)
    outputs = [p for case in cases for p in case_outputs(args.output_dir, case[0])]
    if not args.full:
        outputs += [key_listing_path(args.output_dir, model) for model in models]
    fileio.check_outputs(outputs, overwrite=args.overwrite, flag="--output_dir")
    if not args.full:
        for model in models:
            write_key_listing(args.output_dir, model)
    for n, case in enumerate(cases, 1):
        start = time.time()
        arrays = make_case(args.output_dir, *case, half=not args.full)
        scale = max(float(np.abs(v).max()) for k, v in arrays.items() if k.startswith("logits"))
        print(
            f"[{n}/{len(cases)}] {case[0]}: sizes {case[4]}, max |logit| {scale:.2f}, "
            f"{time.time() - start:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    cli.run(main)
