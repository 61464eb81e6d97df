"""Issue 12 "Train -> export": the run's files describe themselves (build.json,
records inside the final weights), EMA and raw weights are told apart, every
file is written atomically, and a resumed run must build what it resumes."""

import glob
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_fixtures import bn_free_model, random_array_data  # noqa: E402
from experiments import trainer  # noqa: E402
from mobilenetv4 import build_record
from mobilenetv4.cli import UserError

RUN = dict(
    batch_size=8, epochs=1, peak_learning_rate=1e-3, mixed_precision="float32", log_every_steps=1000
)


def _recorded_model(width=None):
    def model_fn(num_classes, image_size):
        model = bn_free_model(num_classes, image_size)
        return trainer.attach_build_record(
            model,
            build_record.make(
                "conv_small", build={"classes": num_classes, "width_multiplier": width}
            ),
        )

    return model_fn


def test_run_writes_build_json_and_records_in_both_weight_files(tmp_path):
    data = random_array_data(n=16, size=16)
    data.spec = "sklearn_digits"  # optional TrainingData attributes
    data.eval_crop_fraction = 1.0
    results = trainer.train(
        str(tmp_path), data=data, model_fn=_recorded_model(), ema_decay=0.9, **RUN
    )
    record = build_record.read_run(tmp_path)
    assert record["model"] == "conv_small" and record["build"]["classes"] == 4
    assert record["input_size"] == [16, 16]
    assert record["preprocessing"] == "imagenet"
    assert record["data"] == "sklearn_digits"
    assert record["eval_crop_fraction"] == 1.0
    assert record["has_ema"] is True and record["weights"] == "ema"
    final = build_record.read_h5(tmp_path / "final.weights.h5")
    raw = build_record.read_h5(tmp_path / "final_raw.weights.h5")
    assert final["weights"] == "ema" and raw["weights"] == "raw"
    assert {k: v for k, v in final.items() if k != "weights"} == {
        k: v for k, v in raw.items() if k != "weights"
    }
    assert results["weights"] == str(tmp_path / "final.weights.h5")
    assert results["raw_weights"] == str(tmp_path / "final_raw.weights.h5")
    assert json.load(open(tmp_path / "metrics.json"))["step"] == 2
    assert not glob.glob(str(tmp_path / ".tmp-*"))  # atomic writes, no leftovers

    # final.weights.h5 holds the evaluated (EMA) weights, the raw file the others
    ema_model, raw_model = bn_free_model(4, 16), bn_free_model(4, 16)
    ema_model.load_weights(str(tmp_path / "final.weights.h5"))
    raw_model.load_weights(str(tmp_path / "final_raw.weights.h5"))
    assert any(
        not np.allclose(a, b) for a, b in zip(ema_model.get_weights(), raw_model.get_weights())
    )


def test_without_ema_the_final_weights_are_raw(tmp_path):
    trainer.train(
        str(tmp_path), data=random_array_data(n=16, size=16), model_fn=_recorded_model(), **RUN
    )
    assert build_record.read_run(tmp_path)["weights"] == "raw"
    assert build_record.read_run(tmp_path)["has_ema"] is False
    assert build_record.read_h5(tmp_path / "final.weights.h5")["weights"] == "raw"
    assert not (tmp_path / "final_raw.weights.h5").exists()


def test_model_without_a_record_gets_no_build_json(tmp_path):
    trainer.train(
        str(tmp_path), data=random_array_data(n=16, size=16), model_fn=bn_free_model, **RUN
    )
    assert not (tmp_path / "build.json").exists()
    assert build_record.read_h5(tmp_path / "final.weights.h5") is None
    assert (tmp_path / "final.weights.h5").exists()


def test_resuming_with_another_build_is_refused(tmp_path):
    trainer.train(
        str(tmp_path),
        data=random_array_data(n=16, size=16),
        model_fn=_recorded_model(width=0.5),
        **RUN,
    )
    before = open(tmp_path / "build.json").read()
    with pytest.raises(UserError) as info:
        trainer.train(
            str(tmp_path),
            data=random_array_data(n=16, size=16),
            model_fn=_recorded_model(width=0.75),
            **dict(RUN, epochs=2),
        )
    line = str(info.value).splitlines()[0]  # what the CLI prints
    assert "build.json" in line and "width_multiplier" in line
    assert open(tmp_path / "build.json").read() == before


def test_mobilenetv4_model_records_what_it_built():
    model = trainer.mobilenetv4_model(
        10,
        32,
        name="conv_small",
        width_multiplier=0.25,
        attention_type="mhsa",
        padding="symmetric",
        bn_epsilon=1e-3,
    )
    record = model.build_record
    assert record["model"] == "conv_small" and record["input_size"] == [32, 32]
    assert record["build"] == {
        "classes": 10,
        "width_multiplier": 0.25,
        "attention_type": "mhsa",
        "padding": "symmetric",
        "bn_epsilon": 1e-3,
        "bn_momentum": 0.99,
    }
    assert any(l.name.endswith("pad") for l in model.submodules if hasattr(l, "name"))
    # not tracked by Keras: checkpoints of the model are unchanged by it
    assert "build_record" not in model._trackable_children()  # pylint: disable=protected-access
