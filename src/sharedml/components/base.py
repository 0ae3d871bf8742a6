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

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from sharedml.datasets import DatasetFiles, DatasetSource
from sharedml.errors import ConfigError
from sharedml.session import MPCRuntime, Provider, Session

if TYPE_CHECKING:
    import pandas as pd


class Params(BaseModel):
    """Base of every component's parameter schema: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


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
    party's own data (default: names are file paths).
    """

    session: Session
    party: PartyConfig
    parties: dict[str, PartyConfig]
    state: dict[str, Any]
    out_dir: Path
    step_id: str
    progress: Callable[[float, str], None] = lambda fraction, message: None
    datasets: DatasetSource = field(default_factory=DatasetFiles)

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
        ids = list(self.party.id_columns if id_columns is None else id_columns)
        return self.datasets.load(self.party.dataset, ids, self.party.label,
                                  party=self.party.name, step=self.step_id)

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
    #: "all" — every party runs it; otherwise the roles are checked by ``run``.
    summary: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    makes: ClassVar[tuple[str, ...]] = ()

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

    The step's session reaches the job's data parties and its dealer only."""
    start = time.perf_counter()
    s = ctx.session
    among = s.among(tuple(p for p in s.peers if p in ctx.parties or p == s.dealer))
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
