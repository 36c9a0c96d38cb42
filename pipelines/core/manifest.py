"""Manifests and failure reports written at the end of a stage run.

- ``manifest.parquet`` (+ ``manifest.csv`` for people): one row per item — key, status, inputs,
  outputs, seconds, seed and the stage's own columns; the run's metadata (effective config,
  package version, git revision, host, command) is stored in the parquet file's metadata and in
  ``manifest.run.json``.
- ``failures.csv``: one row per failed item — key, stage, error class, message (naming the file).
  Absent when nothing failed.

Keys and messages made from file names that are not valid UTF-8 are written with those bytes as
``\\xNN`` (``inputs``/``outputs`` columns are JSON, where they appear as ``\\udcNN`` escapes).

pandas and pyarrow are imported when a manifest is written or read, not with this module: a
stage module that imports :func:`read_manifest` for its ``list_items`` does not load them into
every worker process (the runner, in the main process, imports pandas up front).
"""

from __future__ import annotations

import io as _io
import json
import os
import platform
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import face3d_data
from face3d_data.io import write_bytes, write_text

if TYPE_CHECKING:
    import pandas as pd

FAILURE_COLUMNS = ["key", "stage", "error_class", "message", "inputs"]


def git_revision() -> str | None:
    """The repository's current commit, when the package runs from a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_metadata(stage: str, cfg: dict, options: dict, fingerprint: str) -> dict:
    """What a manifest records about the run itself."""
    return {
        "stage": stage,
        "config": cfg,
        "config_hash": fingerprint,
        "options": options,
        "package_version": face3d_data.__version__,
        "git_revision": git_revision(),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "command": " ".join(sys.argv),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "frame": "canonical: 0-based, pixel centres at integer coordinates, x right, y down",
    }


def printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name (surrogate escapes) written as ``\\xNN``,
    so manifests and reports can always be written as UTF-8."""
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _table(records: list[dict]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in records:
        row = {k: printable(v) for k, v in r.items()}
        row["inputs"] = json.dumps(r.get("inputs", {}), sort_keys=True)
        row["outputs"] = json.dumps(r.get("outputs", []))
        rows.append(row)
    frame = pd.DataFrame(rows)
    first = [c for c in ("key", "status", "inputs", "outputs", "seconds", "seed") if c in frame]
    return frame[first + [c for c in frame.columns if c not in first]]


def write_manifest(out_dir: str, name: str, records: list[dict], metadata: dict) -> str:
    """Write ``<name>.parquet``, ``<name>.csv`` and ``<name>.run.json`` metadata; return the parquet path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _table(sorted(records, key=lambda r: r["key"]))
    for column in frame.columns:  # mixed-type stage columns are stored as text
        if frame[column].dtype == object and column not in ("key", "status"):
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str)
                                              else json.dumps(v, default=str))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"face3d_data"] = json.dumps(metadata, sort_keys=True, default=str).encode("ascii")
    table = table.replace_schema_metadata(meta)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    parquet_path = os.path.join(out_dir, f"{name}.parquet")
    write_bytes(parquet_path, buf.getvalue().to_pybytes())
    text = _io.StringIO()
    frame.to_csv(text, index=False)
    write_text(os.path.join(out_dir, f"{name}.csv"), text.getvalue())
    write_text(os.path.join(out_dir, f"{name}.run.json"),
               json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
    return parquet_path


def write_failures(path: str, stage: str, failures: list[dict]) -> None:
    """Write ``failures.csv`` (or remove a stale one when nothing failed)."""
    if not failures:
        if os.path.exists(path):
            os.unlink(path)
        return
    rows = [{"key": printable(f["key"]), "stage": stage, "error_class": f.get("error_class", ""),
             "message": printable(f.get("message", "")),
             "inputs": json.dumps(f.get("inputs", {}), sort_keys=True)}
            for f in sorted(failures, key=lambda f: f["key"])]
    import pandas as pd

    text = _io.StringIO()
    pd.DataFrame(rows, columns=FAILURE_COLUMNS).to_csv(text, index=False)
    write_text(path, text.getvalue())


def read_manifest(path: str) -> tuple[pd.DataFrame, dict]:
    """Read a manifest parquet file: its rows (inputs/outputs decoded) and the run metadata."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"face3d_data", b"{}"))
    frame = table.to_pandas()
    for column in ("inputs", "outputs"):
        if column in frame:
            frame[column] = frame[column].map(json.loads)
    return frame, meta
