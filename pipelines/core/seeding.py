"""Deterministic per-item seeds and shard membership, derived from item keys only.

Both depend on nothing but (global seed, stage, key) or (key, shard count), so outputs do not
depend on ``--jobs``, the backend, sharding or the order in which items run.
"""

from __future__ import annotations

import hashlib

from face3d_data.errors import ConfigError


def _hash64(text: str) -> int:
    # surrogateescape: a key made from a non-UTF-8 file name (os.fsdecode) hashes its raw bytes
    data = text.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def item_seed(global_seed: int, stage: str, key: str) -> int:
    """A 63-bit seed for one item (stable across runs, machines and Python versions)."""
    return _hash64(f"{int(global_seed)}\x00{stage}\x00{key}") >> 1


def in_shard(key: str, index: int, count: int) -> bool:
    """True when ``key`` belongs to shard ``index`` of ``count`` (shards partition all keys)."""
    return _hash64(f"shard\x00{key}") % count == index


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 ≤ i < n) into ``(i, n)``; raise ``ConfigError`` otherwise."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n
