"""A YAML config file read into its pydantic model; a bad one is refused naming the field.

Used by every process that starts from a file the operator writes: the node
agent (``node.yaml``), the platform (``--config``), ``sharedml deploy`` (the plan).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sharedml.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml(model: type[M], path: str | Path, what: str, remedy: str | None = None) -> M:
    """``path`` parsed as YAML (an empty file is an empty mapping) and validated as ``model``."""
    path = Path(path)
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}", remedy=remedy) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise ConfigError(f"invalid {what} field {where}: {first['msg']}", remedy=remedy) from None
