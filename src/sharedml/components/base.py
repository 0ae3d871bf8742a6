"""The Component seam: one job step, run by every party named in the job.

A job spec (``sharedml.components.jobspec``) lists steps such as ``psi``,
``split``, ``scale``, ``train``, ``predict`` and ``evaluate``. Each step names a
:class:`Component`. Every party's process runs the same component with its own
:class:`StepContext`; the parties talk only through ``ctx.session.channel``.
``sharedml run`` (every party a local process) and the platform's node agents
execute steps through :func:`execute` alike, so the two run the very same specs.

What a component returns in :class:`StepResult.metrics` goes to the platform
and the job's result file: it must be public (metrics, sizes, timings), never
rows, labels or shares (9.4-3).
"""

from __future__ import annotations

import math
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from sharedml.datasets import DatasetFiles, DatasetSource
from sharedml.errors import ConfigError
from sharedml.session import MPCRuntime, Provider, Session

if TYPE_CHECKING:
    import pandas as pd

    from sharedml.modelpart import PartStore


#: No integer a step's parameters hold may exceed this in magnitude (it must fit the
#: int64 every component and numpy turn it into).
MAX_INT = 2**63 - 1


class Params(BaseModel):
    """Base of every component's parameter schema: unknown fields are errors, and so
    are NaN, infinities and integers beyond int64, at any depth (issue 14 item 8)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="after")
    def _numbers_in_range(self) -> Params:
        for name, value in self:
            _check_number(name, value)
        return self


def _check_number(where: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ValueError(f"{where} is out of range (at most {MAX_INT} in magnitude)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_number(f"{where}.{k}", v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_number(f"{where}[{i}]", v)


@dataclass
class PartyConfig:
    """What the job spec says about one party.

    ``dataset`` is the name the spec gives the party's dataset (``None``: the
    party holds no data); it means one thing everywhere and is never rewritten:
    the step context's :class:`~sharedml.datasets.DatasetSource` resolves it (a
    file relative to the spec under ``sharedml run``, a registered dataset on a
    node).
    """

    name: str
    dataset: str | None = None
    label: str | None = None
    id_columns: tuple[str, ...] = ("id",)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """One party's view of one step.

    ``state`` carries the party's working objects from step to step (its
    aligned frame, train/test split, fitted model part, predictions); it never
    leaves the party's process. ``datasets`` is the injected loader of the
    party's own data (default: names are file paths). ``parts`` is the party's
    model-part store (:class:`~sharedml.modelpart.PartStore`; default: sealed
    under ``out_dir/models`` with keys in ``out_dir/keys``).
    """

    session: Session
    party: PartyConfig
    parties: dict[str, PartyConfig]
    state: dict[str, Any]
    out_dir: Path
    step_id: str
    progress: Callable[[float, str], None] = lambda fraction, message: None
    datasets: DatasetSource = field(default_factory=DatasetFiles)
    parts: PartStore | None = None
    #: Whether ``predict``/``evaluate`` write their row-level files (scores CSV, ROC/KS
    #: curves). The enclave sets it off: it keeps scores in memory and releases them only
    #: as the owners' policies say (:mod:`sharedml.tee.enclave.steps`).
    files: bool = True

    def part_store(self) -> PartStore:
        """This party's model parts (:attr:`parts`, or the default under ``out_dir``)."""
        if self.parts is None:
            from sharedml.modelpart import FileNodeKeys, PartStore

            keys = FileNodeKeys.open_or_create(self.out_dir / "keys")
            self.parts = PartStore(self.out_dir / "models", keys, party=self.party.name)
        return self.parts

    def artifact(self, kind: str, suffix: str) -> Path:
        """This party's file ``out_dir/<kind>-<step id><suffix>``, created empty and
        readable by this process's user only (0600: model parts and predictions are the
        party's own). The step id is checked again here, so it never walks out of
        ``out_dir`` whatever the caller's spec loader did."""
        if not STEP_ID.fullmatch(self.step_id):
            raise ConfigError(f"{self.step_id[:64]!r} is not a step id", party=self.party.name,
                              remedy="use letters, digits, '_' or '-'")
        path = self.out_dir / f"{kind}-{self.step_id}{suffix}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        path.chmod(0o600)  # an existing file keeps its mode on open: set it
        return path

    @property
    def label_holder(self) -> str | None:
        """The party that declared a label, if any."""
        holders = [p.name for p in self.parties.values() if p.label]
        return holders[0] if holders else None

    def load_dataset(self, id_columns: Sequence[str] | None = None) -> pd.DataFrame:
        """This party's dataset, validated, through :attr:`datasets`; ``id_columns``
        default to the party's."""
        if self.party.dataset is None:
            raise ConfigError("this party has no dataset to load", party=self.party.name,
                              step=self.step_id, remedy="give it a dataset in the job spec")
        from sharedml.modelpart.pipeline import STATE_SCHEMA, schema_of

        ids = list(self.party.id_columns if id_columns is None else id_columns)
        frame = self.datasets.load(self.party.dataset, ids, self.party.label,
                                   party=self.party.name, step=self.step_id)
        skip = [*ids, *([self.party.label] if self.party.label else [])]
        self.state[STATE_SCHEMA] = schema_of(frame, skip)  # what a saved model will expect
        return frame

    def mpc_runtime(
        self,
        provider: Provider | None,
        *,
        frac_bits: int | None = None,
        purpose: str = "this step",
        otherwise: str = "",
    ) -> MPCRuntime:
        """The step's MPC runtime: :meth:`Session.mpc_runtime
        <sharedml.session.Session.mpc_runtime>`, its errors naming this step."""
        try:
            return self.session.mpc_runtime(
                provider, frac_bits=frac_bits, purpose=purpose, otherwise=otherwise
            )
        except ConfigError as exc:
            raise ConfigError(exc.message, party=self.party.name, step=self.step_id,
                              remedy=exc.remedy) from None


@dataclass
class StepResult:
    """Public outcome of a step at one party."""

    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


#: What a step id may be: it names each party's files (``model-<id>.json``) and the
#: step's channel tags, so no separators, dots or spaces (issue 14 item 8).
STEP_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

#: The roles of a step (:meth:`Component.roles`): every data party, and the job's dealer.
DATA, DEALER = "data", "dealer"


def deals(params: Params) -> bool:
    """Whether a step with ``params`` computes on secret shares with dealt randomness:
    its ``protocol`` is ``ss`` or ``split`` and its ``provider`` is not ``he`` —
    unless its parameters say otherwise through a ``deals()`` method (a
    horizontal ``train`` runs on secure aggregation)."""
    own = getattr(params, "deals", None)
    if callable(own):
        return bool(own())
    return getattr(params, "protocol", None) in ("ss", "split") and getattr(
        params, "provider", None) != "he"


#: What a step may leave in its parties' state for later steps: name -> (what it
#: is, the step that makes it). Steps declare what they need and make in these terms.
PRODUCTS: dict[str, tuple[str, str]] = {
    "rows": ("each party's rows, aligned across the parties", "psi"),
    "split": ("a train/test split", "split"),
    "model": ("a trained model (vertical; for one trained with layout: horizontal, set "
              "'layout: horizontal' on this step too)", "train"),
    "own_rows": ("each party's own rows of the same columns (layout: horizontal)",
                 "split with layout: horizontal"),
    "horizontal_model": ("a trained model with layout: horizontal",
                         "train with layout: horizontal"),
}


class Component(ABC):
    """A job step. Subclasses set ``name``, ``params`` and implement :meth:`run`.

    ``needs`` and ``makes`` declare, in the terms of :data:`PRODUCTS`, what the
    step needs earlier steps to have made and what it leaves for later ones; a
    step whose needs depend on its parameters (a horizontal layout loads its
    own rows) overrides :meth:`requires`/:meth:`provides`. The spec loader
    refuses a job whose step needs something no earlier step makes.
    """

    name: ClassVar[str]
    params: ClassVar[type[Params]] = Params
    summary: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    makes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def roles(cls, params: Params) -> tuple[str, ...]:
        """Who takes part in this step with these parameters: ``"data"`` (every data
        party of the job) and, when the step opens MPC runtimes dealt by the job's
        dealer, ``"dealer"``. :func:`execute` gives the step a channel to these roles
        only, so a step never waits for a party that does not run it (the dealer
        serves only its MPC runtimes).

        Default: the dealer takes part when the parameters compute on secret
        shares with dealt randomness (``protocol: ss`` or ``split``, unless
        ``provider: he``), the rule :func:`~sharedml.components.dealer.needs_dealer`
        applies to the whole job."""
        return (DATA, DEALER) if deals(params) else (DATA,)

    @classmethod
    def requires(cls, params: Params) -> tuple[str, ...]:
        """What this step needs from earlier steps, with these parameters."""
        return cls.needs

    @classmethod
    def provides(cls, params: Params) -> tuple[str, ...]:
        """What this step leaves for later steps, with these parameters."""
        return cls.makes

    @classmethod
    def check_parties(cls, params: Params, parties: dict[str, PartyConfig]) -> None:
        """Refuse, when the spec loads, parameters these parties cannot run (raise
        :class:`~sharedml.errors.ConfigError`); by default every party set will do."""
        return None

    @classmethod
    def aggregates(cls, params: Params) -> bool:
        """Whether the job's helper party aggregates this step (:meth:`aggregate`): a
        horizontal learning step. The helper is then added to the job as the dealer is."""
        return False

    def aggregate(self, ctx: StepContext, params: Any) -> StepResult:
        """The helper's side of a step that :meth:`aggregates` (it holds no data)."""
        raise ConfigError(f"step {self.name!r} has no aggregator side", step=ctx.step_id)

    @classmethod
    def parse(cls, raw: dict[str, Any] | None, where: str) -> Params:
        """Validate raw parameters; the error names the path of the bad field."""
        try:
            return cls.params.model_validate(raw or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in (where, *first["loc"]))
            raise ConfigError(
                f"invalid parameter {path}: {first['msg']}",
                step=where,
                remedy=f"see 'sharedml components show {cls.name}' for the schema",
            ) from None

    @abstractmethod
    def run(self, ctx: StepContext, params: Any) -> StepResult: ...


def execute(component: Component, ctx: StepContext, params: Params) -> StepResult:
    """Run one step at one party, timing it and scoping its channel tags.

    The step's session reaches the job's data parties, and its dealer only when
    the step declares that the dealer takes part (:meth:`Component.roles`)."""
    start = time.perf_counter()
    s = ctx.session
    dealt = DEALER in component.roles(params)
    among = s.among(tuple(p for p in s.peers if p in ctx.parties or (dealt and p == s.dealer)))
    scoped = replace(among, channel=among.channel.scope(ctx.step_id))
    inner = replace(ctx, session=scoped)
    result = component.run(inner, params)
    result.seconds = time.perf_counter() - start
    return result


class RowsUnlessHorizontal:
    """Needs and makes of a step with a ``layout``: vertical data needs aligned rows
    (``psi``); horizontal data is loaded by the step itself (no PSI), which then
    leaves the rows for later steps, marked as each party's own (``own_rows``)."""

    makes: ClassVar[tuple[str, ...]]

    @classmethod
    def requires(cls, params: Params) -> tuple[str, ...]:
        return () if getattr(params, "layout", "vertical") == "horizontal" else ("rows",)

    @classmethod
    def provides(cls, params: Params) -> tuple[str, ...]:
        horizontal = getattr(params, "layout", "vertical") == "horizontal"
        extra = ("rows", "own_rows") if horizontal else ()
        return tuple(dict.fromkeys((*cls.makes, *extra)))
