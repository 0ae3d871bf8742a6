"""A node's working state between a job's steps, kept on its own disk (8.3-5).

After each step the node writes its party's state for the job (the aligned
frame, the split, the scaler, its model part, predictions: what
``StepContext.state`` holds) and the steps done to
``work_dir/jobs/<job>/state.bin``. A node agent restarted mid-job reads it
back when the job's next task — or the retry of the step it was in when it
died — arrives, so the job **resumes** from the last step every party
finished instead of failing. A state that cannot be written (an object that
does not serialise) or read (missing, from another key, corrupt) leaves the
node as it was before: the task fails cleanly with the reason that the node
holds no state from the earlier steps.

A fitted model part is not pickled as the object it is (a secret-shared
model holds its MPC runtime, with the step's channel): it goes in as its own
model file (``save``) and comes back through ``load``, the path a later job's
``predict`` takes, so the saved state is exactly what a model file carries.

The file never leaves the node and holds only this party's own data. It is
a pickle, so it is sealed: AES-256-GCM under a key made once per work dir
(``work_dir/state.key``, mode 0600), with the job id as associated data — a
file this node did not write, or one moved from another job, is refused
before it is unpickled (never pickle across a trust boundary, STYLE 11).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sharedml.errors import SharedMLError
from sharedml.learn.base import VerticalModel

log = logging.getLogger("sharedml.node")

_NONCE = 12
_FILE = "state.bin"


@dataclass
class JobState:
    """One job's working objects at this party, and the steps they come from."""

    state: dict[str, Any] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)


class JobStateFiles:
    """Seals each job's :class:`JobState` into ``work_dir/jobs/<job>/state.bin``."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = Path(work_dir)
        self._aead = AESGCM(_key(self.work_dir / "state.key"))
        self._unsaved: set[str] = set()

    def path(self, job_id: str) -> Path:
        return self.work_dir / "jobs" / job_id / _FILE

    def save(self, job_id: str, job: JobState) -> bool:
        """Write ``job`` (replacing the last one atomically); ``False`` if it cannot be."""
        try:
            raw = _dumps((job.state, sorted(job.done)))
        except (pickle.PicklingError, TypeError, AttributeError, RuntimeError,
                SharedMLError) as exc:
            if job_id not in self._unsaved:  # once a job: every later step fails alike
                self._unsaved.add(job_id)
                log.warning("job %s: state after %s not saved (%s); the last saved state "
                            "stays, so a restart from here fails the job's later steps",
                            job_id, sorted(job.done), exc)
            return False
        nonce = secrets.token_bytes(_NONCE)
        target = self.path(job_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{secrets.token_hex(4)}.tmp")  # steps may save at once
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(nonce + self._aead.encrypt(nonce, raw, job_id.encode()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return True

    def load(self, job_id: str) -> JobState | None:
        """The state saved for ``job_id``, or ``None`` (none, or not one this node sealed)."""
        path = self.path(job_id)
        try:
            blob = path.read_bytes()
            raw = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], job_id.encode())
        except FileNotFoundError:
            return None
        except (OSError, InvalidTag, ValueError) as exc:
            log.warning("job %s: saved state %s refused (%s)", job_id, path,
                        type(exc).__name__)
            return None
        state, done = pickle.loads(raw)  # sealed by this node's own key: its own bytes
        return JobState(state, set(done))

    def forget(self, job_id: str) -> None:
        """Drop the saved state of a finished job (its other files stay)."""
        self.path(job_id).unlink(missing_ok=True)


class _Pickler(pickle.Pickler):
    """Pickles model parts as their model files (:meth:`VerticalModel.save`)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, VerticalModel):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.json"
                obj.save(path)
                return _load_model, (type(obj), path.read_bytes())
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _load_model(cls: type[VerticalModel], data: bytes) -> VerticalModel:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.json"
        path.write_bytes(data)
        return cls.load(path)


def _key(path: Path) -> bytes:
    """This work dir's state key, made on first use (0600)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(AESGCM.generate_key(bit_length=256))
    return path.read_bytes()
