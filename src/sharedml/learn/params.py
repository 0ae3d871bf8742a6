"""Hyper-parameters declared once: each one's type, rule, default and meaning.

As scikit-learn's ``_parameter_constraints``: an estimator class lists its
parameters in ``params`` (a name -> :class:`Param` mapping) and everything else
is derived from that one declaration:

* ``__init__`` takes exactly those keywords and stores them as given
  (STYLE.md 10); the class's signature is generated from them, so
  ``inspect.signature`` shows every parameter and its default;
* :meth:`Declared.get_params` (model files, fingerprints) and
  :meth:`Declared._check_params` (called at ``fit``: one
  :class:`~sharedml.errors.ConfigError` naming the class, the parameter and
  its rule);
* the job step's schema (:class:`sharedml.components.learn.TrainParams`), with
  each parameter's type, bounds and description, and the defaults per model.

Rules that depend on the data (HE-LR's batch against the widest party) stay
with the protocol that needs them.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sharedml.errors import ConfigError
from sharedml.session import PROVIDERS

_KINDS: dict[type, Any] = {
    int: numbers.Integral, float: numbers.Real, str: str, bool: bool, list: (list, tuple)
}
#: the longest list a ``list`` parameter takes
MAX_ITEMS = 8
#: Bounds shared by several learners (issue 14 item 8: a job could ask for a billion
#: trees, a ten-million-bit key or a 10^12-row batch and tie a node up for days).
MAX_TREES = 10_000
MAX_KEY_BITS = 8192
MAX_BATCH_ROWS = 1 << 22
#: No number a job sets may exceed this in magnitude, nor be NaN or infinite.
MAX_MAGNITUDE = 1e9


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its type, the values it may take, its default and meaning.

    Attributes:
        kind: ``int``, ``float``, ``str``, ``bool`` (an ``int`` parameter takes
            any integral number; a ``float`` one any real number) or ``list``: a
            list of integers (layer sizes), each within ``low``/``high``, at most
            ``MAX_ITEMS`` of them.
        default: the value ``__init__`` stores when none is given.
        description: one line for ``sharedml components show``.
        low, high: bounds, inclusive unless ``open_low``/``open_high``.
        choices: the allowed values of a ``str`` parameter.
        optional: ``None`` is allowed too.
        job: whether a job spec's step may set it (else it keeps its default there).
    """

    kind: type
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False
    job: bool = True

    def rule(self) -> str:
        """The rule in words, e.g. ``an integer ≥ 1`` or ``one of 'own', 'none'``."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {
                int: "an integer",
                float: "a number",
                str: "a string",
                bool: "true or false",
                list: f"a list of at most {MAX_ITEMS} integers, each",
            }[self.kind]
            if self.low is not None and self.high is not None:
                left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
                text += f" in {left}{_num(self.low)}, {_num(self.high)}{right}"
            elif self.low is not None:
                text += f" {'>' if self.open_low else '≥'} {_num(self.low)}"
            elif self.high is not None:
                text += f" {'<' if self.open_high else '≤'} {_num(self.high)}"
        return text + (" or None" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` keeps this rule."""
        if value is None:
            return self.optional
        if isinstance(value, bool) and self.kind is not bool:
            return False
        if not isinstance(value, _KINDS[self.kind]):
            return False
        if self.choices is not None:
            return value in self.choices
        if self.kind is list:
            return len(value) <= MAX_ITEMS and all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) and self._within(float(v))
                for v in value
            )
        return self.kind not in (int, float) or self._within(float(value))

    def _within(self, x: float) -> bool:
        if not math.isfinite(x) or abs(x) > MAX_MAGNITUDE:
            return False
        if self.low is not None and (x <= self.low if self.open_low else x < self.low):
            return False
        return self.high is None or (x < self.high if self.open_high else x <= self.high)


def _num(x: float) -> str:
    """A bound as a reader writes it: ``4194304``, ``0.5``, ``1e+06`` for a round float."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e7 else f"{x:g}"


def with_defaults(params: Mapping[str, Param], **defaults: Any) -> dict[str, Param]:
    """``params`` with some defaults changed (a model that shares another's rules)."""
    unknown = sorted(set(defaults) - set(params))
    if unknown:
        raise ValueError(f"no parameters {unknown} to give defaults to")
    return {n: replace(p, default=defaults[n]) if n in defaults else p for n, p in params.items()}


class Declared:
    """Base of estimators whose hyper-parameters are declared in ``params``."""

    params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        keywords = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=p.default)
            for n, p in cls.params.items()
        ]
        cls.__signature__ = inspect.Signature(keywords)  # type: ignore[attr-defined]

    def __init__(self, **given: Any) -> None:
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected parameters {unknown}; "
                f"it takes {sorted(self.params)}"
            )
        for name, param in self.params.items():
            setattr(self, name, given.get(name, param.default))

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (scikit-learn style)."""
        return {n: getattr(self, n) for n in self.params}

    def _check_params(self) -> None:
        """Every parameter against its declared rule (called at ``fit``)."""
        for name, param in self.params.items():
            value = getattr(self, name)
            if not param.accepts(value):
                raise ConfigError(
                    f"{type(self).__name__}: {name} must be {param.rule()}, got {value!r}",
                    step="fit",
                )

    @classmethod
    def known_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``params`` this class declares (a model file may hold
        parameters since retired, such as the dealer's name before it moved to
        the session)."""
        return {k: v for k, v in params.items() if k in cls.params}


#: The randomness of a secret-shared learner's MPC runtime (declared by every one).
PROVIDER = Param(str, None, "SS randomness: the job's dealer (default when the job has one) or "
                 "Paillier between two parties", choices=PROVIDERS, optional=True)
