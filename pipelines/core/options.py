"""Typed stage options: a frozen dataclass per stage, built and checked by the runner.

A stage declares its options as a frozen dataclass whose fields are the keys of
``pipelines/configs/<stage>.yaml`` (the YAML holds the defaults and the help text)::

    from pipelines.core import StageOptions

    @dataclasses.dataclass(frozen=True)
    class PosmapOptions(StageOptions):
        data_root: str | None
        model: str
        resolution: int
        size_jitter: list[float]
        decode: Literal["exact", "bilinear", "nearest"]
        splits: dict

    class Posmap(Stage):
        name = "posmap"
        Options = PosmapOptions

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``X | None`` (``Optional[X]``),
``Literal[...]``, ``list[X]``, ``tuple[X, ...]`` / ``tuple[X, Y]`` (stored as a list), ``dict``
(``dict[str, X]``) and ``Any`` (taken as given). Text from the command line (``--set``, the
stage's own flags) is converted by the field type; values from YAML files are checked against it.
Floats must be finite. Fields should have no default: the YAML file is the one place defaults
live (a field default, when present, must equal the YAML default).

The instance keeps dict-style reads (``cfg["key"]``, ``cfg.get("key")``, ``"key" in cfg``,
``dict(cfg)``) so that code written against plain dict configurations keeps working.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import math
import sys
import typing
from typing import Any

import yaml

from face3d_data.errors import ConfigError

_MISSING = object()


class StageOptions(collections.abc.Mapping):
    """Base of a stage's options dataclass: attribute access plus read-only mapping access."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._field_names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._field_names())

    def __len__(self) -> int:
        return len(self._field_names())

    def __contains__(self, key: object) -> bool:
        return key in self._field_names()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._field_names())
        return f"{type(self).__name__}({body})"

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict:
        """A plain ``{key: value}`` copy (JSON-ready: lists, dicts, scalars)."""
        return {k: _plain(getattr(self, k)) for k in self._field_names()}

    def replace(self, **changes: Any) -> "StageOptions":
        """A copy with some options changed (values checked like ``--config`` values)."""
        data = self.to_dict()
        data.update(changes)
        return make_options(type(self), data, source="replace()")

    __hash__ = object.__hash__


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- type specs
# A spec is a small tuple: ("bool",), ("int",), ("float",), ("str",), ("any",), ("none",),
# ("dict", value_spec), ("list", elem_spec), ("tuple", [specs]) | ("tuple", elem_spec, ...),
# ("literal", values), ("union", [specs]).

_NAMES = {"bool": ("bool",), "int": ("int",), "float": ("float",), "str": ("str",),
          "Any": ("any",), "None": ("none",), "NoneType": ("none",), "dict": ("dict", ("any",)),
          "list": ("list", ("any",)), "tuple": ("list", ("any",)), "object": ("any",)}


def _spec_from_ast(node: ast.AST, where: str) -> tuple:
    if isinstance(node, ast.Constant) and node.value is None:
        return ("none",)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        return _spec_from_ast(ast.parse(node.value, mode="eval").body, where)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_spec_from_ast(node.left, where), _spec_from_ast(node.right, where)])
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = node.id if isinstance(node, ast.Name) else node.attr
        if name in _NAMES:
            return _NAMES[name]
    if isinstance(node, ast.Subscript):
        base = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Literal":
            return ("literal", tuple(ast.literal_eval(a) for a in args))
        if base in ("Optional",):
            return _union([_spec_from_ast(args[0], where), ("none",)])
        if base == "Union":
            return _union([_spec_from_ast(a, where) for a in args])
        if base in ("list", "List", "Sequence"):
            return ("list", _spec_from_ast(args[0], where))
        if base in ("tuple", "Tuple"):
            if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
                return ("list", _spec_from_ast(args[0], where))
            return ("tuple", [_spec_from_ast(a, where) for a in args])
        if base in ("dict", "Dict", "Mapping"):
            return ("dict", _spec_from_ast(args[1], where) if len(args) == 2 else ("any",))
    raise TypeError(f"{where}: unsupported option type {ast.unparse(node)!r}")


def _spec_from_type(tp: Any, where: str) -> tuple:
    if isinstance(tp, str):
        return _spec_from_ast(ast.parse(tp, mode="eval").body, where)
    if tp is None or tp is type(None):
        return ("none",)
    if tp is typing.Any:
        return ("any",)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return ("literal", tuple(args))
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is getattr(
            __import__("types"), "UnionType", None)):
        return _union([_spec_from_type(a, where) for a in args])
    if origin in (list, collections.abc.Sequence):
        return ("list", _spec_from_type(args[0], where) if args else ("any",))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return ("list", _spec_from_type(args[0], where))
        return ("tuple", [_spec_from_type(a, where) for a in args]) if args else ("list", ("any",))
    if origin in (dict, collections.abc.Mapping):
        return ("dict", _spec_from_type(args[1], where) if len(args) == 2 else ("any",))
    name = getattr(tp, "__name__", None)
    if name in _NAMES:
        return _NAMES[name]
    raise TypeError(f"{where}: unsupported option type {tp!r}")


def _union(specs: list[tuple]) -> tuple:
    flat: list[tuple] = []
    for s in specs:
        for part in (s[1] if s[0] == "union" else [s]):
            if part not in flat:
                flat.append(part)
    return flat[0] if len(flat) == 1 else ("union", flat)


def field_specs(options_type: type) -> dict[str, tuple]:
    """``{field: type spec}`` of an options dataclass (raises TypeError on unsupported types)."""
    if not (dataclasses.is_dataclass(options_type) and isinstance(options_type, type)):
        raise TypeError(f"{options_type!r} is not a dataclass")
    return {f.name: _spec_from_type(f.type, f"{options_type.__name__}.{f.name}")
            for f in dataclasses.fields(options_type)}


def describe(spec: tuple) -> str:
    """A reader's name for a type spec (used in error messages)."""
    kind = spec[0]
    if kind == "literal":
        return "one of " + ", ".join(repr(v) for v in spec[1])
    if kind == "union":
        return " or ".join(describe(s) for s in spec[1])
    if kind == "list":
        plural = {"bool": "true/false values", "int": "integers", "float": "numbers",
                  "str": "strings", "dict": "mappings"}.get(spec[1][0])
        return f"a list of {plural}" if plural else (
            "a list" if spec[1] == ("any",) else f"a list ({describe(spec[1])} each)")
    if kind == "tuple":
        return f"a list of {len(spec[1])} values ({', '.join(describe(s) for s in spec[1])})"
    if kind == "dict":
        return "a mapping"
    return {"bool": "true/false", "int": "an integer", "float": "a number", "str": "a string",
            "none": "null", "any": "a value"}[kind]


def is_flag(spec: tuple) -> bool:
    """True for a bool option (``--x/--no-x`` on the command line)."""
    return spec == ("bool",)


def is_list(spec: tuple) -> bool:
    """True for a list option (``--x a b c`` on the command line)."""
    return spec[0] in ("list", "tuple")


# ---------------------------------------------------------------- conversion

class _Bad(Exception):
    pass


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise _Bad(f"cannot parse {text!r}") from None


def convert(key: str, value: Any, spec: tuple, from_text: bool) -> Any:
    """Check ``value`` against ``spec`` (converting it first when it is command-line text).

    Raises:
        ConfigError: naming the option, the expected type and the value given.
    """
    try:
        return _convert(value, spec, from_text)
    except _Bad as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise ConfigError(f"option '{key}' expects {describe(spec)}, got {value!r}{detail}") from None


def _convert(value: Any, spec: tuple, text: bool) -> Any:  # noqa: C901 - one branch per type
    kind = spec[0]
    if kind == "any":
        return _parse_yaml(value) if text and isinstance(value, str) else value
    if kind == "none":
        if value is None or (text and isinstance(value, str)
                             and value.strip().lower() in ("null", "none", "~", "")):
            return None
        raise _Bad("")
    if kind == "union":
        members = spec[1]
        # null first, so "none" is not taken as the string "none" by a str | None option
        if ("none",) in members:
            try:
                return _convert(value, ("none",), text)
            except _Bad:
                pass
        errors = []
        for member in members:
            if member == ("none",):
                continue
            try:
                return _convert(value, member, text)
            except _Bad as exc:
                errors.append(str(exc))
        raise _Bad(next((e for e in errors if e), ""))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        raise _Bad("")
    if kind == "int":
        if text and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Bad("") from None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return int(value)
            raise _Bad("")
        return int(value)
    if kind == "float":
        if text and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _Bad("") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad("")
        value = float(value)
        if not math.isfinite(value):
            raise _Bad("NaN and infinity are not allowed")
        return value
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. ``fill: 0`` in a YAML file for a text option
        raise _Bad("")
    if kind == "literal":
        choices = spec[1]
        if value in choices and not (isinstance(value, bool) and True not in choices):
            return value
        if text and isinstance(value, str):
            for choice in choices:
                if str(choice) == value.strip():
                    return choice
        raise _Bad("")
    if kind in ("list", "tuple"):
        if text and isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                value = _parse_yaml(stripped)
            else:
                value = [part.strip() for part in stripped.split(",") if part.strip()]
                parts = value
                if kind == "list":
                    return [_convert(p, spec[1], True) for p in parts]
                if len(parts) != len(spec[1]):
                    raise _Bad(f"{len(parts)} value(s) given")
                return [_convert(p, s, True) for p, s in zip(parts, spec[1])]
        if not isinstance(value, (list, tuple)):
            raise _Bad("")
        if kind == "list":
            return [_convert(v, spec[1], False) for v in value]
        if len(value) != len(spec[1]):
            raise _Bad(f"{len(value)} value(s) given")
        return [_convert(v, s, False) for v, s in zip(value, spec[1])]
    if kind == "dict":
        if text and isinstance(value, str):
            value = _parse_yaml(value)
        if not isinstance(value, dict):
            raise _Bad("")
        return {str(k): _convert(v, spec[1], False) for k, v in value.items()}
    raise _Bad(f"unknown type {spec!r}")


def make_options(options_type: type, values: dict, source: str = "config",
                 text_keys: collections.abc.Container = ()) -> StageOptions:
    """Build an options instance from ``values`` (every field must be present, no other key).

    Args:
        text_keys: keys whose value is command-line text (converted by the field type); other
            values are checked as given (YAML / Python values).
    """
    specs = field_specs(options_type)
    unknown = sorted(set(values) - set(specs))
    missing = [k for k in specs if k not in values]
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {unknown} for {options_type.__name__}")
    if missing:
        raise ConfigError(f"{source}: option(s) {missing} of {options_type.__name__} have no value")
    data = {k: convert(k, values[k], specs[k], k in text_keys) for k in specs}
    return options_type(**data)


def check_defaults(options_type: type, defaults: dict, source: str) -> None:
    """The YAML keys must be exactly the dataclass fields; field defaults must match the YAML.

    Raises:
        ConfigError: naming the keys that are in one but not the other.
    """
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    only_yaml = sorted(set(defaults) - set(fields))
    only_class = sorted(set(fields) - set(defaults))
    if only_yaml or only_class:
        parts = []
        if only_yaml:
            parts.append(f"keys not declared in {options_type.__name__}: {only_yaml}")
        if only_class:
            parts.append(f"fields of {options_type.__name__} missing from the YAML: {only_class}")
        raise ConfigError(f"{source}: " + "; ".join(parts))
    for name, f in fields.items():
        if f.default is not dataclasses.MISSING and f.default != defaults[name]:
            raise ConfigError(f"{source}: {name}: YAML default {defaults[name]!r} differs from "
                              f"{options_type.__name__}.{name} = {f.default!r} (keep defaults in the YAML)")
