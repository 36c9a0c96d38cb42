"""The one place stages are declared: ``name -> module``.

Each module defines one :class:`pipelines.core.Stage` subclass whose ``name`` is the stage name.
Adding a stage = one module in ``pipelines/stages/``, one ``pipelines/configs/<name>.yaml``, one line here.
"""

from __future__ import annotations

import importlib
import inspect

from face3d_data.errors import ConfigError
from pipelines.core.stage import Stage

STAGES: dict[str, str] = {
    "synth_300wlp": "pipelines.stages.synth_300wlp",
    "build_model": "pipelines.stages.build_model",
    "fit_3dmm": "pipelines.stages.fit_3dmm",
    "rotate_300wlp": "pipelines.stages.rotate_300wlp",
    "profile_300wlp": "pipelines.stages.profile_300wlp",
    "uv_assets": "pipelines.stages.uv_assets",
    "posmap": "pipelines.stages.posmap",
    "validate_posmap": "pipelines.stages.validate_posmap",
    "pncc": "pipelines.stages.pncc",
    "depth": "pipelines.stages.depth",
    "data_preparation": "pipelines.stages.data_preparation",
    "parsing": "pipelines.stages.parsing",
    "register_scans": "pipelines.stages.register_scans",
    "evaluate_meshes": "pipelines.stages.evaluate_meshes",
    "augment_views": "pipelines.stages.augment_views",
}


def stage_class(name: str) -> type[Stage]:
    """The Stage subclass registered as ``name``.

    Raises:
        ConfigError: unknown stage, or a module without a matching Stage subclass.
    """
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(sorted(STAGES))}, demo")
    module = importlib.import_module(STAGES[name])
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Stage) and obj is not Stage and obj.name == name \
                and obj.__module__ == module.__name__:
            return obj
    raise ConfigError(f"module {STAGES[name]} defines no Stage subclass named {name!r}")
