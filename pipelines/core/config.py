"""Stage configuration: documented YAML defaults, overrides, and the matching CLI options.

``pipelines/configs/<stage>.yaml`` holds one top-level key per option, its default value and, as a comment
on the same line (or the comment lines just above it), the help text shown by ``--help``::

    # Rotation angles in degrees; positive = counter-clockwise as displayed.
    angles: [15, 30, 45, 60, -15, -30, -45, -60]
    fill: 0            # border fill value (0-255)

Precedence, lowest first: YAML defaults < ``--config FILE`` < ``--set key=value`` < the stage's
own options (``--angles 15,30``). Values keep the type of their default (lists from comma
separated text, booleans from yes/no/true/false).
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
        return []
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


def build_config(stage: str, config_file: str | None = None, sets: list[str] | None = None,
                 explicit: dict | None = None) -> dict:
    """The effective configuration of a stage.

    Args:
        config_file: optional YAML file with a subset of the keys.
        sets: ``["key=value", ...]`` from ``--set``.
        explicit: ``{key: value}`` from the stage's own options (already parsed or as text).

    Raises:
        ConfigError: unknown key, bad value or unreadable file.
    """
    options = {o.key: o for o in load_options(stage)}
    cfg = {k: o.default for k, o in options.items()}

    def assign(key: str, value: Any, source: str) -> None:
        key = key.replace("-", "_")
        if key not in options:
            known = ", ".join(sorted(options)) or "(this stage has no options)"
            raise ConfigError(f"{source}: unknown option '{key}' for stage {stage}; known: {known}")
        cfg[key] = coerce(key, value, options[key].default)

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
        for k, v in data.items():
            assign(str(k), v, f"--config {config_file}")
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        assign(k.strip(), v, "--set")
    for k, v in (explicit or {}).items():
        assign(k, v, f"--{k}")
    return cfg


def config_hash(cfg: dict, seed: int) -> str:
    """A short fingerprint of everything that changes outputs (the config and the seed)."""
    blob = json.dumps({"cfg": cfg, "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
