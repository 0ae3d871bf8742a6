"""Batched uploads spooled as ciphertext, and the join that streams them (6.3 steps 3-6 looping).

1. A provider sorts its table by id and sends it as Arrow IPC record batches,
   one AEAD chunk each (:func:`sharedml.tee.provider.batch_chunks`).
2. The enclave opens each chunk once on arrival — authenticity, columns
   allowed by the owner's policy, ids strictly increasing across chunks — then
   drops the plaintext and appends the *ciphertext* to a spool file in its
   working folder. The data key stays in enclave memory; the host sees chunk
   sizes only.
3. A training run reads the spools once: :func:`merge_join` decrypts one
   chunk per provider at a time and inner-joins them on id in id order (every
   input is sorted, so a window up to the smallest "last id" among the loaded
   chunks is complete), cut into blocks of ``rows`` joined rows.
4. The joined blocks go to a :class:`JoinedSpool` — kept in memory if they
   all fit a quarter of the budget, else sealed to disk under a key of this
   run — which every epoch (and the metrics pass) reads in order.

Plaintext held at once: one chunk per provider, the leftover of each, and one
joined block (plus the kept blocks, if any) — each charged to the
:class:`~.budget.MemoryBudget`, so a data set larger than the budget trains
as long as its batches fit.

Reveals: to the host, the number and sizes of chunks (≈ rows per provider),
and whether and how large a joined spool was written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sharedml.errors import ConfigError, DataError, PolicyDenied, ProtocolAbort
from sharedml.learn import metrics
from sharedml.tee.authz import DataPolicy
from sharedml.tee.enclave import sgd
from sharedml.tee.enclave.budget import MemoryBudget
from sharedml.tee.enclave.wipe import zeroise
from sharedml.tee.envelope import ChunkOpener, open_chunk
from sharedml.tee.model import ReleasedModel

ID = "id"


@dataclass
class Block:
    """Rows in id order: ids and a float64 matrix of named columns."""

    ids: np.ndarray
    x: np.ndarray
    columns: list[str]

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.x.nbytes)


def _read_batch(plain: bytes | memoryview, id_column: str, owner: str) -> tuple[pa.Table, np.ndarray]:
    """The Arrow table (zero-copy over ``plain``) and its ids, which must increase strictly."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(plain)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"a batch is not an Arrow IPC stream: {exc}", party=owner, step="upload") from None
    if id_column not in table.column_names:
        raise DataError(f"no id column {id_column!r} in a batch", party=owner, step="upload")
    ids = table.column(id_column).to_numpy()
    if ids.dtype.kind not in "iu":
        raise DataError("batched uploads need an integer id column", party=owner, step="upload")
    if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise DataError("ids in a batch are not strictly increasing (sorted, no duplicates)",
                        party=owner, step="upload", remedy="the SDK sorts by id; do not reorder batches")
    for name, kind in zip(table.column_names, table.schema.types, strict=True):
        if name != id_column and not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise DataError(f"column {name!r} is {kind}, not numeric", party=owner, step="upload")
    return table, ids


def decode_batch(plain: bytes | memoryview, id_column: str, owner: str) -> Block:
    """An Arrow IPC stream (one record batch) as a :class:`Block`."""
    table, ids = _read_batch(plain, id_column, owner)
    columns = [c for c in table.column_names if c != id_column]
    try:
        x = np.empty((len(ids), len(columns)))
        for j, c in enumerate(columns):  # straight from the Arrow buffers into one matrix
            x[:, j] = table.column(c).to_numpy()
    except (pa.ArrowInvalid, ValueError, TypeError) as exc:
        raise DataError(f"a batch has a non-numeric or missing value: {exc}", party=owner, step="upload") from None
    return Block(ids.astype(np.int64), x, columns)


@dataclass
class Spool:
    """One provider's batched upload: ciphertext on disk, key and index in enclave memory."""

    policy: DataPolicy
    path: Path
    key: bytes
    stream_id: bytes
    opener: ChunkOpener
    columns: list[str] = field(default_factory=list)
    index: list[tuple[int, int, int, bool]] = field(default_factory=list)  # (offset, length, seq, last)
    rows: int = 0
    last_id: int | None = None
    done: bool = False

    def add(self, seq: int, last: bool, ciphertext: bytes | memoryview, id_column: str, budget: MemoryBudget) -> None:
        """Step 2: open once to check, keep only the ciphertext."""
        owner = self.policy.owner
        plain = bytearray(max(0, len(ciphertext) - 16))
        with budget.hold(len(plain), "a batch", owner):
            n = self.opener.open_into(seq, last, ciphertext, memoryview(plain))
            table, ids = _read_batch(memoryview(plain)[:n], id_column, owner)
            columns = [c for c in table.column_names if c != id_column]
            del table
            if not self.columns:
                extra = [c for c in columns if c not in self.policy.columns]
                if extra:
                    raise PolicyDenied(f"columns {extra[:5]} are not allowed by the owner's policy",
                                       party=owner, step="upload")
                self.columns = columns
            elif columns != self.columns:
                raise DataError("a batch has other columns than the first", party=owner, step="upload")
            if len(ids) and self.last_id is not None and ids[0] <= self.last_id:
                raise DataError("batches are not in increasing id order", party=owner, step="upload")
            if len(ids):
                self.last_id = int(ids[-1])
            self.rows += len(ids)
            zeroise(plain)
        with self.path.open("ab") as fh:
            offset = fh.tell()
            fh.write(ciphertext)
        self.index.append((offset, len(ciphertext), seq, last))
        self.done = last

    def blocks(self, id_column: str, budget: MemoryBudget) -> Iterator[Block]:
        """Step 3: decrypt the spooled chunks again, one at a time, in order."""
        with self.path.open("rb") as fh:
            for offset, length, seq, last in self.index:
                fh.seek(offset)
                ciphertext = fh.read(length)
                with budget.hold(2 * length, "a batch", self.policy.owner):
                    plain = open_chunk(self.key, self.stream_id, seq, last, ciphertext)
                    block = decode_batch(plain, id_column, self.policy.owner)
                    del plain
                yield block


class _Cursor:
    """One provider's position in the join: its loaded rows not yet joined."""

    def __init__(self, owner: str, source: Iterator[Block]) -> None:
        self.owner = owner
        self._source = source
        self.block: Block | None = None
        self.exhausted = False

    def fill(self) -> None:
        while not self.exhausted and (self.block is None or len(self.block.ids) == 0):
            nxt = next(self._source, None)
            if nxt is None:
                self.exhausted = True
            else:
                self.block = nxt

    def take_upto(self, hi: int) -> Block:
        assert self.block is not None
        cut = int(np.searchsorted(self.block.ids, hi, side="right"))
        head = Block(self.block.ids[:cut], self.block.x[:cut], self.block.columns)
        self.block = Block(self.block.ids[cut:], self.block.x[cut:], self.block.columns)
        return head


def merge_join(sources: Mapping[str, Iterator[Block]], rows: int, budget: MemoryBudget) -> Iterator[Block]:
    """Inner join of id-sorted block streams, owners in name order, columns ``owner.column``."""
    cursors = [_Cursor(owner, sources[owner]) for owner in sorted(sources)]
    pending: list[Block] = []
    pending_rows = 0
    while True:
        for c in cursors:
            c.fill()
        if any(c.block is None or len(c.block.ids) == 0 for c in cursors):
            break
        hi = min(int(c.block.ids[-1]) for c in cursors if c.block is not None)
        parts = [c.take_upto(hi) for c in cursors]
        common = parts[0].ids
        for p in parts[1:]:
            common = np.intersect1d(common, p.ids, assume_unique=True)
        if len(common):
            x = np.hstack([p.x[np.isin(p.ids, common, assume_unique=True)] for p in parts])
            cols = [f"{c.owner}.{name}" for c, p in zip(cursors, parts, strict=True) for name in p.columns]
            pending.append(Block(common, x, cols))
            pending_rows += len(common)
        while pending_rows >= rows:
            block, pending, pending_rows = _cut(pending, rows)
            with budget.hold(block.nbytes, "a joined block"):
                yield block
    if pending_rows:
        block, _, _ = _cut(pending, pending_rows)
        with budget.hold(block.nbytes, "a joined block"):
            yield block


def _cut(pending: list[Block], rows: int) -> tuple[Block, list[Block], int]:
    ids = np.concatenate([b.ids for b in pending])
    x = np.vstack([b.x for b in pending])
    head = Block(ids[:rows], x[:rows], pending[0].columns)
    # The rest is copied: a view would keep the whole concatenation alive into the next block.
    rest = [Block(ids[rows:].copy(), x[rows:].copy(), pending[0].columns)] if len(ids) > rows else []
    return head, rest, len(ids) - rows


class JoinedSpool:
    """The joined design matrix of one training run, made once and re-read every epoch.

    If the whole joined matrix fits a quarter of the budget it stays in
    enclave memory; otherwise every block is raw float64 (features, then the
    label) sealed with AES-256-GCM under a key made for this run in enclave
    memory (nonce = block number) and written to disk. An epoch so costs at most a decryption per block instead
    of a decryption, a decode and a join per upload batch. ``remove`` drops
    both when the run ends.
    """

    def __init__(self, path: Path, budget: MemoryBudget) -> None:
        self.path = path
        self._budget = budget
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._blocks: list[tuple[np.ndarray, np.ndarray] | tuple[int, int, int]] = []  # in memory, or on disk
        self._kept = 0
        self.columns = 0

    def write(self, blocks: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
        with self.path.open("wb") as fh:
            for x, y in blocks:
                self.columns = x.shape[1]
                size = x.nbytes + y.nbytes
                on_disk = self._blocks and len(self._blocks[0]) == 3
                if not on_disk and self._kept + size <= self._budget.limit // 4:
                    self._budget.take(size, "a kept joined block")
                    self._kept += size
                    self._blocks.append((np.ascontiguousarray(x), y))
                    continue
                if not on_disk:  # it does not all fit: seal what was kept, then go on on disk
                    kept, self._blocks = self._blocks, []
                    for kx, ky in kept:  # type: ignore[misc]
                        self._seal(fh, kx, ky)
                    self._budget.give_back(self._kept)
                    self._kept = 0
                self._seal(fh, x, y)

    def _seal(self, fh: BinaryIO, x: np.ndarray, y: np.ndarray) -> None:
        plain = np.hstack([x, y[:, None]]).tobytes()
        ct = self._aead.encrypt(len(self._blocks).to_bytes(12, "big"), plain, b"sharedml-tee-joined/1")
        self._blocks.append((fh.tell(), len(ct), len(y)))
        fh.write(ct)

    def read(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with self.path.open("rb") as fh:
            for i, entry in enumerate(self._blocks):
                if len(entry) == 2:
                    yield entry[0], entry[1]
                    continue
                offset, length, rows = entry
                fh.seek(offset)
                with self._budget.hold(length, "a joined block"):
                    plain = self._aead.decrypt(i.to_bytes(12, "big"), fh.read(length), b"sharedml-tee-joined/1")
                    block = np.frombuffer(plain, dtype=np.float64).reshape(rows, self.columns + 1)
                    yield block[:, :-1], block[:, -1].copy()  # the label alone must not pin the block

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self._blocks = []
        self._budget.give_back(self._kept)
        self._kept = 0


def require_streams(spools: Mapping[str, Spool]) -> None:
    unfinished = [s.policy.owner for s in spools.values() if not s.done]
    if unfinished:
        raise ProtocolAbort(f"batched uploads of {unfinished} did not end", step="train")


STREAM_ALGORITHMS = ("logistic_regression_sgd",)


def fit_streaming(
    spools: Mapping[str, Spool], request: Mapping[str, object], id_column: str, budget: MemoryBudget
) -> tuple[ReleasedModel, dict[str, float | int]]:
    """Train ``logistic_regression_sgd`` on the batched uploads, re-read every epoch."""
    require_streams(spools)
    label = str(request["label"])
    rows = int(str(request.get("batch_rows", 4096)))
    params = request.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError("params must be a mapping", step="train")
    unknown = set(params) - {"epochs", "learning_rate", "lr_schedule", "l2"}
    if unknown:
        raise ConfigError(f"parameters {sorted(unknown)} do not apply to logistic_regression_sgd", step="train")
    by_owner = {s.policy.owner: s for s in spools.values()}
    columns = [f"{o}.{c}" for o in sorted(by_owner) for c in by_owner[o].columns]
    if label not in columns:
        raise ConfigError(f"label {label!r} is not among the joined columns", step="train")
    at = columns.index(label)
    features = [c for c in columns if c != label]

    def joined() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        sources = {o: s.blocks(id_column, budget) for o, s in by_owner.items()}
        for block in merge_join(sources, rows, budget):
            y = block.x[:, at].copy()  # not a view: keeping it must not keep the whole block
            if not bool(np.isin(y, (0.0, 1.0)).all()):
                raise DataError("the label must be 0/1", step="train")
            yield np.delete(block.x, at, axis=1), y

    spool = JoinedSpool(next(iter(spools.values())).path.with_name("joined.spool"), budget)
    try:
        spool.write(joined())
        return _fit_joined(spool.read, params, features, budget)
    finally:
        spool.remove()


def _fit_joined(
    blocks: sgd.Blocks, params: Mapping[str, object], features: list[str], budget: MemoryBudget
) -> tuple[ReleasedModel, dict[str, float | int]]:
    model = sgd.fit_logistic(
        blocks, epochs=int(str(params.get("epochs", 5))), eta0=float(str(params.get("learning_rate", 0.1))),
        schedule=str(params.get("lr_schedule", "constant")), l2=float(str(params.get("l2", 0.0))),
    )
    # The exact AUC needs every score: 16 bytes a row while the join runs, ~64 while it sorts.
    with budget.hold(16 * model.rows, "the scores for the training AUC"):
        scores, labels = [], []
        for x, y in blocks():
            scores.append(model.decision(x))
            labels.append(y)
        with budget.hold(48 * model.rows, "the training AUC"):
            auc = metrics.roc_auc(np.concatenate(labels), np.concatenate(scores))
    released = ReleasedModel("logistic_regression", features, {
        "mean": model.mean.tolist(), "scale": model.scale.tolist(),
        "coef": model.coef.tolist(), "intercept": model.intercept,
    })
    return released, {"rows": model.rows, "train_auc": auc, "steps": model.steps}
