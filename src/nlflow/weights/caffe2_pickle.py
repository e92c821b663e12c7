"""Read and write Caffe2 weight pickles (video-nonlocal-net's ``.pkl`` files) without running their code.

A pickle can call any importable function while loading. These files come from the internet, so
the reader resolves only the handful of numpy globals needed to rebuild arrays and scalars and
refuses everything else before it can run. Files are Python-2 pickles of ``{"blobs": {...}}``
(or, after the original ``modify_blob_rm.py``, a flat dict); py2 byte strings decode as latin1.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path

try:  # numpy >= 2 moved the implementation to numpy._core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]


class UnsafePickleError(NlflowError):
    """The pickle asks for a Python global that a weight file never needs."""


class WeightFileError(NlflowError):
    """A weight file is missing, unreadable or not a dict of blobs."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1"):
        raise UnsafePickleError(f"pickle calls _codecs.encode with encoding {encoding!r}; only latin1 is allowed")
    return text.encode("latin-1", errors)


# (module, name) -> object. Old and new numpy module paths both point at the real functions.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED_GLOBALS[(_module, "scalar")] = _multiarray.scalar


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays/scalars and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}' from a weight pickle "
                "(only numpy arrays and scalars are allowed; the file may be malicious)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids (not a Caffe2 weight file)")


def loads_restricted(data: bytes) -> Any:
    """Unpickle ``data`` with the restricted unpickler (latin1 for py2 strings)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _blob_dict(obj: Any, source: str) -> dict[str, Any]:
    if isinstance(obj, dict) and isinstance(obj.get("blobs"), dict):
        obj = obj["blobs"]
    if not isinstance(obj, dict):
        raise WeightFileError(f"{source}: expected a dict of blobs, found {type(obj).__name__}")
    blobs: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str):
            raise WeightFileError(f"{source}: blob name {key!r} is not a string")
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise WeightFileError(f"{source}: blob {key!r} is an object array, not numbers")
        blobs[key] = value
    return blobs


def read_caffe2_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Blob name -> numpy array (or scalar) from a Caffe2 ``.pkl``; accepts ``{"blobs": ...}`` or flat."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    data = path.read_bytes()
    try:
        obj = loads_restricted(data)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except Exception as exc:  # truncated or foreign files raise many types
        raise WeightFileError(f"{path}: not a readable pickle ({exc.__class__.__name__}: {exc})") from None
    return _blob_dict(obj, str(path))


class _Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler whose output Python 2 + numpy 1.x (Caffe2's world) can read.

    Differences from the default: bytes and ASCII text are written as py2 ``str`` (BINSTRING),
    not as ``_codecs.encode`` calls / unicode, and numpy globals use their historical
    ``numpy.core`` names.
    """

    _LEGACY_NAMES = {
        id(_multiarray._reconstruct): b"numpy.core.multiarray\n_reconstruct\n",
        id(_multiarray.scalar): b"numpy.core.multiarray\nscalar\n",
    }

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        # Not memoised: temporaries (encoded names) would recycle ids within one dump.

    def save_str(self, obj: str) -> None:
        # py2 names and dtype codes are byte strings; only non-ASCII text stays unicode.
        if obj.isascii():
            self.save_bytes(obj.encode("ascii"))
        else:
            super().save_str(obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        legacy = self._LEGACY_NAMES.get(id(obj))
        if legacy is None:
            super().save_global(obj, name)
            return
        self.write(pickle.GLOBAL + legacy)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def dumps_py2(obj: Any, protocol: int = 2) -> bytes:
    buffer = io.BytesIO()
    _Py2StylePickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def write_caffe2_pickle(path: str | os.PathLike, blobs: Mapping[str, Any], protocol: int = 2) -> Path:
    """Write ``{"blobs": blobs}`` like Caffe2 did (protocol 2, py2-readable), atomically."""
    if protocol > 2:
        data = pickle.dumps({"blobs": dict(blobs)}, protocol=protocol)
    else:
        data = dumps_py2({"blobs": {str(k): _as_numpy(v) for k, v in blobs.items()}}, protocol=protocol)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _as_numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    return value
