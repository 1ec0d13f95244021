"""Load the pickles face datasets ship in without letting them run code.

A pickle is a program: ``GLOBAL os system`` + ``REDUCE`` runs a shell command on load. The
verification bins (``lfw.bin`` ...) and Arcface-Paddle's per-image bins only hold lists, tuples,
bytes/str and bools, which the unpickler builds without looking up any global; the few globals
allowed here are the ones other honest writers use for the same data (Python 3 protocol-2 bytes
go through ``_codecs.encode``; numpy bool arrays or scalars for the pair labels). Anything else
raises DataError before it is imported, let alone called.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from facescale.errors import DataError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` limited to the latin-1 round trip Python 3 uses to pickle bytes at protocol 2."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return _codecs.encode(text, "latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = _scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy array subtype {subtype!r} is not allowed")
    if np.dtype(dtype).hasobject:
        raise pickle.UnpicklingError("numpy object arrays are not allowed")
    return np.ndarray.__new__(subtype, shape, dtype)


def _scalar(dtype: np.dtype, data: bytes) -> Any:
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object scalars are not allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    **_numpy_globals(),
}


# Headroom for a legitimate allocation beyond the pickle's own size (an empty array's header).
_SIZE_SLACK = 1 << 16


class _TooLarge(pickle.UnpicklingError):
    """A constructor call that would allocate more than the pickle could ever fill."""


def _size_capped(func: Any, cap: int) -> Any:
    """``func`` (bytes, bytearray or numpy's ``_reconstruct``) refusing to allocate more than ``cap`` bytes.

    Every byte an honest pickle holds is in the pickle itself, so an object larger than the file
    can only come from a size argument: ``bytearray(10**11)`` is a 31-byte pickle that asks for
    100 GB. Such a request is refused before anything is allocated.
    """

    def capped(*args: Any) -> Any:
        size = 0
        if func is _reconstruct and len(args) == 3:
            shape = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
            size = int(np.prod([int(n) for n in shape], dtype=object)) * np.dtype(args[2]).itemsize
        elif args and isinstance(args[0], int) and not isinstance(args[0], bool):
            size = args[0]
        if size > cap:
            raise _TooLarge(
                f"{func.__name__} of {size:,} bytes is more than the pickle's own size allows ({cap:,} bytes)"
            )
        return func(*args)

    return capped


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``ALLOWED_GLOBALS``, with allocations capped.

    ``max_bytes`` bounds what one constructor call may allocate (default: the pickle's size plus
    a little slack), so a tiny pickle cannot exhaust memory.
    """

    def __init__(
        self, file: io.BufferedIOBase | io.BytesIO, where: str, encoding: str, max_bytes: int | None = None
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.where = where
        self.max_bytes = max_bytes if max_bytes is not None else _SIZE_SLACK

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles name the builtins module "__builtin__"; map it as pickle itself does.
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            found = ALLOWED_GLOBALS[(module, name)]
            if found in (bytes, bytearray, _reconstruct):
                return _size_capped(found, self.max_bytes)
            return found
        except KeyError:
            raise DataError(
                f"{self.where}: the pickle asks for {module}.{name}, which a face dataset never holds; "
                "refusing to load it (a pickle can run code)"
            ) from None


def _reject_object_arrays(value: Any, where: str) -> None:
    """Object arrays get their dtype after construction (BUILD), so they are caught afterwards."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise DataError(f"{where}: pickled numpy object arrays are not allowed")
        if isinstance(item, (list, tuple)):
            stack.extend(x for x in item if isinstance(x, (list, tuple, dict, np.ndarray)))
        elif isinstance(item, dict):
            stack.extend(item.values())


def safe_loads(data: bytes, where: str, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` allowing only plain containers, bytes/str, numbers, bools and numpy arrays.

    ``encoding="bytes"`` keeps Python 2 ``str`` items (the encoded images of the published
    bins) as ``bytes``. Raises DataError naming ``where`` for anything else or a damaged pickle.
    """
    try:
        value = RestrictedUnpickler(io.BytesIO(data), where, encoding, len(data) + _SIZE_SLACK).load()
    except DataError:
        raise
    except _TooLarge as e:
        raise DataError(f"{where}: refusing a {len(data)}-byte pickle: {e}") from None
    except MemoryError:
        raise DataError(f"{where}: the {len(data)}-byte pickle needs more memory than is available") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{where}: not a valid pickle ({type(e).__name__}: {e})") from None
    _reject_object_arrays(value, where)
    return value


def safe_load_file(path: str | Path, encoding: str = "bytes") -> Any:
    """``safe_loads`` of a whole file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return safe_loads(data, str(path), encoding)
