"""Job components: the steps a job spec is made of, and their registry."""

from sharedml.components.base import (
    Component,
    Params,
    PartyConfig,
    StepContext,
    StepResult,
    execute,
)

__all__ = ["Component", "Params", "PartyConfig", "StepContext", "StepResult", "execute"]
