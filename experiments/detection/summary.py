"""Parameters and MACs of a RetinaNet detector, per part (backbone / FPN / head).

    python -m experiments.detection.summary --experiment retinanet_mobilenetv4_coco
    python -m experiments.detection.summary --experiment retinanet_mobilenetv4_coco \
        --backbones conv_medium,hybrid_medium,model_garden:MobileNetV4ConvMedium --format markdown

Parameters count every weight, BN moving statistics included (the paper's Table 7 convention;
the trainable count is shown beside it); MACs are convolutions (separable ones included), dense
layers and attention matmuls, measured by `mobilenetv4.costs` on one image at the experiment's
input size. `--backbones` swaps the backbone of the experiment: one of our names, or
model_garden:MODEL_ID for Model Garden's own MobileNet backbone (for the parity check).
"""

from __future__ import annotations

import copy

from experiments.detection import flags
from mobilenetv4 import cli


def _with_backbone(params, spec: str):
    from mobilenetv4 import model_names

    ref = model_names.parse(spec, check=False)
    if ref.size:
        raise cli.UserError(
            f"give the input size with --params_override task.model.input_size, not "
            f"in the backbone name {spec!r}"
        )
    if ref.source == "model_garden":
        params.task.model.backbone.type = "mobilenet"
        params.task.model.backbone.mobilenet.model_id = ref.name
    elif ref.source == "mobilenetv4":
        from experiments.detection import backbone as backbone_lib

        backbone_lib.check_model_name(ref.name)
        params.task.model.backbone.type = "mobilenetv4"
        params.task.model.backbone.mobilenetv4.model_name = ref.name
    else:
        raise cli.UserError(f"{spec!r}: backbones are our names or model_garden:MODEL_ID")
    return params


def summarize(params, backbones=None) -> list[dict]:
    """One row per backbone: {name, input, classes, backbone/fpn/head/total: {params, trainable,
    macs}}."""
    from experiments.detection import detector

    size = detector.input_size(params)
    if not backbones:
        b = params.task.model.backbone
        backbones = [
            b.mobilenetv4.model_name
            if b.type == "mobilenetv4"
            else f"model_garden:{b.mobilenet.model_id}"
            if b.type == "mobilenet"
            else b.type
        ]
    # Counted: the network (backbone, FPN, head). The post-processing has no weights and no counted
    # MACs, so the detector is built without NMS: its eager while loops (one per class) took 95% of
    # the cost pass of a 91-class detector (171 of 178 s on a loaded machine).
    params = copy.deepcopy(params)
    params.task.model.detection_generator.apply_nms = False
    rows = []
    for spec in backbones:
        params = _with_backbone(params, spec)
        model = detector.build_model(params, size, batch_size=1)
        costs = detector.part_costs(model, size)
        rows.append(
            {
                "name": spec,
                "input": f"{size[0]}x{size[1]}",
                "classes": params.task.model.num_classes,
                **costs,
            }
        )
    return rows


def table(rows):
    from mobilenetv4.tables import Table

    t = Table(
        [
            "backbone",
            "input",
            "classes",
            "backbone params",
            "FPN params",
            "head params",
            "total params",
            "total trainable",
            "backbone GMACs",
            "FPN GMACs",
            "head GMACs",
            "total GMACs",
        ]
    )
    for r in rows:
        t.add(
            [r["name"], r["input"], r["classes"]]
            + [f"{r[p]['params']:,}" for p in ("backbone", "fpn", "head", "total")]
            + [f"{r['total']['trainable']:,}"]
            + [f"{r[p]['macs'] / 1e9:.3f}" for p in ("backbone", "fpn", "head", "total")]
        )
    return t


def main(argv=None):
    p = cli.ArgumentParser("python -m experiments.detection.summary", __doc__)
    flags.add_experiment_flags(p, default="retinanet_mobilenetv4_coco")
    p.add_argument(
        "--backbones",
        type=cli.comma_list,
        default=None,
        help="backbones to compare, e.g. conv_medium,hybrid_medium,"
        "model_garden:MobileNetV4ConvMedium (default: the experiment's)",
    )
    p.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
    cli.add_output_flags(p, help="also write the table to this file (.md / .csv / text)")
    args = p.parse_args(argv)
    from mobilenetv4 import fileio

    fileio.check_outputs([args.output], overwrite=args.overwrite)
    rows = summarize(flags.load_experiment(args), args.backbones)
    t = table(rows)
    print(t.render(args.format), end="")
    if args.output:
        t.write(args.output)
    return 0


if __name__ == "__main__":
    cli.run(main)
