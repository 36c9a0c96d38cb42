"""docs/training.md documents every key of the trainer's YAML files with the default the YAML has."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from pipelines.core.config import load_options

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "training.md"
CONFIGS = ("train_common", "train_prnet", "train_rnet", "train_params")


def key_tables(text: str) -> dict[str, dict[str, str]]:
    """``{config name: {key: default cell}}`` of the tables headed ``| key (<config>.yaml) | default |``."""
    tables: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^\| key \((train_\w+)\.yaml\) \| default \|", line)
        if head:
            current = tables.setdefault(head.group(1), {})
            continue
        if current is None:
            continue
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        m = re.fullmatch(r"`(\w+)`", cells[0])
        if m and len(cells) >= 2:
            current[m.group(1)] = cells[1]
    return tables


def cell_value(cell: str):
    """A table cell as the YAML value it stands for (``""`` is the empty string)."""
    cell = cell.strip("`")
    if cell in ('""', "''"):
        return ""
    value = yaml.safe_load(cell)
    if isinstance(value, str):
        try:
            return float(value)      # 1e-4 and the like (YAML 1.1 reads them as strings)
        except ValueError:
            return value
    return value


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-12)
    return a == b


def test_key_table_parser_reads_cells():
    text = ("| key (train_x.yaml) | default | meaning |\n|---|---|---|\n| `lr` | 0.0001 | a |\n"
            "| `name` | \"\" | b |\n| `betas` | [0.9, 0.999] | c |\n\nafter\n| `other` | 1 | d |\n")
    tables = key_tables(text)
    assert tables == {"train_x": {"lr": "0.0001", "name": '""', "betas": "[0.9, 0.999]"}}
    assert cell_value("1e-4") == pytest.approx(1e-4) and cell_value('""') == "" and cell_value("null") is None
    assert not same(cell_value("0.5"), 0.25) and not same(cell_value("true"), 1)


@pytest.mark.parametrize("config", CONFIGS)
def test_every_train_key_is_documented_with_its_default(config):
    tables = key_tables(DOC.read_text(encoding="utf-8"))
    assert config in tables, f"docs/training.md has no table headed 'key ({config}.yaml)'"
    table = tables[config]
    problems = []
    for option in load_options(config):
        if option.key not in table:
            problems.append(f"{option.key}: not in the table")
        elif not same(cell_value(table[option.key]), option.default):
            problems.append(f"{option.key}: docs say {table[option.key]}, the YAML {option.default!r}")
    extra = sorted(set(table) - {o.key for o in load_options(config)})
    problems += [f"{k}: documented but not in {config}.yaml" for k in extra]
    assert not problems, f"docs/training.md vs pipelines/configs/{config}.yaml:\n" + "\n".join(problems)
