"""Building, caching and calling the shared library of a C step (:mod:`~deepprob.compiler.c_step`).

- :func:`build_library`: ``cc -O3 -march=native`` on the source, or the library of the same source from
  the cache, a folder private to the user (:func:`trusted_cache_dir`): the library's name is the hash of
  its source, which anyone can compute, so a folder someone else made first (or can write to) is refused
  and the step is built in a private folder of the process instead.
- :class:`CStep`: the library called with the tensors' pointers through ``ctypes``, every input's layout
  checked, the step's error codes raised as torch raises them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

# what a compiled step returns when it stops where torch would have raised
ERRORS = {"index": 1, "linalg": 2}


class Unsupported(Exception):
    """The graph uses an operation (or a platform) this backend does not handle: use Inductor."""


@functools.cache
def agrees_to_rounding(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Whether a compiled value ``got`` is eager torch's ``want`` to the rounding of ``want``'s precision: sums and
    matrix products may add in another order, so each element within 1e-4 (float32) or 1e-9 (float64) of the
    largest magnitude (at least 1); NaN where NaN, inf where inf."""
    if not want.numel():
        return True
    precision = 1e-4 if want.dtype == torch.float32 else 1e-9
    want, got = want.double(), got.double()
    tolerance = precision * max(1.0, float(want.abs().nan_to_num(0.0, 0.0, 0.0).max()))
    return bool(torch.isclose(got, want, rtol=0.0, atol=tolerance, equal_nan=True).all())


def c_compiler() -> str | None:
    """The C compiler to use (``CC``, else ``cc``/``gcc``), or None where this backend does not run."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-shared", "-fPIC")


def cache_dir() -> Path:
    """Where compiled steps are kept: beside Inductor's cache (its folder rule, without importing it)."""
    root = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not root:
        import getpass

        root = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    return Path(root) / "deepprob-c"


def _private(path: Path, directory: bool) -> bool:
    """``path`` is ours and no one else can change it: owned by this user, not writable by group or others,
    not a symbolic link (and a folder or a regular file, as asked)."""
    try:
        st = path.lstat()
    except OSError:
        return False
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    return kind(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def trusted_cache_dir() -> Path:
    """:func:`cache_dir`, made if missing (mode 0700), when it and the folder holding it are private to this
    user (:func:`_private`); otherwise (another user made the folder first, say, to plant a library that
    the next fit would load) a private folder of this process's, and a note on stderr."""
    folder = cache_dir()
    for path in (folder.parent, folder):
        if not path.exists():
            try:
                path.mkdir(mode=0o700)
            except OSError:
                pass
    if _private(folder.parent, True) and _private(folder, True):
        return folder
    from deepprob.progress import report_once

    report_once(f"the compile cache folder {folder} (or the one holding it) is not yours alone: compiled steps are "
                "kept in a private folder for this process instead")
    return _process_cache()


@functools.cache
def _process_cache() -> Path:
    path = Path(tempfile.mkdtemp(prefix="deepprob-c-"))  # mode 0700, this user's
    import atexit
    import shutil as _shutil

    atexit.register(_shutil.rmtree, path, True)
    return path


@functools.cache
def cpu_signature() -> str:
    """The CPU's model and instruction-set flags (Linux's /proc/cpuinfo), or '' where unreadable."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(next((line for line in lines if line.startswith(k)), "") for k in ("model name", "flags"))


def library_name(source: str, cc: str) -> str:
    """The cache's file name of the library of ``source``: its hash with the flags, compiler and CPU
    (-march=native: the library is for this CPU, so a cache folder shared between machines stays safe)."""
    key = hashlib.sha256("\n".join([source, *FLAGS, cc, cpu_signature()]).encode()).hexdigest()[:32]
    return f"step-{key}.so"


def build_library(source: str) -> Path:
    """The shared library of ``source``, from the cache or compiled now (written atomically: a run interrupted
    mid-compile leaves no library behind; one broken otherwise is found when it loads, :func:`broken_entry`)."""
    cc = c_compiler()
    if cc is None:
        raise Unsupported("no C compiler on a Linux x86-64 machine")
    folder = trusted_cache_dir()
    path = folder / library_name(source, cc)
    if path.exists() and _private(path, False):
        return path
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src = Path(tmp) / "step.c"
        src.write_text(source)
        lib = Path(tmp) / "step.so"
        result = subprocess.run([cc, *FLAGS, str(src), "-o", str(lib), "-lm", "-lmvec"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise Unsupported(f"{cc} failed: {result.stderr[-500:]}")
        os.chmod(lib, 0o755)
        os.replace(lib, path)
    return path


_BROKEN = re.compile(r"(/[^\s:'\"]+\.so)\b")


def broken_entry(err: BaseException, folders: list[Path]) -> Path | None:
    """The library in one of the cache ``folders`` that ``err`` (an ImportError or OSError from loading it) names,
    where it cannot be loaded (a 0-byte file that a compile interrupted by Ctrl-C left behind: "file too short",
    "invalid ELF header"); None where the error names none."""
    if not isinstance(err, (ImportError, OSError)):
        return None
    for match in _BROKEN.finditer(str(err)):
        path = Path(match.group(1))
        if path.exists() and any(folder.resolve() in path.resolve().parents for folder in folders):
            return path
    return None


def rebuilt_if_broken(build, folders: list[Path]):
    """``build()``; where it fails loading a broken library of the cache ``folders`` (:func:`broken_entry`), the
    file is removed, said once, and ``build()`` runs again (at most a few times)."""
    from deepprob.progress import report_once

    for _ in range(3):
        try:
            return build()
        except (ImportError, OSError) as err:
            path = broken_entry(err, folders)
            if path is None:
                raise
            reason = str(err).splitlines()[0].rsplit(": ", 1)[-1]
            report_once(f"the compile cache held a broken library, {path} ({reason}), left by an interrupted run: it "
                        "was removed and built again")
            path.unlink(missing_ok=True)
    return build()


@dataclass(frozen=True)
class Layout:
    """What a compiled step was compiled for, of one input tensor."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    @classmethod
    def of(cls, x: torch.Tensor) -> Layout:
        return cls(tuple(x.shape), tuple(x.stride()), x.dtype)

    def check(self, x, position: int) -> None:
        if not (isinstance(x, torch.Tensor) and x.shape == self.shape and x.stride() == self.stride
                and x.dtype == self.dtype and x.device.type == "cpu"):
            got = (f"shape {tuple(x.shape)}, strides {x.stride()}, {x.dtype} on {x.device}"
                   if isinstance(x, torch.Tensor) else type(x).__name__)
            raise TypeError(f"the compiled step's input {position} must have shape {self.shape}, strides "
                            f"{self.stride}, {self.dtype} on the CPU (as compiled); got {got}")


class CStep:
    """The compiled step: call it with tensors of the example inputs' sizes, strides, dtypes (and on the
    CPU): others raise ``TypeError``. Returns the graph's outputs as new tensors; raises as torch does
    (``IndexError``, ``torch.linalg.LinAlgError``), leaving the inputs as they were.

    The intermediates live in the library's static buffers: one call at a time (not thread-safe).
    """

    def __init__(self, library: Path, constants: list[torch.Tensor], outputs, layouts: list[Layout], spec,
                 checks: list[tuple[torch.Size, str, bool]]):
        self.library = library
        self._lib = ctypes.CDLL(str(library))
        self._fn = self._lib.step
        self._fn.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self._fn.restype = ctypes.c_int
        self._error = (ctypes.c_int64 * 2).in_dll(self._lib, "step_error")
        self._constants = constants  # kept alive: the library reads them
        self._outputs = outputs
        self._layouts = layouts
        self._spec = spec  # the structure of the outputs: one tensor (the common case) or nested
        self._single = spec.is_leaf()
        self._checks = checks
        self._check_info = [torch.zeros(shape, dtype=torch.int32) for shape, _, _ in checks]
        self._args = self._new_args()

    def _new_args(self):
        """The argument array: inputs (set at each call), constants, outputs (set at each call), check infos."""
        n_inputs = len(self._layouts)
        args = (ctypes.c_void_p * (n_inputs + len(self._constants) + len(self._outputs) + len(self._checks)))()
        for j, c in enumerate(self._constants):
            args[n_inputs + j] = c.data_ptr()
        self._out_at = n_inputs + len(self._constants)
        for j, info in enumerate(self._check_info):
            args[self._out_at + len(self._outputs) + j] = info.data_ptr()
        return args

    def __call__(self, *inputs: torch.Tensor):
        if len(inputs) != len(self._layouts):
            raise TypeError(f"the compiled step takes {len(self._layouts)} tensors, got {len(inputs)}")
        for i, (x, layout) in enumerate(zip(inputs, self._layouts)):
            layout.check(x, i)
            self._args[i] = x.data_ptr()
        return self._run(self._args)

    def bind(self, leading: list[torch.Tensor]):
        """The step with its first inputs fixed to ``leading`` (checked now, kept alive, read and updated in
        place at every call): a function of the other inputs, checked at every call."""
        k = len(leading)
        args = self._new_args()  # its own: the fixed inputs' pointers are set once
        for i, (x, layout) in enumerate(zip(leading, self._layouts)):
            layout.check(x, i)
            args[i] = x.data_ptr()
        rest_layouts, run, leading = self._layouts[k:], self._run, list(leading)

        def step(*rest: torch.Tensor):
            if len(rest) != len(rest_layouts):
                raise TypeError(f"the bound step takes {len(rest_layouts)} tensors, got {len(rest)}")
            for i, (x, layout) in enumerate(zip(rest, rest_layouts), start=k):
                layout.check(x, i)
                args[i] = x.data_ptr()
            return run(args)

        step.leading = leading  # kept alive while the step is
        return step

    def _run(self, args):
        results = [torch.empty(shape, dtype=dtype) for shape, dtype in self._outputs]
        for j, r in enumerate(results):
            args[self._out_at + j] = r.data_ptr()
        code = self._fn(args)
        if code:
            self._raise(code)
        return results[0] if self._single else torch.utils._pytree.tree_unflatten(results, self._spec)

    def _raise(self, code: int):
        if code == ERRORS["index"]:
            index, size = self._error[0], self._error[1]
            raise IndexError(f"index {index} is out of bounds for dimension 0 with size {size}")
        if code == ERRORS["linalg"]:
            k = self._error[0]
            _, api, is_matrix = self._checks[k]
            torch.ops.aten._linalg_check_errors(self._check_info[k], api, is_matrix=is_matrix)  # raises torch's error
        raise RuntimeError(f"the compiled step failed with code {code}")


