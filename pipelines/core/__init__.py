"""The stage runner: configuration, parallel execution, resuming, manifests, previews."""

from face3d_data.cores import available_cores
from pipelines.core.config import build_config, config_hash, load_options
from pipelines.core.manifest import read_manifest
from pipelines.core.options import StageOptions
from pipelines.core.runner import RunOptions, RunSummary, run_stage
from pipelines.core.seeding import in_shard, item_seed, parse_shard
from pipelines.core.stage import Context, Item, Stage

__all__ = ["Stage", "Item", "Context", "RunOptions", "RunSummary", "run_stage", "build_config",
           "config_hash", "load_options", "read_manifest", "item_seed", "in_shard", "parse_shard",
           "StageOptions", "available_cores"]
