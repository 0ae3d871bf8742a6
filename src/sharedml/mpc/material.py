"""Correlated randomness: what each kind of material is and how it is derived.

Math only (no channel). A *request* names a kind, a counter that every party
and the dealer step in the same order, and the kind's dimensions. Each kind is
a list of *components*; a component is either **free** (uniform shares, each
party's drawn from its own PRG stream) or **derived** (its secret value is a
function of the free secrets, e.g. ``c = a·b``). Party ``i`` draws its share of
component ``j`` of request ``t`` as ``Prg(key_i).words(nonce = 16·t + j)``;
whoever knows every key (the dealer) can therefore reproduce every share and
only has to *send* one party the share of each derived component that makes
the sum come out right.

Kinds (arithmetic components are shares mod 2^64, boolean ones XOR shares):

=============  =====================  =========================================
kind           dims                   components (free | derived)
=============  =====================  =========================================
MUL            shape                  a, b | c = a·b
MATMUL         m, k, n                a (m,k), b (k,n) | c = a @ b
TRUNC          f, shape               r | r_hi = r >> f (logical), r_msb = r >> 63
                                      (r_msb mod 2^f only: see *wire bits*)
AND            shape (boolean)        a, b | c = a & b
ADDER          s, shape (boolean)     a, b | c1 = a & b, c2 = a & (a << s)
DABIT          shape                  rb (one bit, boolean) | ra = rb (arithmetic)
FIXED_MASK     m, k                   a (m,k)   — remembered under the counter
FIXED_MATMUL   id, t, n [+ rows]      b | c = A' @ b, A' = A[rows] (t=0) or A[rows]ᵀ (t=1)
DABIT_MUL      shape                  rb (bit, boolean), a | ra = rb, c = ra·a
TRUNC_FIXED    id, k, m [, s_1..s_g]  r (m,1) | r_hi, r_msb as TRUNC; c = A'ᵀ r_hi
               [+ rows]               (one column per segment s_j of rows, g ≥ 2),
                                      M = A'ᵀ · diag(r_msb), A' = A[rows] (m rows)
=============  =====================  =========================================

*Wire bits*: a derived component whose shares are only ever used multiplied
by 2^(64-w) (TRUNC's r_msb, used as r_msb·2^(64-f), so w = f) needs its shares
mod 2^w only. The dealer then sends the last party's share mod 2^w, packed in
the narrowest of 8/16/32 bits that holds w (uniform there, as the full share
is mod 2^64): for f = 16 a quarter of the bytes. The shares then sum to the
secret mod 2^w, not mod 2^64.

A BUNDLE (wire only, no material of its own) carries several consecutive
requests in one message: :func:`encode_bundle` / :func:`decode_bundle`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from sharedml.crypto import ring
from sharedml.crypto.prg import Prg
from sharedml.errors import ProtocolAbort

_U63 = np.uint64(63)


class Kind(IntEnum):
    STOP = 0
    MUL = 1
    MATMUL = 2
    TRUNC = 3
    AND = 4
    ADDER = 5
    DABIT = 6
    FIXED_MASK = 7
    FIXED_MATMUL = 8
    DABIT_MUL = 9
    BUNDLE = 10
    TRUNC_FIXED = 11


@dataclass(frozen=True)
class Component:
    name: str
    shape: tuple[int, ...]
    derived: bool = False
    boolean: bool = False
    bit: bool = False
    #: only the share mod 2^wire_bits matters (a multiple of 8, at most 64)
    wire_bits: int = 64

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def wire_dtype(self) -> np.dtype[np.unsignedinteger]:
        return np.dtype(f"uint{self.wire_bits}")

    @property
    def wire_words(self) -> int:
        """uint64 words this component's correction takes on the wire."""
        per_word = 8 // self.wire_dtype.itemsize
        return -(-self.size // per_word)

    def pack(self, correction: np.ndarray, out: np.ndarray) -> None:
        """Write ``correction`` (uint64) mod 2^wire_bits into ``wire_words`` words."""
        if self.wire_bits == 64:
            np.copyto(out, correction.reshape(-1))
            return
        out[-1:] = 0  # padding
        np.copyto(out.view(self.wire_dtype)[: self.size], correction.reshape(-1), casting="unsafe")

    def unpack(self, words: np.ndarray) -> np.ndarray:
        """The share (uint64, this component's shape) from its ``wire_words``."""
        if self.wire_bits == 64:
            return words.reshape(self.shape)
        return words.view(self.wire_dtype)[: self.size].astype(np.uint64).reshape(self.shape)


@dataclass(frozen=True)
class Request:
    """One request for material; ``encode``/``decode`` give its wire form."""

    kind: Kind
    counter: int
    dims: tuple[int, ...]
    rows: np.ndarray | None = None

    def encode(self) -> np.ndarray:
        head = [int(self.kind), self.counter, len(self.dims), *self.dims]
        rows = np.empty(0, dtype=np.uint64) if self.rows is None else self.rows.astype(np.uint64)
        flag = 0 if self.rows is None else 1
        return np.concatenate(
            [np.array([*head, flag, rows.size], dtype=np.uint64), rows]
        )

    @classmethod
    def decode(cls, msg: object) -> Request:
        arr = np.asarray(msg)
        try:
            if arr.dtype != np.uint64 or arr.ndim != 1:
                raise ValueError("not a uint64 vector")
            kind, counter, ndims = Kind(int(arr[0])), int(arr[1]), int(arr[2])
            dims = tuple(int(d) for d in arr[3 : 3 + ndims])
            flag, nrows = int(arr[3 + ndims]), int(arr[4 + ndims])
            rows = arr[5 + ndims : 5 + ndims + nrows].astype(np.int64)
            if len(dims) != ndims or rows.size != nrows:
                raise ValueError("truncated")
        except (ValueError, IndexError) as exc:
            raise ProtocolAbort(f"malformed material request: {exc}", step="dealer") from exc
        return cls(kind, counter, dims, rows if flag else None)


def encode_bundle(reqs: list[Request]) -> np.ndarray:
    """Several requests in one message (kind BUNDLE, counter of the first)."""
    parts = [r.encode() for r in reqs]
    sizes = np.array([p.size for p in parts], dtype=np.uint64)
    payload = np.concatenate([sizes, *parts])
    return Request(Kind.BUNDLE, reqs[0].counter, (len(reqs),), payload.view(np.int64)).encode()


def decode_bundle(req: Request) -> list[Request]:
    """The requests inside a BUNDLE, checked to be consecutive."""
    if req.rows is None or len(req.dims) != 1:
        raise ProtocolAbort("malformed material bundle", step="dealer")
    count, words = req.dims[0], req.rows.view(np.uint64)
    if not 0 < count <= words.size:
        raise ProtocolAbort(f"material bundle of {count} requests in {words.size} words", step="dealer")
    sizes, at = words[:count].astype(np.int64), count
    out: list[Request] = []
    for size in sizes:
        sub = Request.decode(words[at : at + size])
        if sub.kind in (Kind.BUNDLE, Kind.STOP) or sub.counter != req.counter + len(out):
            raise ProtocolAbort("material bundle holds a nested or out-of-order request", step="dealer")
        out.append(sub)
        at += int(size)
    if at != words.size:
        raise ProtocolAbort("material bundle has trailing words", step="dealer")
    return out


def components(req: Request, fixed_shape: Callable[[int], tuple[int, int]]) -> list[Component]:
    """The components of ``req``; ``fixed_shape(id)`` gives a FIXED_MASK's (m, k)."""
    k, d = req.kind, req.dims
    if k == Kind.MUL:
        return [Component("a", d), Component("b", d), Component("c", d, derived=True)]
    if k == Kind.MATMUL:
        m, kk, n = d
        return [
            Component("a", (m, kk)),
            Component("b", (kk, n)),
            Component("c", (m, n), derived=True),
        ]
    if k == Kind.TRUNC:
        s = d[1:]
        return [
            Component("r", s),
            Component("r_hi", s, derived=True),
            Component("r_msb", s, derived=True, wire_bits=_wire_bits(d[0])),
        ]
    if k == Kind.AND:
        return [
            Component("a", d, boolean=True),
            Component("b", d, boolean=True),
            Component("c", d, derived=True, boolean=True),
        ]
    if k == Kind.ADDER:
        s = d[1:]
        return [
            Component("a", s, boolean=True),
            Component("b", s, boolean=True),
            Component("c1", s, derived=True, boolean=True),
            Component("c2", s, derived=True, boolean=True),
        ]
    if k == Kind.DABIT:
        return [Component("rb", d, boolean=True, bit=True), Component("ra", d, derived=True)]
    if k == Kind.FIXED_MASK:
        return [Component("a", d)]
    if k == Kind.DABIT_MUL:
        return [
            Component("rb", d, boolean=True, bit=True),
            Component("a", d),
            Component("ra", d, derived=True),
            Component("c", d, derived=True),
        ]
    if k == Kind.TRUNC_FIXED:
        fid, _, m, *segments = d
        rows_all, kk = fixed_shape(fid)
        if m != (rows_all if req.rows is None else len(req.rows)):
            raise ProtocolAbort(f"TRUNC_FIXED of {m} rows names {rows_all if req.rows is None else len(req.rows)}", step="dealer")
        if segments and (sum(segments) != m or min(segments) < 1):
            raise ProtocolAbort(f"TRUNC_FIXED segments {segments} do not split {m} rows", step="dealer")
        return [
            Component("r", (m, 1)),
            Component("r_hi", (m, 1), derived=True),
            Component("r_msb", (m, 1), derived=True),
            Component("c", (kk, max(len(segments), 1)), derived=True),
            Component("M", (kk, m), derived=True),
        ]
    if k == Kind.FIXED_MATMUL:
        fid, transpose, n = d
        m, kk = fixed_shape(fid)
        rows = m if req.rows is None else len(req.rows)
        inner, outer = (rows, kk) if transpose else (kk, rows)
        return [Component("b", (inner, n)), Component("c", (outer, n), derived=True)]
    raise ProtocolAbort(f"unknown material kind {k!r}", step="dealer")


def _wire_bits(bits: int) -> int:
    """The narrowest wire width (8/16/32/64) holding ``bits`` bits."""
    return next(w for w in (8, 16, 32, 64) if bits <= w)


def draw(
    prg: Prg, req: Request, index: int, comp: Component, buffer: np.ndarray | None = None
) -> np.ndarray:
    """This holder's share of component ``index`` of ``req`` (into ``buffer`` if given)."""
    words = prg.uint64(16 * req.counter + index, comp.shape, buffer)
    if comp.bit:
        words &= np.uint64(1)
    return words


def combine(comp: Component, shares: list[np.ndarray], *, in_place: bool = False) -> np.ndarray:
    """The secret value behind ``shares`` (sum, or XOR for boolean components);
    ``in_place`` accumulates into ``shares[0]``."""
    out = shares[0] if in_place else shares[0].copy()
    for s in shares[1:]:
        if comp.boolean:
            out ^= s
        else:
            out += s
    return out


def complete(comp: Component, secret: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """The last share that makes ``others`` plus it reconstruct ``secret``."""
    out = secret.copy()
    for s in others:
        if comp.boolean:
            out ^= s
        else:
            out -= s
    return out


def derive(
    req: Request,
    free: Mapping[str, np.ndarray],
    fixed: Callable[[int], np.ndarray],
    fixed_limbs: Callable[[int], ring.Limbs] | None = None,
) -> dict[str, np.ndarray]:
    """Secret values of the derived components from the free secrets.

    ``fixed_limbs`` (optional) gives a fixed mask already split into limbs
    (:func:`ring.split`), so products with it skip the split.
    """

    def fixed_operand(fid: int) -> ring.Limbs:
        if fixed_limbs is None:
            return ring.split(fixed(fid) if req.rows is None else fixed(fid)[req.rows])
        limbs = fixed_limbs(fid)
        return limbs if req.rows is None else limbs.rows(req.rows)

    k = req.kind
    if k == Kind.MUL:
        return {"c": free["a"] * free["b"]}
    if k == Kind.MATMUL:
        return {"c": ring.product(free["a"], free["b"])}
    if k == Kind.TRUNC:
        r = free["r"]
        return {"r_hi": r >> np.uint64(req.dims[0]), "r_msb": r >> _U63}
    if k == Kind.AND:
        return {"c": free["a"] & free["b"]}
    if k == Kind.ADDER:
        a, s = free["a"], np.uint64(req.dims[0])
        return {"c1": a & free["b"], "c2": a & (a << s)}
    if k == Kind.DABIT:
        return {"ra": free["rb"].copy()}
    if k == Kind.DABIT_MUL:
        return {"ra": free["rb"].copy(), "c": free["rb"] * free["a"]}
    if k == Kind.TRUNC_FIXED:
        fid, bits, m, *segments = req.dims
        r = free["r"]
        r_hi, r_msb = r >> np.uint64(bits), r >> _U63
        at = fixed(fid) if req.rows is None else fixed(fid)[req.rows]
        return {
            "r_hi": r_hi,
            "r_msb": r_msb,
            "c": ring.matmul(fixed_operand(fid).T, segment_columns(r_hi, segments or [m])),
            "M": at.T * r_msb.reshape(1, -1),
        }
    if k == Kind.FIXED_MASK:
        return {}
    if k == Kind.FIXED_MATMUL:
        fid, transpose, _ = req.dims
        fa = fixed_operand(fid)
        return {"c": ring.matmul(fa.T if transpose else fa, free["b"])}
    raise ProtocolAbort(f"unknown material kind {k!r}", step="dealer")


def segment_columns(col: np.ndarray, segments: list[int]) -> np.ndarray:
    """``col`` (m, 1) spread over one column per consecutive segment of rows, zeros elsewhere."""
    if len(segments) == 1:
        return col.reshape(-1, 1)
    out = np.zeros((col.size, len(segments)), dtype=col.dtype)
    at = 0
    for j, size in enumerate(segments):
        out[at : at + size, j] = col.ravel()[at : at + size]
        at += size
    return out
