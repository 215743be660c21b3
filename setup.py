"""Build hook: compiles the mean-shift extension in cuda_ext/ (CPU always, CUDA when available).

If the extension cannot be built the package still installs; mtml then falls back to its PyTorch
mean-shift and warns once at the first call.
"""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_ext"))
try:
    from build_ext import extension_setup_kwargs  # cuda_ext/build_ext.py
except Exception as err:  # torch missing at build time, or no compiler
    print(f"mtml: not building cuda_ext ({err}); the PyTorch mean-shift will be used", file=sys.stderr)

    def extension_setup_kwargs():
        return {}


setup(**extension_setup_kwargs())
