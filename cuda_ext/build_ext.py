"""Build description of ``mtml._meanshift_ext`` (imported by setup.py).

``extension_setup_kwargs()`` returns the ``ext_modules`` / ``cmdclass`` arguments for
``setuptools.setup``:

* the C++ CPU kernel (``meanshift_cpu.cpp``, OpenMP) is always built;
* the CUDA kernel (``meanshift_cuda.cu``) is added when nvcc is found and either torch is a CUDA
  build (``torch.version.cuda``) or a GPU is visible, or when ``MTML_FORCE_CUDA=1`` (with nvcc);
* ``MTML_NO_EXT=1`` builds nothing (mtml then uses its PyTorch mean-shift).

The build never fails the install: if the CUDA variant does not compile or link, the CPU-only
variant is tried; if that fails too, one warning line is printed and the package installs without
the extension (mtml warns once at the first mean-shift call and uses PyTorch).
"""

from __future__ import annotations

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXT_NAME = "mtml._meanshift_ext"
CPU_SOURCES = ["meanshift_cpu.cpp"]
CUDA_SOURCES = ["meanshift_cuda.cu"]
CXX_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off"]
NVCC_FLAGS = ["-O3", "--fmad=false"]
LINK_FLAGS = ["-fopenmp"]
# Used when TORCH_CUDA_ARCH_LIST is unset and no GPU is visible (CUDA 13 supports sm_75 and up).
DEFAULT_ARCHS = ["75", "80", "86", "89", "90"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _warn(msg: str) -> None:
    print(f"mtml: WARNING: {msg}", file=sys.stderr, flush=True)


def _source(name: str) -> str:
    """Source path relative to the project root (setuptools wants relative source paths)."""
    path = os.path.join(HERE, name)
    try:
        rel = os.path.relpath(path, os.getcwd())
    except ValueError:  # different drive (Windows)
        return path
    return path if rel.startswith("..") else rel


def find_cuda_home() -> str | None:
    """CUDA toolkit root: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, then the folder above nvcc on
    PATH. A root with bin/nvcc and include/cuda_runtime.h wins over one with only bin/nvcc (nvcc
    on PATH may be a wrapper script outside the toolkit)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    with_nvcc = [h for h in candidates if h and os.path.exists(os.path.join(h, "bin", "nvcc"))]
    for home in with_nvcc:
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return with_nvcc[0] if with_nvcc else None


def _cudart_dir(cuda_home: str) -> str:
    """The toolkit folder holding libcudart.so (lib64, lib or targets/<arch>/lib)."""
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                os.path.join("targets", "sbsa-linux", "lib")):
        path = os.path.join(cuda_home, sub)
        if os.path.exists(os.path.join(path, "libcudart.so")):
            return path
    return os.path.join(cuda_home, "lib64")


def _want_cuda(torch) -> tuple[bool, str | None]:
    cuda_home = find_cuda_home()
    if cuda_home is None:
        return False, None
    if _flag("MTML_FORCE_CUDA"):
        return True, cuda_home
    try:
        gpu = torch.cuda.is_available()
    except Exception:
        gpu = False
    return bool(torch.version.cuda or gpu), cuda_home


def _make_extensions():
    import torch
    from torch.utils import cpp_extension

    common = dict(include_dirs=[HERE], extra_link_args=list(LINK_FLAGS))
    use_cuda, cuda_home = _want_cuda(torch)
    if not use_cuda:
        ext = cpp_extension.CppExtension(
            EXT_NAME, [_source(s) for s in CPU_SOURCES], extra_compile_args=list(CXX_FLAGS), **common
        )
        return [ext]

    nvcc_flags = list(NVCC_FLAGS)
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
    try:
        n_gpus = torch.cuda.device_count()
    except Exception:
        n_gpus = 0
    if not arch_list and n_gpus == 0:
        nvcc_flags += [f"-gencode=arch=compute_{a},code=sm_{a}" for a in DEFAULT_ARCHS]
        nvcc_flags += [f"-gencode=arch=compute_{DEFAULT_ARCHS[-1]},code=compute_{DEFAULT_ARCHS[-1]}"]
    args = dict(
        extra_compile_args={"cxx": CXX_FLAGS + ["-DMTML_WITH_CUDA"], "nvcc": nvcc_flags},
        **common,
    )
    sources = [_source(s) for s in CPU_SOURCES + CUDA_SOURCES]
    if torch.version.cuda:
        ext = cpp_extension.CUDAExtension(EXT_NAME, sources, **args)
    else:
        # Forced on a CPU-only torch: torch has no CUDA libraries to link; the kernels only need
        # the CUDA runtime. Point cpp_extension at the toolkit so BuildExtension finds nvcc.
        cpp_extension.CUDA_HOME = cuda_home
        lib = _cudart_dir(cuda_home)
        ext = cpp_extension.CppExtension(
            EXT_NAME,
            sources,
            libraries=["cudart"],
            library_dirs=[lib],
            runtime_library_dirs=[lib],
            **args,
        )
    ext._mtml_cuda = True
    return [ext]


def _to_cpu_only(ext) -> None:
    """Turn the CUDA variant of the extension into the CPU-only one, in place."""
    ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
    cuda_libs = {"cudart", "c10_cuda", "torch_cuda", "cuda"}
    ext.libraries = [lib for lib in ext.libraries if lib not in cuda_libs]
    ext.library_dirs = [d for d in ext.library_dirs if "cuda" not in d.lower() or "torch" in d.lower()]
    ext.runtime_library_dirs = [d for d in ext.runtime_library_dirs if "cuda" not in d.lower()]
    args = ext.extra_compile_args
    if isinstance(args, dict):
        args["cxx"] = [f for f in args.get("cxx", []) if f != "-DMTML_WITH_CUDA"]
    ext._mtml_cuda = False


def _build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    class MtmlBuildExt(BuildExtension):
        """BuildExtension that never fails the install (see the module docstring)."""

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as err:  # raised before any extension was compiled (ABI/CUDA checks)
                _warn(f"could not build the mean-shift extension ({_one_line(err)}); "
                      "using the PyTorch mean-shift")
                self._mtml_failed = True

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
                return
            except Exception as err:
                first = err
            if getattr(ext, "_mtml_cuda", False):
                _warn(f"CUDA mean-shift kernel failed to build ({_one_line(first)}); building the CPU kernel only")
                _to_cpu_only(ext)
                try:
                    super().build_extension(ext)
                    return
                except Exception as err:
                    first = err
            _warn(f"could not build {ext.name} ({_one_line(first)}); using the PyTorch mean-shift")
            self._mtml_failed = True

        def get_outputs(self):
            # Do not report a library that failed to build (editable/wheel installs list outputs).
            outputs = super().get_outputs()
            if getattr(self, "_mtml_failed", False):
                outputs = [o for o in outputs if os.path.exists(o)]
            return outputs

        def get_output_mapping(self):
            mapping = super().get_output_mapping()
            if getattr(self, "_mtml_failed", False):
                mapping = {k: v for k, v in mapping.items() if os.path.exists(v)}
            return mapping

        def copy_extensions_to_source(self):
            if not getattr(self, "_mtml_failed", False):
                return super().copy_extensions_to_source()
            for ext in self.extensions:  # copy only what was built
                built = os.path.join(self.build_lib, self.get_ext_filename(self.get_ext_fullname(ext.name)))
                if os.path.exists(built):
                    return super().copy_extensions_to_source()
            return None

    return MtmlBuildExt


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


def extension_setup_kwargs() -> dict:
    """``setup()`` keyword arguments building ``mtml._meanshift_ext`` (empty with MTML_NO_EXT=1)."""
    if _flag("MTML_NO_EXT"):
        print("mtml: MTML_NO_EXT=1, not building the mean-shift extension", file=sys.stderr)
        return {}
    try:
        return {"ext_modules": _make_extensions(), "cmdclass": {"build_ext": _build_ext_class()}}
    except Exception as err:  # e.g. torch missing: install without the extension
        _warn(f"not building the mean-shift extension ({_one_line(err)}); using the PyTorch mean-shift")
        return {}
