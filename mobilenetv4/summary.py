"""Per-block table of a built model, in the layout of the paper's Tables 11-15.

    python -m mobilenetv4.summary conv_small
    python -m mobilenetv4.summary hybrid_medium --input_size 256 192 --format markdown

Columns: input shape, block kind, DW K1 (start DW, or "-"), DW K2 (middle DW, or the kernel of a
Conv2D / FusedIB), expanded dim, output dim, stride, then the parameters (trainable, BN gamma and
beta included) and MACs (convs, dense layers, attention matmuls) that the built layers have.
"""
import argparse
import collections
import csv
import sys

import numpy as np
import tf_keras as keras

from mobilenetv4 import costs, layers as L, registry

COLUMNS = ("input", "block", "dw_k1", "dw_k2", "expanded", "output", "stride", "params", "macs")


def _shape(shape):
  return "x".join("?" if d is None else str(d) for d in shape[1:])


def _kernel(k):
  return f"{k}x{k}" if k else "-"


def _describe(layer):
  """(block kind, DW K1, DW K2, expanded dim, stride, note) of one top-level layer."""
  if isinstance(layer, L.UniversalInvertedBottleneck):
    return (layer.kind, _kernel(layer.start_dw_kernel_size), _kernel(layer.middle_dw_kernel_size),
            layer.expanded_filters, layer.strides, "")
  if isinstance(layer, L.FusedIB):
    return ("FusedIB", "-", _kernel(layer.kernel_size), layer.expanded_filters, layer.strides, "")
  if isinstance(layer, L.MobileAttentionBlock):
    note = f"{layer.num_heads} heads x {layer.key_dim}"
    if layer.kv_strides > 1:
      note += f", K/V stride {layer.kv_strides}"
    return (layer.kind, "-", "-", "-", 1, note)
  if isinstance(layer, L.ConvBN):
    return ("Conv2D", "-", _kernel(layer.kernel_size), "-", layer.strides, "")
  if isinstance(layer, keras.layers.GlobalAveragePooling2D):
    return ("AvgPool", "-", "global", "-", 1, "")
  if isinstance(layer, keras.layers.Dense):
    return ("FC", "-", "-", "-", 1, "")
  return None


def block_rows(model, input_shape=None):
  """One dict per block (keys COLUMNS + "name", "note"), in network order.

  Shapes come from the functional graph, so a model built with a flexible input size shows "?"
  there; `input_shape` is then needed for the MAC count.
  """
  macs = collections.Counter()
  for cost in costs.layer_costs(model, input_shape):
    macs[cost.block] += cost.macs
  rows = []
  for layer in model.layers:
    described = _describe(layer)
    if described is None:
      continue
    kind, k1, k2, expanded, stride, note = described
    rows.append(dict(
        name=layer.name, input=_shape(layer.input_shape), block=kind, dw_k1=k1, dw_k2=k2,
        expanded=expanded, output=layer.output_shape[-1], stride=stride,
        params=int(sum(np.prod(w.shape) for w in layer.trainable_weights)),
        macs=macs[layer.name], note=note))
  return rows


def format_table(rows, fmt="text"):
  headers = ["Input", "Block", "DW K1", "DW K2", "Expanded", "Output", "Stride", "Params", "MACs",
             "Note"]
  body = [[r["input"], r["block"], r["dw_k1"], r["dw_k2"], str(r["expanded"]), str(r["output"]),
           str(r["stride"]), f"{r['params']:,}", f"{r['macs']:,}", r["note"]] for r in rows]
  body.append(["", "Total", "", "", "", "", "", f"{sum(r['params'] for r in rows):,}",
               f"{sum(r['macs'] for r in rows):,}", ""])
  if fmt == "markdown":
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)
  widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
  line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
  return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in body])


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m mobilenetv4.summary", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("model", help="one of: " + ", ".join(registry.list_models()))
  parser.add_argument("--input_size", type=int, nargs=2, metavar=("H", "W"),
                      help="input resolution (default: the model's training resolution)")
  parser.add_argument("--width_multiplier", type=float, default=None)
  parser.add_argument("--classes", type=int, default=1000)
  parser.add_argument("--format", choices=("text", "markdown"), default="text")
  parser.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")
  args = parser.parse_args(argv)
  try:
    arch = registry.get_architecture(args.model)
    size = tuple(args.input_size) if args.input_size else (arch.default_size,) * 2
    model = registry.create_model(args.model, input_shape=size + (3,), classes=args.classes,
                                  width_multiplier=args.width_multiplier)
  except (ValueError, TypeError) as error:
    parser.error(str(error))
  rows = block_rows(model)
  print(f"MobileNetV4 {args.model} at {size[0]}x{size[1]} (paper {arch.paper_table})")
  print(format_table(rows, args.format))
  total_params = costs.count_params(model)
  print(f"\nTrainable parameters: {total_params:,}   "
        f"MACs (conv, dense, attention matmuls): {sum(r['macs'] for r in rows) / 1e9:.4f} G")
  if args.csv:
    with open(args.csv, "w", newline="", encoding="utf-8") as f:
      writer = csv.DictWriter(f, fieldnames=("name",) + COLUMNS + ("note",))
      writer.writeheader()
      writer.writerows(rows)
    print(f"wrote {args.csv}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
