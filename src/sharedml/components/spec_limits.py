"""How large a job spec may be, and the YAML reading that holds to it (8.3-2).

A job spec is data a remote user sends the platform, so reading it must cost
what its size says and no more (issue 14 item 2: a 418-character YAML alias
bomb became 8.5 MB; JSON 5,000 levels deep crashed the parser's recursion).
The same limits hold for YAML text and for an already-parsed mapping (a JSON
body), so one cannot be used to get round the other:

1. **No aliases.** ``*name`` (and the merge key ``<<: *name`` built on it) is
   refused while composing, before anything is expanded: a spec never needs
   one, and an alias is how a few hundred characters name gigabytes.
2. **Depth** at most :data:`MAX_DEPTH` nested mappings/lists.
3. **Size**: at most :data:`MAX_CHARS` characters of text and
   :data:`MAX_NODES` scalars, mappings and lists in all.
4. **Steps**: at most :data:`MAX_STEPS`.

Errors are :class:`~sharedml.errors.ConfigError` naming the limit and where
it was passed (line and column for text), never quoting the input.
"""

from __future__ import annotations

from typing import Any

import yaml

from sharedml.errors import ConfigError

MAX_CHARS = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_STEPS = 1_000

_REMEDY = "a job spec is a few hundred lines: parties and a list of steps"


class BoundedComposer(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases and counts depth and nodes as it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _text_error("aliases (*name) are not allowed", self.peek_event())
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _text_error(f"more than {MAX_NODES} values", self.peek_event())
        nested = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _text_error(f"nested deeper than {MAX_DEPTH} levels", self.peek_event())
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def _text_error(what: str, event: Any) -> ConfigError:
    mark = getattr(event, "start_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(f"job spec refused: {what}{where}", remedy=_REMEDY)


def check_text(text: str) -> None:
    """Refuse spec text longer than :data:`MAX_CHARS` before parsing it."""
    if len(text) > MAX_CHARS:
        raise ConfigError(
            f"job spec refused: longer than {MAX_CHARS} characters ({len(text)})", remedy=_REMEDY
        )


def check_shape(raw: Any) -> None:
    """Refuse a parsed spec deeper than :data:`MAX_DEPTH`, larger than :data:`MAX_NODES`
    values, or with more than :data:`MAX_STEPS` steps (iterative: no recursion to exhaust)."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(raw, 0)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"job spec refused: more than {MAX_NODES} values", remedy=_REMEDY)
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise ConfigError(
                    f"job spec refused: nested deeper than {MAX_DEPTH} levels", remedy=_REMEDY
                )
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    steps = raw.get("steps") if isinstance(raw, dict) else None
    if isinstance(steps, list) and len(steps) > MAX_STEPS:
        raise ConfigError(
            f"job spec refused: {len(steps)} steps, at most {MAX_STEPS}",
            remedy="split the work into several jobs",
        )


def short(name: object, limit: int = 48) -> str:
    """A name from the input, cut for an error message (a message never carries a whole input)."""
    text = str(name)
    return text if len(text) <= limit else text[: limit - 1] + "…"
