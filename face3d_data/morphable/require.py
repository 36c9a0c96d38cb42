"""Load the model an option names, once, and check it has what a job needs.

A bad model is a bad option: :func:`require_model` raises :class:`~face3d_data.errors.ConfigError`
(one line naming the option), so a stage fails before any item instead of once per item.
"""

from __future__ import annotations

from face3d_data.errors import ConfigError, InputError
from face3d_data.morphable.loaders import load_model
from face3d_data.morphable.model import MorphableModel

#: What a job may need from a model, and how to tell.
_NEEDS = {
    "triangles": lambda m: m.triangles is not None and len(m.triangles) > 0,
    "texture": lambda m: m.tex_mean is not None,
    "uv": lambda m: getattr(m, "uv", None) is not None,
    "regions": lambda m: m.regions is not None,
}


def require_model(spec, *, needs=(), option: str = "model", purpose: str = "") -> MorphableModel:
    """The model ``spec`` names (a file, a folder or ``"builtin"``), loaded and checked.

    Args:
        spec: the option's value.
        needs: any of ``"triangles"``, ``"texture"``, ``"uv"``, ``"regions"``.
        option: the option's name, for the message.
        purpose: what it is needed for (e.g. ``"synthesis"``), for the message.
    Raises:
        ConfigError: the model is missing, unreadable or lacks something in ``needs``.
    """
    if spec is None or str(spec).strip() == "":
        raise ConfigError(f"{option}: a model is required (a model file/folder or builtin)")
    try:
        model = load_model(spec)
    except (InputError, OSError, ValueError) as exc:
        raise ConfigError(f"{option}: cannot load {str(spec)!r}: {exc}") from None
    for need in needs:
        if need not in _NEEDS:
            raise ValueError(f"needs: unknown requirement {need!r} (expected {sorted(_NEEDS)})")
        if not _NEEDS[need](model):
            what = f" for {purpose}" if purpose else ""
            raise ConfigError(f"{option}: model {model.name!r} ({spec}) has no {need}{what}")
    return model
