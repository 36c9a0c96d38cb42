"""Stage configuration: documented YAML defaults, overrides, and the matching CLI options.

``pipelines/configs/<stage>.yaml`` holds one top-level key per option, its default value and, as a comment
on the same line (or the comment lines just above it), the help text shown by ``--help``::

    # Rotation angles in degrees; positive = counter-clockwise as displayed.
    angles: [15, 30, 45, 60, -15, -30, -45, -60]
    fill: 0            # border fill value (0-255)

Precedence, lowest first: YAML defaults < ``--config FILE`` < ``--set key=value`` < the stage's
own options (``--angles 15,30``). A stage that declares an options dataclass (``Stage.Options``,
see :mod:`pipelines.core.options`) gets its values converted and checked by the field types (lists
from comma separated text, booleans from yes/no/true/false, finite floats only) and receives the
dataclass instance; the YAML keys must equal its fields. A stage without one gets a dict whose
values keep the type of their default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

import yaml

from face3d_data.errors import ConfigError

#: the stage defaults ship inside the package (``pipelines/configs/<stage>.yaml``), so a wheel has them
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclasses.dataclass
class Option:
    """One documented configuration key."""

    key: str
    default: Any
    help: str


def config_path(stage: str) -> str:
    """Path of a stage's YAML defaults."""
    return os.path.join(CONFIG_DIR, f"{stage}.yaml")


def load_options(stage: str) -> list[Option]:
    """Read ``pipelines/configs/<stage>.yaml``: its keys, defaults and help comments, in file order."""
    path = config_path(stage)
    if not os.path.exists(path):
        return []  # build_config turns a missing file of a registered stage into an error
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    helps: dict[str, str] = {}
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^([A-Za-z_][\w-]*)\s*:(.*)$", line)
        if match:
            key, rest = match.groups()
            inline = _trailing_comment(rest)
            helps[key] = inline or " ".join(p for p in pending if p)
        if not stripped or match:
            pending = []
    return [Option(k, v, helps.get(k, "")) for k, v in values.items()]


def _trailing_comment(rest: str) -> str:
    """The ``# comment`` after a YAML value, ignoring ``#`` inside quotes."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1:].strip()
    return ""


def coerce(key: str, value: Any, default: Any) -> Any:
    """Convert a value given as text (CLI, ``--set``) to the type of ``default``."""
    if not isinstance(value, str):
        return value
    if isinstance(default, bool):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option '{key}' expects true/false, got {value!r}")
    if isinstance(default, (list, tuple)):
        if value.strip().startswith("["):
            parsed = _yaml_value(key, value)
            if not isinstance(parsed, list):
                raise ConfigError(f"option '{key}' expects a list, got {value!r}")
            return parsed
        return [_yaml_value(key, part.strip()) for part in value.split(",") if part.strip()]
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"option '{key}' expects an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"option '{key}' expects a number, got {value!r}") from None
    if isinstance(default, dict):
        parsed = _yaml_value(key, value)
        if not isinstance(parsed, dict):
            raise ConfigError(f"option '{key}' expects a mapping, got {value!r}")
        return parsed
    if default is None and value.strip().lower() in ("null", "none", "~", ""):
        return None
    return value


def _yaml_value(key: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"option '{key}': cannot parse {text!r}") from None


def stage_options_type(stage) -> type | None:
    """The options dataclass a stage declares (``Stage.Options``), or None (plain dict config).

    ``stage`` may be a Stage class or instance, or a registered stage name.
    """
    if isinstance(stage, str):
        from pipelines.registry import STAGES, stage_class

        if stage not in STAGES:
            return None
        stage = stage_class(stage)
    return getattr(stage, "Options", None)


def overrides(config_file: str | None, sets: list[str] | None) -> list[tuple[str, Any, str]]:
    """``(key, value, source)`` of a ``--config`` YAML file (values as parsed), then of each
    ``--set key=value`` (values as text), in precedence order (later wins).

    Raises:
        ConfigError: unreadable or malformed file, or a ``--set`` without ``=``.
    """
    result: list[tuple[str, Any, str]] = []
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except OSError as exc:
            raise ConfigError(f"--config {config_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {config_file}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config {config_file}: expected a mapping of option: value")
        result += [(str(k), v, f"--config {config_file}") for k, v in data.items()]
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        result.append((k.strip(), v, "--set"))
    return result


def build_config(stage, config_file: str | None = None, sets: list[str] | None = None,
                 explicit: dict | None = None):
    """The effective configuration of a stage.

    Args:
        stage: a registered stage name, or a Stage class/instance.
        config_file: optional YAML file with a subset of the keys.
        sets: ``["key=value", ...]`` from ``--set``.
        explicit: ``{key: value}`` from the stage's own options (already parsed or as text).

    Returns:
        An instance of the stage's options dataclass (``Stage.Options``), or a plain dict for a
        stage that declares none.

    Raises:
        ConfigError: missing or inconsistent YAML defaults, unknown key, bad value (wrong type,
        NaN/infinity) or unreadable file.
    """
    name = stage if isinstance(stage, str) else stage.name
    options_type = stage_options_type(stage)
    path = config_path(name)
    if not os.path.exists(path):
        from pipelines.registry import STAGES

        if options_type is not None or name in STAGES:
            raise ConfigError(f"stage {name}: its defaults file {path} is missing (a packaging error: "
                              f"pipelines/configs/*.yaml must ship with the package)")
    options = {o.key: o for o in load_options(name)}
    if options_type is not None:
        from pipelines.core.options import check_defaults

        check_defaults(options_type, {k: o.default for k, o in options.items()}, path)
    cfg = {k: o.default for k, o in options.items()}
    text_keys: set[str] = set()

    def assign(key: str, value: Any, source: str) -> None:
        key = key.replace("-", "_")
        if key not in options:
            known = ", ".join(sorted(options)) or "(this stage has no options)"
            raise ConfigError(f"{source}: unknown option '{key}' for stage {name}; known: {known}")
        if options_type is None:
            cfg[key] = coerce(key, value, options[key].default)
        else:
            cfg[key] = value
            if isinstance(value, str) and not source.startswith("--config"):
                text_keys.add(key)
            else:
                text_keys.discard(key)

    for k, v, source in overrides(config_file, sets):
        assign(k, v, source)
    for k, v in (explicit or {}).items():
        assign(k, v, f"--{k}")
    if options_type is None:
        return cfg
    from pipelines.core.options import make_options

    return make_options(options_type, cfg, source=f"stage {name}", text_keys=text_keys)


def as_options(stage, cfg):
    """``cfg`` as the stage's options instance (a dict is checked and converted), or as given
    for a stage without an options dataclass."""
    options_type = stage_options_type(stage)
    if options_type is None or isinstance(cfg, options_type):
        return cfg
    from pipelines.core.options import make_options

    return make_options(options_type, dict(cfg), source=f"stage {stage.name}")


def plain_config(cfg) -> dict:
    """A JSON-ready dict of a configuration (options instance or dict)."""
    to_dict = getattr(cfg, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(cfg)


def config_hash(cfg, seed: int) -> str:
    """A short fingerprint of the configuration and the seed."""
    blob = json.dumps({"cfg": plain_config(cfg), "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
