"""Fingerprints: what decides that an item's recorded outputs are still valid (resume).

An item is complete when its journal record is a success whose fingerprint equals the one this run
computes for it, and every output it listed still exists. The fingerprint covers:

- the effective configuration and the run seed (``config_hash``);
- the package version (``face3d_data.__version__``);
- the content of every model/asset option (``Stage.asset_options``): a file's sha256, a folder's
  sorted (relative path, sha256) list; a value that is not an existing path counts by its text.
  Hashes are computed once per run and cached in ``<out>/.face3d/asset-hashes.json`` by (real path,
  size, mtime_ns), so a large unchanged model is not re-read on every rerun;
- each input file of the item (``Item.inputs``): its path, size and modification time (ns).
  Touching or replacing an input redoes that item only.
"""

from __future__ import annotations

import hashlib
import json
import os

import face3d_data
from face3d_data.io import write_text

_CHUNK = 1 << 20


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class AssetHasher:
    """Content hashes of files/folders, cached on disk by (real path, size, mtime_ns)."""

    def __init__(self, cache_path: str | None = None):
        self.cache_path = cache_path
        self.cache: dict[str, list] = {}
        self.dirty = False
        if cache_path and os.path.exists(cache_path):
            try:
                with open(cache_path, encoding="utf-8") as f:
                    loaded = json.load(f)
                if isinstance(loaded, dict):
                    self.cache = loaded
            except (OSError, ValueError):
                self.cache = {}

    def file(self, path: str) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        entry = self.cache.get(real)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return entry[2]
        value = _sha256_file(real)
        self.cache[real] = [st.st_size, st.st_mtime_ns, value]
        self.dirty = True
        return value

    def value(self, value) -> object:
        """What a configuration value contributes: content hashes for existing paths, else itself."""
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if not isinstance(value, str) or not value or not os.path.exists(value):
            return value
        if os.path.isfile(value):
            return {"file": os.path.basename(value), "sha256": self.file(value)}
        entries = []
        for dirpath, dirs, files in os.walk(value):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                if os.path.isfile(path):
                    entries.append([os.path.relpath(path, value).replace(os.sep, "/"), self.file(path)])
        return {"folder": entries}

    def save(self) -> None:
        if self.cache_path and self.dirty:
            try:
                write_text(self.cache_path, json.dumps(self.cache, sort_keys=True) + "\n")
            except OSError:
                pass  # a cache that cannot be written only costs a re-hash next time


def run_fingerprint(config_fingerprint: str, stage, cfg, hasher: AssetHasher) -> str:
    """Fingerprint of everything shared by the run's items (config, seed, version, assets)."""
    assets = {key: hasher.value(cfg[key] if key in cfg else None) for key in stage.asset_options}
    blob = json.dumps({"config": config_fingerprint, "version": face3d_data.__version__,
                       "assets": assets}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _stat(path) -> list:
    if not isinstance(path, (str, os.PathLike)):
        return [repr(path)]
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]


def item_fingerprint(run_fp: str, inputs: dict) -> str:
    """Fingerprint of one item: the run's plus (path, size, mtime_ns) of each of its inputs."""
    blob = json.dumps([run_fp, sorted((str(k), _stat(v)) for k, v in inputs.items())],
                      default=str, ensure_ascii=True)
    return hashlib.blake2b(blob.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()
