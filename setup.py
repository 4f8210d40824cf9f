"""Build script.

Everything declarative lives in pyproject.toml; this file exists for the optional
compiled extension, the Cython backend in fastrnn/_cython/.

The extension is built when Cython >= 3 is importable at build time (with NumPy and
SciPy, whose BLAS it calls through scipy.linalg.cython_blas) and a C compiler works.
Otherwise the install still succeeds, with one warning, and fastrnn runs on its Numba
backend. Environment switches:

FASTRNN_REQUIRE_EXT=1    a failed or impossible build is an error (for CI and wheels)
FASTRNN_NO_EXT=1         do not build the extension at all (a pure-Python install)
FASTRNN_CYTHON_DEBUG=1   bounds and initialisation checks on, -O0 -g: for debugging

The kernels (rnn.pyx, stack.pyx) are compiled for the baseline of the platform, so that
a wheel runs on any CPU, and on x86-64 a second time with AVX2 and FMA as ``rnn_avx2``
and ``stack_avx2``, which fastrnn._cython.kernels imports instead when the CPU has both:
the elementwise loops (tanh, exp, the small matrix products) run twice as wide, with
the same bits as the baseline build. ``stack_avx2`` also has the parallel passes of
large float32 LSTM and GRU stacks (``_parallel.h``: their own packed products, by fused
multiply-adds, on POSIX threads), which round their products differently. ``_blas``
(the BLAS calls) and ``_cells`` (the table of a stack's arrays) do no arithmetic of
their own and are built once; the .pxd files (_loops, _vecmath, _gated, _recurrence,
_parallel) hold inline functions, compiled into each module that uses them.

Development build: ``python setup.py build_ext --inplace`` puts the compiled modules
beside their sources, where the editable install finds them. The generated C goes to
build/, never into the package.
"""
import os
import platform
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PACKAGE = Path("fastrnn", "_cython")
# module: (source, extra flags for gcc and clang); a module with flags is an optional
# variant for newer CPUs, built with gcc or clang on x86-64.
MODULES = {"_blas": ("_blas.pyx", []), "_cells": ("_cells.pyx", []), "rnn": ("rnn.pyx", []),
           "stack": ("stack.pyx", [])}
if platform.machine().lower() in ("x86_64", "amd64") and os.name == "posix":
    MODULES["rnn_avx2"] = ("rnn.pyx", ["-mavx2", "-mfma"])
    MODULES["stack_avx2"] = ("stack.pyx", ["-mavx2", "-mfma"])


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


REQUIRE = _flag("FASTRNN_REQUIRE_EXT")
DEBUG = _flag("FASTRNN_CYTHON_DEBUG")
# Set once for the whole build. Bounds checks only in a debug build: the public wrappers
# validate every array before a kernel sees it.
DIRECTIVES = dict(language_level=3, boundscheck=DEBUG, wraparound=False, cdivision=True,
                  initializedcheck=DEBUG)
# Value-preserving flags only, as the Numba backend has no fastmath where gradients are
# computed. -ffp-contract=off: no fused multiply-adds, so that every operation rounds as
# written, as in the Numba kernels, and the AVX2 build gives the bits of the baseline
# one. -fno-trapping-math (LLVM's default) lets GCC turn the clamps of tanh and exp into
# selects, so that their loops vectorise; -fno-thread-jumps stops it from duplicating
# the code after a clamp once per side, which tripled the work of the vectorised exp.
# -g0: the wheel carries no debug information (Python's own CFLAGS ask for -g).
UNIX_FLAGS = ["-O0", "-g"] if DEBUG else ["-O3", "-g0"]
UNIX_FLAGS += ["-ffp-contract=off", "-fno-trapping-math", "-fno-thread-jumps"]

# Commands that compile; the others (egg_info, dist_info, sdist: pip runs them first, in
# another process) stay silent about a missing extension.
BUILDING = any(cmd in sys.argv for cmd in ("build", "build_ext", "bdist_wheel", "install",
                                           "develop", "editable_wheel"))


def _skip(reason: str) -> None:
    """Say once, on stderr, that the extension is not built; or fail if it must be."""
    if not BUILDING:
        return
    if REQUIRE:
        sys.exit(f"fastrnn: FASTRNN_REQUIRE_EXT=1 but the Cython extension cannot be "
                 f"built: {reason}")
    if len(reason) > 300:               # a compiler's command line
        reason = reason[:300] + " ..."
    if not _skip.said:
        _skip.said = True
        print(f"WARNING: fastrnn: installing without the optional Cython backend "
              f"({reason}); fastrnn will run on Numba.", file=sys.stderr)


_skip.said = False


def extensions() -> list:
    """The Cython extensions, or [] (after the warning) when they cannot be built."""
    if _flag("FASTRNN_NO_EXT"):
        if REQUIRE:
            _skip("FASTRNN_NO_EXT=1 is set too")
        return []
    try:
        import numpy
        from Cython import __version__ as cython_version
    except ImportError as exc:
        _skip(f"{exc.name} is not installed")
        return []
    if int(cython_version.split(".")[0]) < 3:
        _skip(f"it needs Cython >= 3, found {cython_version}")
        return []
    headers = [str(p) for p in sorted(PACKAGE.glob("*.pxd")) + sorted(PACKAGE.glob("*.h"))]
    modules = []
    for name, (source, flags) in MODULES.items():
        ext = Extension(f"fastrnn._cython.{name}", [str(PACKAGE / source)], depends=headers,
                        include_dirs=[numpy.get_include(), str(PACKAGE)],
                        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")])
        # Read by Cython's build_ext, which setuptools' build_ext is when Cython is
        # installed: the .pyx is translated at build time, into build/.
        ext.cython_directives = DIRECTIVES
        ext.cython_c_in_temp = True
        ext.unix_flags = flags
        modules.append(ext)
    return modules


class OptionalBuildExt(build_ext):
    """build_ext that skips the extension, with one warning, when it cannot be built."""

    def build_extensions(self):
        if self.compiler.compiler_type == "unix":       # gcc and clang
            flags = [flag for flag in UNIX_FLAGS if self._accepts(flag)]
            for ext in self.extensions:
                ext.extra_compile_args = list(ext.extra_compile_args) + flags + \
                    ext.unix_flags + ["-pthread"]
                ext.extra_link_args = list(ext.extra_link_args) + ["-pthread"]
        super().build_extensions()

    def _accepts(self, flag: str) -> bool:
        """Whether the C compiler takes ``flag`` (clang, say, has no -fno-thread-jumps)."""
        with tempfile.TemporaryDirectory() as folder:
            source = os.path.join(folder, "flag.c")
            with open(source, "w") as f:
                f.write("int main(void) { return 0; }\n")
            try:
                self.compiler.compile([source], output_dir=folder,
                                      extra_postargs=[flag, "-Werror"])
            except Exception:
                return False
        return True

    def run(self):
        try:
            super().run()
        except Exception as exc:        # no compiler at all (PlatformError and the like)
            _skip(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext):
        if _skip.said:                  # a module failed: the backend is incomplete anyway
            return
        # rnn and rnn_avx2 (stack and stack_avx2) are translated from one .pyx: each
        # gets its own temporary folder for the generated C and the object files.
        temp = self.build_temp
        self.build_temp = os.path.join(temp, ext.name.rpartition(".")[2])
        try:
            super().build_extension(ext)
        except Exception as exc:        # Cython's or the C compiler's errors
            if not ext.unix_flags:
                _skip(f"{type(exc).__name__} building {ext.name}: {exc}")
            else:                       # a variant: the baseline kernels serve alone
                self.failed_variants.append(ext)
                print(f"WARNING: fastrnn: {ext.name} not built ({type(exc).__name__}); "
                      f"the baseline Cython kernels serve every CPU.", file=sys.stderr)
        finally:
            self.build_temp = temp

    def initialize_options(self):
        super().initialize_options()
        self.failed_variants = []

    def copy_extensions_to_source(self):
        """For --inplace: copy what was built, leaving out a variant that failed."""
        every = self.extensions
        self.extensions = [ext for ext in every if ext not in self.failed_variants]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = every


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
