"""The core package never imports ray: only a node configured with compute: ray loads it."""

from __future__ import annotations

import subprocess
import sys


def test_core_modules_do_not_import_ray() -> None:
    code = (
        "import sys\n"
        "import sharedml, sharedml.cli, sharedml.scale, sharedml.scale.psi, sharedml.scale.data\n"
        "import sharedml.psi, sharedml.learn.tree.secureboost, sharedml.node.agent\n"
        "from sharedml.scale import ComputeConfig\n"
        "ComputeConfig.model_validate({'ray': {'address': 'auto', 'workers': 2}})\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
