"""The one place training tasks are declared: ``name -> "module:Class"``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from face3d_data.errors import ConfigError

TASKS: dict[str, str] = {
    "prnet": "face3d_data.train.prnet:PRNetTask",
    "rnet": "face3d_data.train.rnet:RNetTask",
    "params": "face3d_data.train.params:ParamsTask",
}


def task_class(name: str):
    """The :class:`~face3d_data.train.task.Task` subclass registered as ``name``.

    Raises:
        ConfigError: unknown task, or its module is not there (yet).
    """
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}")
    module_name, class_name = TASKS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(f"task {name!r} is not available in this version ({module_name} missing)") from None
        raise
    return getattr(module, class_name)


def make_task(name: str, cfg: Mapping[str, Any]):
    """Build and check a task from a resolved configuration dict."""
    task = task_class(name)(cfg)
    task.check_config()
    return task
