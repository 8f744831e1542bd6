"""Packaging for npgen: numpy, scipy and matplotlib at run time; extras for tests, a GPU, benchmarks."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="npgen",
    version="0.1.0",
    description="A minimal, readable NumPy library for generative models (VAE, GAN, Real NVP) with a CuPy backend",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["npgen", "npgen.*"]),
    package_data={"npgen": ["mnist/*.gz", "mnist/MD5SUMS.uncompressed"]},
    python_requires=">=3.9",
    install_requires=["numpy>=1.24", "scipy>=1.10", "matplotlib>=3.6", "tqdm>=4.60", "threadpoolctl>=3"],
    extras_require={
        "test": ["pytest>=7", "ruff==0.17.6", "hypothesis>=6"],
        "gpu": ["cupy-cuda12x[ctk]>=14"],  # ctk: the CUDA libraries cupy loads at run time (cuRAND, cuBLAS, NVRTC…)
        # the benchmark's reference rows (PyTorch versions of the models, the numpy peers HIPS autograd and
        # DeZero) and its BLAS report; npgen never imports them
        "bench": ["torch>=2.0", "threadpoolctl>=3", "autograd>=1.6", "dezero"],
    },
    license="MIT",
)
