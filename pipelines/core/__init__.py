"""The stage runner: configuration, parallel execution, resuming, manifests, previews.

The names below are imported on first use, so that a worker process, which needs only
:mod:`pipelines.core.executor`, the stage's module and :class:`Stage`/:class:`Item`/
:class:`StageOptions`, does not import the runner's manifest writer (pandas, pyarrow: ~0.4 s per
process) or anything else it never calls.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "available_cores": "face3d_data.cores",
    "build_config": "pipelines.core.config",
    "config_hash": "pipelines.core.config",
    "load_options": "pipelines.core.config",
    "read_manifest": "pipelines.core.manifest",
    "StageOptions": "pipelines.core.options",
    "RunOptions": "pipelines.core.runner",
    "RunSummary": "pipelines.core.runner",
    "run_stage": "pipelines.core.runner",
    "in_shard": "pipelines.core.seeding",
    "item_seed": "pipelines.core.seeding",
    "parse_shard": "pipelines.core.seeding",
    "Context": "pipelines.core.stage",
    "Item": "pipelines.core.stage",
    "Stage": "pipelines.core.stage",
}

__all__ = ["Stage", "Item", "Context", "RunOptions", "RunSummary", "run_stage", "build_config",
           "config_hash", "load_options", "read_manifest", "item_seed", "in_shard", "parse_shard",
           "StageOptions", "available_cores"]


def __getattr__(name: str):
    """``pipelines.core.NAME`` for the names of ``__all__``: imported from its module, then kept."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
