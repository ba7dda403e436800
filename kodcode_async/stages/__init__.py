"""The stages of a run, in chain order: each module declares its `PLAN` (stages/base.py: when it is
on, what it builds, what shapes its rows). A new stage is a module plus one line here."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kodcode_async.stages.base import StagePlan

PLANS = {  # name -> module; nothing is imported here, so `--help` stays quick
    "questions": "kodcode_async.stages.questions",
    "tags": "kodcode_async.stages.tagging",
    "solutions": "kodcode_async.stages.solutions",
    "style": "kodcode_async.stages.style",
    "sft": "kodcode_async.stages.sft",
}


def plans() -> list[StagePlan]:
    """Every stage's plan, in chain order."""
    return [import_module(module).PLAN for module in PLANS.values()]
