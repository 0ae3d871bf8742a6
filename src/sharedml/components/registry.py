"""Where components are found: built-ins plus the ``sharedml.components`` entry point.

A new algorithm ships as a new package (8.2-1) whose ``pyproject.toml`` says::

    [project.entry-points."sharedml.components"]
    my_step = "my_package.module:MyComponent"

The entry points are read once per process and each class is imported once
(``importlib.metadata.entry_points()`` costs tens of milliseconds, and a spec
names a component per step: a 600-step spec took 47 s to check when every
lookup scanned them, issue 14 item 2). A package installed while a process
runs is seen after :func:`refresh`.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from sharedml.components.base import Component
from sharedml.errors import ConfigError

#: Built-in components: name -> "module:Class" (imported on first use).
BUILTIN: dict[str, str] = {}
BUILTIN["describe"] = "sharedml.components.describe:DescribeStep"
BUILTIN["psi"] = "sharedml.components.data:PsiStep"
BUILTIN["split"] = "sharedml.components.data:SplitStep"
BUILTIN["align"] = "sharedml.components.align:AlignStep"
BUILTIN["scale"] = "sharedml.components.preprocess:ScaleStep"
BUILTIN["fill"] = "sharedml.components.preprocess:FillStep"
BUILTIN["woe"] = "sharedml.components.preprocess:WoeStep"
BUILTIN["binning"] = "sharedml.components.preprocess:BinStep"
BUILTIN["correlation"] = "sharedml.components.stats:CorrelationStep"
BUILTIN["onehot"] = "sharedml.components.onehot:OneHotStep"
BUILTIN["train"] = "sharedml.components.learn:TrainStep"
BUILTIN["predict"] = "sharedml.components.learn:PredictStep"
BUILTIN["evaluate"] = "sharedml.components.learn:EvaluateStep"
BUILTIN["cv"] = "sharedml.components.selection:CVStep"
BUILTIN["tune"] = "sharedml.components.selection:TuneStep"


@functools.cache
def _load(path: str) -> type[Component]:
    module, _, attr = path.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if not (isinstance(obj, type) and issubclass(obj, Component)):
        raise ConfigError(f"{path} is not a sharedml Component")
    return obj


def available() -> dict[str, str]:
    """Every known component name and where it comes from."""
    return dict(_discovered())


@functools.cache
def _discovered() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group="sharedml.components"):
        found.setdefault(ep.name, ep.value)
    return found


def refresh() -> None:
    """Forget the components found so far: the next lookup reads the entry points again."""
    _discovered.cache_clear()
    _load.cache_clear()


def get(name: str) -> type[Component]:
    """The component class registered under ``name``."""
    known = _discovered()
    if name not in known:
        raise ConfigError(
            f"unknown step {name!r}",
            remedy=f"use one of {sorted(known)} or install the package that provides it",
        )
    return _load(known[name])
