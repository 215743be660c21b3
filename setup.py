"""Build hook: compiles the mean-shift extension in cuda_ext/ (CPU always, CUDA when available).

If the extension cannot be built the package still installs; mtml then falls back to its PyTorch
mean-shift and warns once at the first call.
"""

import os
import sys

from setuptools import find_namespace_packages, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "cuda_ext"))
try:
    from build_ext import extension_setup_kwargs  # cuda_ext/build_ext.py
except Exception as err:  # torch missing at build time, or no compiler
    print(f"mtml: not building cuda_ext ({err}); the PyTorch mean-shift will be used", file=sys.stderr)

    def extension_setup_kwargs():
        return {}


# The top-level configs/ folder ships inside the package as mtml.configs (package data in setup.cfg), so that
# `mtml-train --config toy/toy.yaml` and `mtml-bench ... --train` work outside a checkout
# (mtml.config.packaged_configs_dir). Its sub-folders are listed as data-only packages, else setuptools warns.
CONFIG_FOLDERS = find_namespace_packages(where=os.path.join(HERE, "configs"))
CONFIG_PACKAGES = ["mtml.configs", *(f"mtml.configs.{folder}" for folder in CONFIG_FOLDERS)]
setup(packages=find_packages(include=["mtml", "mtml.*"]) + CONFIG_PACKAGES,
      package_dir={"mtml.configs": "configs"},
      **extension_setup_kwargs())
