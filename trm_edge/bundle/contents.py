"""A bundle's data files parsed without trusting them: each is what its extension says, or one BundleError.

The bytes come from :mod:`trm_edge.bundle.files` (verified against the manifest by the store). Nothing is ever
unpickled: ``.npy`` headers are read by numpy's format module and object dtypes refused, ``.npz`` is read with
``allow_pickle=False``, and the identifiers file must have the shape docs/bundle-format.md gives it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from trm_edge import safe_json
from trm_edge.bundle.files import Contents
from trm_edge.errors import BundleError

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def puzzle_table(data: Contents, *, where: str, dim: int) -> np.ndarray:
    """The ``.npy`` puzzle-embedding table ``[rows, dim]`` (float32 or float16) as a read-only view of ``data``."""
    try:
        header = io.BytesIO(memoryview(data)[:65536 + 16].tobytes())
        version = np.lib.format.read_magic(header)
        read_header = _HEADER_READERS.get(version)
        if read_header is None:
            raise ValueError(f".npy format version {version} (this reader knows 1.0 and 2.0)")
        shape, fortran, dtype = read_header(header)
    except Exception as error:  # numpy parses the header with ast.literal_eval: tokenize, syntax, value errors...
        raise BundleError(f"{where} is not a .npy array ({' '.join(str(error).split())[:200]})") from None
    if dtype not in (np.dtype("<f4"), np.dtype("<f2")) or fortran or len(shape) != 2 or shape[1] != dim:
        raise BundleError(f"{where} must be a C-order little-endian float32 or float16 array [rows, {dim}]; it is "
                          f"{dtype} {list(shape)}{' (Fortran order)' if fortran else ''}")
    offset = header.tell()
    needed = offset + shape[0] * shape[1] * dtype.itemsize
    if len(data) != needed:
        raise BundleError(f"{where} holds {len(data)} bytes where its header promises {needed}: truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, count=shape[0] * shape[1], offset=offset).reshape(shape)


def golden_arrays(data: bytes, *, where: str, keys: Any) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` golden file; the manifest's ``golden.keys`` must all be there and numeric."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # bad bytes raise many kinds in zipfile and numpy's header parser
        raise BundleError(f"{where} is not a NumPy .npz archive of arrays ({' '.join(str(error).split())[:200]})"
                          ) from None
    wanted = keys if isinstance(keys, list) and all(isinstance(k, str) for k in keys) else None
    if wanted is None:
        raise BundleError(f"{where}: the manifest's golden.keys {keys!r} is not a list of names")
    missing = [k for k in wanted if k not in arrays]
    odd = [k for k, v in arrays.items() if v.dtype.kind not in "biuf"]
    if missing or odd:
        raise BundleError(f"{where} lacks {missing[:5]} of the manifest's golden.keys" if missing
                          else f"{where}: {odd[:5]} are not numeric arrays")
    return arrays


def identifier_lists(data: bytes, *, where: str, rows: int, identifiers: int) -> dict[str, list]:
    """``{"ids": [int, ...], "names": [str or None, ...]}``, one of each per table row, ids distinct official
    identifiers (below the model's ``num_puzzle_identifiers``), names distinct."""
    try:
        found = safe_json.loads(data)
    except ValueError as error:
        raise BundleError(f"{where}: {error}") from None
    ids = found.get("ids") if isinstance(found, dict) else None
    names = found.get("names") if isinstance(found, dict) else None
    if (not isinstance(ids, list) or not isinstance(names, list) or len(ids) != rows or len(names) != rows
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < identifiers for i in ids)
            or not all(n is None or isinstance(n, str) for n in names)):
        raise BundleError(f"{where} must be {{\"ids\": [{rows} integers in [0, {identifiers})], \"names\": [{rows} "
                          "strings or null]}, one of each per row of the puzzle table")
    named = [n for n in names if n is not None]
    if len(set(ids)) != rows or len(set(named)) != len(named):
        raise BundleError(f"{where} names an identifier twice: each row of the puzzle table has its own id and name")
    return found
