"""The size a classic NetCDF file (CDF-1, CDF-2 64-bit offset, CDF-5) must have, read from its header.

A classic file that was cut short still opens: its readers fill the missing data with zeros or garbage. The header
gives each variable's shape, type and byte offset (``begin``), so the end of the last byte of data is known; the
layout follows Unidata's "NetCDF Classic and 64-bit Offset File Format" (header grammar, ``vsize`` and record
rules) and the CDF-5 extension (8-byte counts and the unsigned / 64-bit types).
"""

from __future__ import annotations

import struct
from math import prod
from pathlib import Path

MAGIC = {b"CDF\x01": 1, b"CDF\x02": 2, b"CDF\x05": 5}
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 10, 11, 12
STREAMING = 0xFFFFFFFF


class _Header:
    """A cursor over the header bytes; ``count`` is 4 bytes (8 in CDF-5), ``offset`` 4 bytes in CDF-1."""

    def __init__(self, data: bytes, version: int) -> None:
        self.data, self.pos, self.version = data, 4, version

    def int32(self) -> int:
        value = struct.unpack_from(">I", self.data, self.pos)[0]
        self.pos += 4
        return value

    def int64(self) -> int:
        value = struct.unpack_from(">Q", self.data, self.pos)[0]
        self.pos += 8
        return value

    def count(self) -> int:
        return self.int64() if self.version == 5 else self.int32()

    def offset(self) -> int:
        return self.int32() if self.version == 1 else self.int64()

    def skip(self, n: int) -> None:
        self.pos += n + (-n) % 4  # values are padded to 4 bytes

    def name(self) -> None:
        self.skip(self.count())

    def attributes(self) -> None:
        tag, n = self.int32(), self.count()
        if tag not in (0, NC_ATTRIBUTE):
            raise ValueError(f"bad attribute tag {tag}")
        for _ in range(n):
            self.name()
            kind = self.int32()
            self.skip(self.count() * TYPE_SIZES[kind])


def required_size(path: str | Path) -> int | None:
    """Bytes a classic NetCDF file needs to hold all its data; None for a file that is not classic NetCDF (e.g.
    NETCDF4 / HDF5) or is streamed (no record count). Raises ``ValueError`` for a header that ends early."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read(1 << 20)  # headers are small; a header longer than this is not checked
    version = MAGIC.get(data[:4])
    if version is None:
        return None
    try:
        return _required(_Header(data, version))
    except struct.error:
        raise ValueError(f"{path}: truncated classic NetCDF file (it ends inside its header, after "
                         f"{len(data)} bytes); copy or download it again") from None
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"{path}: damaged classic NetCDF header ({type(err).__name__}: {err})") from None


def _required(h: _Header) -> int | None:
    numrecs = h.count()
    tag, n = h.int32(), h.count()
    if tag not in (0, NC_DIMENSION):
        raise ValueError(f"bad dimension tag {tag}")
    dims = []
    for _ in range(n):
        h.name()
        dims.append(h.count())
    h.attributes()
    tag, n = h.int32(), h.count()
    if tag not in (0, NC_VARIABLE):
        raise ValueError(f"bad variable tag {tag}")
    fixed_end, records = h.pos, []
    for _ in range(n):
        h.name()
        shape = [dims[h.count()] for _ in range(h.count())]
        h.attributes()
        size = TYPE_SIZES[h.int32()]
        h.count()  # vsize: capped at 2**32 - 1 for large variables, so recomputed from the shape
        begin = h.offset()
        if shape and shape[0] == 0:  # the record dimension
            records.append((begin, prod(shape[1:]) * size))
        else:
            fixed_end = max(fixed_end, begin + prod(shape) * size)
    if not records:
        return fixed_end
    if numrecs == STREAMING:
        return None
    padded = [s + (-s) % 4 for _, s in records]
    recsize = records[0][1] if len(records) == 1 else sum(padded)  # a single record variable is not padded
    last = max(begin + (numrecs - 1) * recsize + s for begin, s in records) if numrecs else 0
    return max(fixed_end, last)
