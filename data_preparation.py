"""Deep3DFaceRecon's ``data_preparation.py`` command line, without TensorFlow and non-destructive.

    python data_preparation.py --img_folder DIR [DIR ...] [--data_root ROOT] [--mode train|val]
                               [--detector cascade|hog|cnn] [--faces largest|all]
                               [--landmarker dlib|fan] [--min_quality Q] [--jobs N] [--overwrite]
                               [--deep3d-compat]

Each ``--img_folder`` is relative to ``--data_root`` (as in Deep3DFaceRecon; an absolute path is
used as is). Every folder is one run of the ``data_preparation`` pipeline stage with the folder as
its output: ``landmarks/``, ``mask/``, ``detected/``, ``vis/``, ``failures.csv`` and the manifest
are written inside it (new names only); nothing is moved or renamed. Then the datalists list every
prepared face of all folders whose quality is at least ``--min_quality``:
``<data_root>/datalist/<mode>/{images,landmarks,masks}.txt`` (paths relative to ``data_root``,
whitespace percent-encoded), or with ``--deep3d-compat`` Deep3DFaceRecon's
``./datalist/<mode>/{landmarks,images,masks}.txt`` (relative to the working directory, where its
``train.py`` looks). Exit status: 0 all good, 3 some images failed (see each ``failures.csv``),
2 bad options. See docs/data_preparation.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from face3d_data.errors import ConfigError, InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--img_folder", nargs="+", required=True,
                   help="folders of training images (relative to --data_root)")
    p.add_argument("--data_root", default="datasets", help="root directory for training data (default: datasets)")
    p.add_argument("--mode", default="train", choices=("train", "val"), help="datalist subfolder (default: train)")
    p.add_argument("--detector", default=None, metavar="cascade|hog|cnn",
                   help="face detector: cascade (HOG, then dlib's CNN where HOG finds no face; the "
                        "default), hog or cnn only")
    p.add_argument("--faces", default=None, choices=("largest", "all"),
                   help="several faces in an image: the largest (default) or all (<stem>_face<k>)")
    p.add_argument("--landmarker", default=None, choices=("dlib", "fan"),
                   help="68-point landmark method (default: dlib)")
    p.add_argument("--min_quality", "--min-quality", default=None, type=float, metavar="Q",
                   help="list only faces whose quality score (0-1, see docs) is at least Q (default 0)")
    p.add_argument("--fan_weights", "--fan-weights", default=None, metavar="DIR",
                   help="local folder with the FAN weights (detector fan; never downloaded)")
    p.add_argument("--jobs", type=int, default=0, help="parallel workers (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="redo images that are already prepared")
    p.add_argument("--deep3d-compat", "--deep3d_compat", dest="deep3d_compat", action="store_true",
                   help="write Deep3DFaceRecon's conventions: y-up landmarks, mask/<image file name>, "
                        "lists in ./datalist/<mode>/ relative to the working directory")
    p.add_argument("--config", metavar="FILE", help="YAML overriding pipelines/configs/data_preparation.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any option of pipelines/configs/data_preparation.yaml (repeatable)")
    p.add_argument("--backend", default="loky", choices=("loky", "threading", "dask", "ray"))
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def prepare(folders: list[str], data_root: str, mode: str, cfg: dict, *, jobs: int = 0,
            overwrite: bool = False, backend: str = "loky", quiet: bool = False):
    """Run the stage on each folder, then write the datalists of all folders (ours under
    ``data_root``, or Deep3DFaceRecon's under ``./datalist`` with ``deep3d_compat``).

    Returns:
        (list of RunSummary, {"images": path, "landmarks": path, "masks": path}).
    """
    from pipelines.core import RunOptions, run_stage
    from pipelines.stages.data_preparation import (
        DataPreparationStage,
        datalist_rows,
        write_datalists,
        write_deep3d_datalists,
    )

    for folder in folders:
        if not os.path.isdir(folder):
            raise ConfigError(f"--img_folder {folder}: not a folder")
    min_quality = cfg["min_quality"]
    if not 0.0 <= min_quality <= 1.0:
        raise ConfigError(f"min_quality: expected a score in [0, 1], got {min_quality}")
    # The datalists cover all folders and are written below, so the options that only shape them
    # (data_root, mode, min_quality) are neutral in the stage runs: changing them rewrites the
    # lists without redoing any image.
    cfg = dict(cfg, data_root=None, mode="train", min_quality=0.0)
    summaries, rows = [], []
    for folder in folders:
        options = RunOptions(out=folder, jobs=jobs, backend=backend, overwrite=overwrite, quiet=quiet)
        summary = run_stage(DataPreparationStage, options, cfg=cfg)
        summaries.append(summary)
        rows += datalist_rows(summary.out_dir, summary.records, min_quality)
    if cfg["deep3d_compat"]:
        return summaries, write_deep3d_datalists(mode, rows)
    return summaries, write_datalists(data_root, mode, rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from pipelines.core import build_config

        explicit = {"deep3d_compat": True} if args.deep3d_compat else {}
        if args.detector in ("dlib", "fan"):
            raise ConfigError(f"--detector {args.detector}: --detector now picks the face detector "
                              "(cascade, hog, cnn); the 68-point method is --landmarker dlib|fan")
        for key in ("detector", "faces", "landmarker", "min_quality"):
            if getattr(args, key) is not None:
                explicit[key] = getattr(args, key)
        if args.fan_weights:
            explicit["fan_weights"] = args.fan_weights
        cfg = build_config("data_preparation", args.config, args.set, explicit)
        folders = [os.path.join(args.data_root, f) for f in args.img_folder]
        summaries, lists = prepare(folders, args.data_root, args.mode, cfg, jobs=args.jobs,
                                   overwrite=args.overwrite, backend=args.backend, quiet=args.quiet)
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        with open(lists["masks"], encoding="utf-8") as f:
            count = sum(1 for line in f if line.strip())
        print(f"datalist: {count} face(s) in {os.path.dirname(lists['masks'])}")
    return 3 if any(s.failed for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
