"""A data provider's process loads no part of the operator's platform.

The node agent and the platform's node service share only the control wire
(:mod:`sharedml.control`); importing the agent must not pull in the
platform's modules or its database layer (SQLAlchemy).
"""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after_import(module: str) -> list[str]:
    """Every module loaded by a fresh interpreter that imports ``module``."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return list(json.loads(proc.stdout))


def test_node_agent_imports_neither_the_platform_nor_sqlalchemy() -> None:
    loaded = _modules_after_import("sharedml.node.agent")
    assert "sharedml.node.agent" in loaded and "sharedml.control" in loaded
    leaked = [
        m for m in loaded
        if m == "sqlalchemy" or m.startswith(("sqlalchemy.", "sharedml.platform"))
    ]
    assert leaked == []


def test_the_platform_node_service_speaks_the_same_control_wire() -> None:
    """The check above can fail: the platform side does load SQLAlchemy."""
    loaded = _modules_after_import("sharedml.platform.nodes")
    assert "sharedml.control" in loaded and "sqlalchemy" in loaded
