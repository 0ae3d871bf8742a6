"""The typed, versioned frame that carries one value between parties.

Nothing is ever pickled between parties (STYLE.md 11). A frame is a fixed
little-endian header followed by the value's raw bytes::

    offset size field
    0      4    magic  b"SMLF"
    4      1    version (1)
    5      1    kind   1 = numpy array, 2 = bytes
    6      1    dtype  code from _DTYPES (0 for bytes)
    7      1    ndim   0..32
    8      8*n  shape  one uint64 per dimension
    ...    8    payload length in bytes (uint64)

:func:`decode` checks every field against the payload it is given, so a
frame whose header lies about its size is a :class:`FrameError`, never a
partial read or a huge allocation.
"""

from __future__ import annotations

import struct

import numpy as np

from sharedml.errors import FrameError

MAGIC = b"SMLF"
VERSION = 1
KIND_ARRAY = 1
KIND_BYTES = 2
MAX_NDIM = 32
#: Largest byte extent (non-zero dimensions times item size) numpy can represent.
MAX_EXTENT = 2**63 - 1
_FIXED = struct.Struct("<4sBBBB")

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("bool"),
    2: np.dtype("<i1"),
    3: np.dtype("<i2"),
    4: np.dtype("<i4"),
    5: np.dtype("<i8"),
    6: np.dtype("<u1"),
    7: np.dtype("<u2"),
    8: np.dtype("<u4"),
    9: np.dtype("<u8"),
    10: np.dtype("<f2"),
    11: np.dtype("<f4"),
    12: np.dtype("<f8"),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}

Value = np.ndarray | bytes


def encode(value: Value) -> tuple[bytes, memoryview]:
    """Split ``value`` into (header, payload) without copying the payload when
    the array is already C-contiguous and little-endian."""
    if isinstance(value, bytes | bytearray | memoryview):
        payload = memoryview(value).cast("B")
        header = _FIXED.pack(MAGIC, VERSION, KIND_BYTES, 0, 0) + struct.pack("<Q", payload.nbytes)
        return header, payload
    if not isinstance(value, np.ndarray):
        raise TypeError(f"can only send numpy arrays or bytes, not {type(value).__name__}")
    dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
    code = _CODES.get(np.dtype(dtype))
    if code is None:
        raise TypeError(f"dtype {value.dtype} cannot be sent; use one of {sorted(map(str, _CODES))}")
    if value.ndim > MAX_NDIM:
        raise TypeError(f"arrays of more than {MAX_NDIM} dimensions cannot be sent")
    arr = np.asarray(value, dtype=dtype, order="C")  # ascontiguousarray would make 0-d 1-d
    payload = memoryview(arr.reshape(-1).view(np.uint8).data) if arr.size else memoryview(b"")
    header = (
        _FIXED.pack(MAGIC, VERSION, KIND_ARRAY, code, arr.ndim)
        + struct.pack(f"<{arr.ndim}Q", *arr.shape)
        + struct.pack("<Q", payload.nbytes)
    )
    return header, payload


def header_length(prefix: bytes | memoryview) -> int:
    """Length of the header that starts ``prefix`` (needs its first 8 bytes)."""
    if len(prefix) < _FIXED.size:
        raise FrameError(f"frame shorter than its fixed header ({len(prefix)} bytes)")
    magic, version, _kind, _code, ndim = _FIXED.unpack_from(prefix)
    if magic != MAGIC:
        raise FrameError("not a sharedml frame (bad magic)")
    if version != VERSION:
        raise FrameError(
            f"frame version {version} is not supported (this side speaks {VERSION})",
            remedy="run the same sharedml version on every party",
        )
    if ndim > MAX_NDIM:
        raise FrameError(f"frame claims {ndim} dimensions (at most {MAX_NDIM})")
    return _FIXED.size + 8 * ndim + 8


def decode(header: bytes | memoryview, payload: bytes | bytearray | memoryview) -> Value:
    """Rebuild the value from its header and payload, checking every field."""
    hlen = header_length(header)
    if len(header) != hlen:
        raise FrameError(f"frame header is {len(header)} bytes, expected {hlen}")
    _magic, _version, kind, code, ndim = _FIXED.unpack_from(header)
    shape = struct.unpack_from(f"<{ndim}Q", header, _FIXED.size)
    (nbytes,) = struct.unpack_from("<Q", header, _FIXED.size + 8 * ndim)
    if nbytes != len(payload):
        raise FrameError(f"frame header announces {nbytes} bytes but {len(payload)} arrived")
    if kind == KIND_BYTES:
        if code or ndim:
            raise FrameError("bytes frame with a dtype or shape")
        return bytes(payload)
    if kind != KIND_ARRAY:
        raise FrameError(f"unknown frame kind {kind}")
    dtype = _DTYPES.get(code)
    if dtype is None:
        raise FrameError(f"unknown dtype code {code}")
    count, extent = 1, 1
    for dim in shape:
        count *= dim
        extent *= max(dim, 1)
    if extent * dtype.itemsize > MAX_EXTENT:  # numpy cannot describe even an empty array this wide
        raise FrameError(f"frame shape {tuple(shape)} is too large for an array")
    if count * dtype.itemsize != nbytes:
        raise FrameError(
            f"frame shape {tuple(shape)} of {dtype} needs {count * dtype.itemsize} bytes, "
            f"header says {nbytes}"
        )
    # A writable buffer (a receiver's preallocated bytearray or array) becomes the
    # array's memory as is; read-only bytes are copied once so the array is writable.
    writable = isinstance(payload, bytearray) or (
        isinstance(payload, memoryview) and not payload.readonly
    )
    buf = payload if writable else bytearray(payload)
    try:
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    except ValueError as exc:  # a shape numpy refuses for a reason not checked above
        raise FrameError(f"frame shape {tuple(shape)} is not a valid array shape: {exc}") from exc


def encode_frame(value: Value) -> bytes:
    """Header and payload joined in one buffer (for small messages and tests)."""
    header, payload = encode(value)
    return header + payload.tobytes()


def decode_frame(frame: bytes | bytearray | memoryview) -> Value:
    """Inverse of :func:`encode_frame`."""
    view = memoryview(frame)
    hlen = header_length(view[: _FIXED.size])
    if len(view) < hlen:
        raise FrameError(f"frame truncated inside its header ({len(view)} < {hlen} bytes)")
    return decode(view[:hlen], view[hlen:])
