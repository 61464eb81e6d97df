"""Small generated data for the distillation tests: 24 random 20x24 images, a 10-class teacher."""
import numpy as np
import pytest
import tf_keras as keras

from experiments.distill import generate as gen
from experiments.distill import sources

CLASSES = 10
SIZE = (16, 16)


def make_teacher(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.layers.Input(SIZE + (3,)),
      keras.layers.Conv2D(8, 3, activation="relu"),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(CLASSES),
  ])


@pytest.fixture(scope="session")
def source_npy(tmp_path_factory):
  path = tmp_path_factory.mktemp("src") / "images.npy"
  np.save(path, np.random.RandomState(0).randint(0, 256, (24, 20, 24, 3)).astype(np.uint8))
  return str(path)


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("teacher") / "teacher.keras")
  # Amplify the logits so probabilities are far from uniform (a weak test otherwise).
  model = make_teacher()
  dense = model.layers[-1]
  dense.set_weights([w * 20.0 for w in dense.get_weights()])
  model.save(path)
  return path


def specs(source_npy, replicas=2):
  src = lambda: sources.array_source(source_npy)
  return [gen.DistillDataset("d1", src, "randaugment", replicas),
          gen.DistillDataset("d2", src, "mixup", replicas)]


@pytest.fixture(scope="session")
def generated(tmp_path_factory, source_npy, teacher_file):
  """D1 (RandAugment) and D2 (Mixup), 3 shards each, all probabilities as float16."""
  out = str(tmp_path_factory.mktemp("gen"))
  gen.generate(datasets=specs(source_npy), teacher=teacher_file, output_dir=out,
               classes=CLASSES, image_size=SIZE, num_shards=3, batch_size=8)
  return out
