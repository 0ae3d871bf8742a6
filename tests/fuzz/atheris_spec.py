"""Coverage-guided fuzzing of the job-spec parser with atheris (libFuzzer), issue 14.

Not a pytest module and not in CI: ``make fuzz`` installs the ``fuzz`` extra and
runs it for ``FUZZ_SECONDS`` (default 300) from the example specs, keeping the
corpus it grows in ``.fuzz/spec``. Hypothesis fuzzes the same parser in CI
(``tests/platform/test_hardening_spec.py``); libFuzzer adds inputs chosen for
new coverage of ``sharedml`` and PyYAML's Python code.

The parser's contract: any text either loads as a spec or is refused with a
:class:`~sharedml.errors.ConfigError` (``yaml.YAMLError`` for text that is not
YAML, as :func:`~sharedml.components.jobspec.parse_yaml` documents); anything
else is a crash, and an input slower than libFuzzer's ``-timeout`` a hang.
Run by hand::

    .venv/bin/python tests/fuzz/atheris_spec.py .fuzz/spec -max_total_time=60 -timeout=5
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["sharedml", "yaml"]):
    import yaml

    from sharedml.components import jobspec, registry
    from sharedml.errors import ConfigError


def one_input(data: bytes) -> None:
    """One spec as the API and ``sharedml run`` get it: text, parsed, then validated
    (``load`` on the parsed mapping, so no input is taken for a file name)."""
    text = data.decode("utf-8", errors="replace")
    try:
        raw = jobspec.parse_yaml(text)
    except (ConfigError, yaml.YAMLError):
        return
    if not isinstance(raw, dict):
        return
    try:
        jobspec.load(raw)
    except ConfigError:
        return


def main() -> None:
    for name in registry.available():  # import every component now, not in the first input
        registry.get(name)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
