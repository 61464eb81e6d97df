"""`nas_model`: a searched architecture as the trainer's model_fn (stand-alone training).

    python -m experiments.train --gin_file=gin_configs/nas_train_found.gin \
        --gin_param="nas_model.architecture = '/tmp/nas_quickstart/architecture.json'" \
        --model_dir=/tmp/nas_found
"""

import gin

from experiments import trainer as trainer_lib
from experiments.nas import read_json
from mobilenetv4 import build_record, builder, search_space


def load_architecture(path):
    """The `specs.Architecture` in a search's architecture.json (or a bare architecture dict).

    Args:
      path: JSON file written by experiments.nas.search (or architecture_to_dict's output).
    """
    data = read_json(path, "architecture")
    if isinstance(data, dict) and isinstance(data.get("architecture"), dict):
        data = data["architecture"]
    return search_space.architecture_from_dict(data)


@gin.configurable(denylist=["check_only"])
def nas_model(num_classes, image_size, architecture=gin.REQUIRED, dropout=None, check_only=False):
    """The classifier of a searched architecture, with its build record attached.

    Args:
      num_classes: classifier outputs.
      image_size: square input resolution.
      architecture: path of a search's architecture.json.
      dropout: classifier dropout (None: the architecture's).
      check_only: validate and build nothing.
    """
    arch = load_architecture(architecture)
    if check_only:
        return None
    model = builder.build_model(
        arch, input_shape=(image_size, image_size, 3), classes=num_classes, dropout=dropout
    )
    record = build_record.make(
        None,
        architecture=search_space.architecture_to_dict(arch),
        build={"classes": int(num_classes)},
        input_size=[image_size, image_size],
    )
    return trainer_lib.attach_build_record(model, record)
