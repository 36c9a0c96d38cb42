"""The resume journal: one JSON line per finished item, appended as items complete.

An item counts as done on a re-run when its last journal line says ``ok`` for the same item
fingerprint (configuration, seed, package version, asset contents and the item's input files, see
:mod:`pipelines.core.fingerprint`) and every output it listed still exists. Every shard of one
output folder has its own journal; resuming and ``finish`` read all of them. Outputs are written
atomically before their line is appended, so a run killed at any moment (even SIGKILL) leaves
either a recorded, complete item or an item that is simply redone — deterministically, giving the
same bytes. A line cut short by a kill is ignored on load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re


class Journal:
    """Append-only record of finished items of one stage in one output folder."""

    def __init__(self, path: str):
        self.path = path
        self._file = None

    def load(self) -> dict[str, dict]:
        """``{key: last record}``; unreadable (partial) lines are skipped."""
        records: dict[str, dict] = {}
        if not os.path.exists(self.path):
            return records
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "key" in record:
                    records[record["key"]] = record
        return records

    def open(self, truncate: bool = False) -> None:
        """Open for appending (``truncate``: start afresh, as ``--overwrite`` does)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if truncate and os.path.exists(self.path):
            os.unlink(self.path)
        needs_newline = False
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file = open(self.path, "a", encoding="utf-8")
        if needs_newline:
            self._file.write("\n")

    def append(self, record: dict) -> None:
        """Append one record and flush it to the OS (survives the process being killed)."""
        self._file.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def is_complete(record: dict | None, fingerprint: str, out_dir: str) -> bool:
    """True when ``record`` is a success for the item ``fingerprint`` (see
    :mod:`pipelines.core.fingerprint`) whose outputs all exist."""
    if not record or record.get("status") != "ok" or record.get("fingerprint") != fingerprint:
        return False
    return all(os.path.exists(os.path.join(out_dir, p)) for p in record.get("outputs", []))


def journal_paths(state_dir: str, stage: str) -> list[str]:
    """Every journal of ``stage`` in a state folder: the unsharded one and each shard's, sorted."""
    if not os.path.isdir(state_dir):
        return []
    pattern = re.compile(re.escape(stage) + r"(\.shard-\d+-of-\d+)?\.journal\.jsonl")
    return sorted(os.path.join(state_dir, n) for n in os.listdir(state_dir) if pattern.fullmatch(n))


def load_all(state_dir: str, stage: str, own: str | None = None) -> dict[str, dict]:
    """``{key: record}`` merged from every journal of ``stage`` (shards of one output folder).

    Successful records win over failed ones; among successes, ``own`` (this run's journal) wins,
    then the others in name order. Completeness is judged by the caller (:func:`is_complete`).
    """
    merged: dict[str, dict] = {}
    paths = [p for p in journal_paths(state_dir, stage) if p != own] + ([own] if own else [])
    for path in paths:
        for key, record in Journal(path).load().items():
            if record.get("status") == "ok" or merged.get(key, {}).get("status") != "ok":
                merged[key] = record
    return merged


@contextlib.contextmanager
def locked(path: str):
    """An exclusive advisory lock on ``path`` (created if needed) for the block: shards finishing
    at the same time into one folder take turns, so the last one writes the complete set.
    A no-op where ``fcntl`` is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
