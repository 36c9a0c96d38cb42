"""The resume journal: one JSON line per finished item, appended as items complete.

An item counts as done on a re-run when its last journal line says ``ok`` for the same
configuration fingerprint and every output it listed still exists. Outputs are written
atomically before their line is appended, so a run killed at any moment (even SIGKILL) leaves
either a recorded, complete item or an item that is simply redone — deterministically, giving the
same bytes. A line cut short by a kill is ignored on load.
"""

from __future__ import annotations

import json
import os


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
    """True when ``record`` is a success for ``fingerprint`` whose outputs all exist."""
    if not record or record.get("status") != "ok" or record.get("config_hash") != fingerprint:
        return False
    return all(os.path.exists(os.path.join(out_dir, p)) for p in record.get("outputs", []))
