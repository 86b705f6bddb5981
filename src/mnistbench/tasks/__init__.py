"""Kinds of problem: how a model is trained, validated, tested and costed, by ModelSpec.task."""
from __future__ import annotations

import dataclasses

from .classify import ClassifyTask
from .detect import DetectTask

TASKS = {"classify": ClassifyTask, "detect": DetectTask}


def option_defaults(kind: str) -> dict:
    """The options of a kind of task (config keys beyond the Config fields) and their defaults."""
    return {f.name: f.default for f in dataclasses.fields(TASKS[kind].Options)}
