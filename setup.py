"""mobilenetv4: MobileNetV4 (Qin et al., 2024) for TensorFlow / tf_keras.

`pip install -e .` installs every runtime dependency. `pip install -e .[dev]` adds the test tools and
the `npu` extra (Intel's OpenVINO plugin for LiteRT's NPU path).
"""

from setuptools import find_packages, setup

NPU = ["ai-edge-litert-sdk-intel~=2.3.0", "openvino>=2025.1"]

setup(
    name="mobilenetv4",
    version="0.1.0",
    description="MobileNetV4 models, training, distillation, TFLite export and benchmarks in tf_keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["mobilenetv4*", "experiments*", "tflite*"]),
    package_data={"": ["*.gin", "*.csv"], "mobilenetv4": ["architectures.md"]},
    install_requires=[
        # Model Garden 2.20 pins tensorflow~=2.20.0; tf-keras must match TF's minor version.
        "tensorflow~=2.20.0",
        "tf-keras~=2.20.0",
        "tf-models-official~=2.20.0",
        "tensorflow-datasets>=4.9",
        "gin-config>=0.5",
        "absl-py>=1.0",
        "ai-edge-litert>=2.3",  # CompiledModel with GPU/NPU accelerators, AOT compilation
        "safetensors>=0.4",
        "numpy>=1.26",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "threadpoolctl>=3",  # one BLAS thread for the stand-in statistics (tflite.models)
        "matplotlib>=3.7",
        "pillow>=10",
    ],
    extras_require={
        # Intel's OpenVINO plugin for LiteRT's NPU path (AOT compile + dispatch), offline from PyPI.
        "npu": NPU,
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2",
            "pytest-xdist>=3",
            "ruff==0.17.5",
            *NPU,
        ],
    },
)
