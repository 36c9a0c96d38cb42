"""Command line of the trainer: ``python -m pipelines.train``.

::

    python -m pipelines.train TASK --out RUN [task and common options]     # train (TASK: prnet, rnet, params)
    python -m pipelines.train eval TASK --checkpoint CKPT [--datalist LIST] --out DIR
    python -m pipelines.train predict TASK --checkpoint CKPT --img_folder DIR --out DIR
    torchrun --standalone --nproc-per-node=N -m pipelines.train TASK ...   # DDP

Options come from ``pipelines/configs/train_common.yaml`` and ``train_<TASK>.yaml`` (one flag per
key, ``--key`` or ``--key-with-dashes``), then ``--config FILE`` and ``--set key=value``; precedence,
lowest first: YAML defaults < --config < --set < flags. Everything is done by
:mod:`face3d_data.train`; this module only parses options.

Exit status: 0 done, 2 usage or configuration error, 3 finished but some samples were dropped
(``failures.csv``), 4 aborted on non-finite losses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from face3d_data.errors import ConfigError, InputError

TASK_NAMES = ("prnet", "rnet", "params")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (no usage dump)
        raise ConfigError(f"{self.prog}: {message}")


def task_options(task: str) -> dict[str, Any]:
    """``{key: Option}`` of the common keys overridden/extended by the task's YAML, in file order."""
    from pipelines.core.config import config_path, load_options

    if not os.path.exists(config_path(f"train_{task}")):
        raise ConfigError(f"task {task!r} has no pipelines/configs/train_{task}.yaml")
    options = {o.key: o for o in load_options("train_common")}
    for o in load_options(f"train_{task}"):
        if o.key in options and not o.help:
            o.help = options[o.key].help
        options[o.key] = o
    return options


def _add_option_flags(parser: argparse.ArgumentParser, options) -> None:
    group = parser.add_argument_group("options (defaults from pipelines/configs/train_*.yaml)")
    for opt in options.values():
        flags = [f"--{opt.key}"]
        if "_" in opt.key:
            flags.append(f"--{opt.key.replace('_', '-')}")
        kwargs = {"dest": f"opt__{opt.key}", "default": argparse.SUPPRESS,
                  "help": (opt.help or " ").replace("%", "%%") + f" (default: {opt.default!r})"}
        if isinstance(opt.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(opt.default, (list, tuple)):
            kwargs["nargs"] = "+"
        group.add_argument(*flags, **kwargs)


def build_config(options, config_file: str | None, sets: list[str], explicit: dict) -> dict:
    """Resolved configuration: YAML defaults < ``config_file`` < ``sets`` < ``explicit`` flags."""
    from pipelines.core.config import coerce, overrides

    cfg = {k: o.default for k, o in options.items()}

    def assign(key: str, value: Any, source: str) -> None:
        if key not in options:
            raise ConfigError(f"{source}: unknown option {key!r}")
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and source.startswith("--") \
                and source not in ("--set",) and not source.startswith("--config"):
            value = ",".join(value)  # nargs="+" flag
        cfg[key] = coerce(key, value, options[key].default)

    for k, v, source in overrides(config_file, sets):
        assign(k, v, source)
    for k, v in explicit.items():
        assign(k, v, f"--{k}")
    return cfg


def _explicit(args) -> dict:
    return {k[len("opt__"):]: v for k, v in vars(args).items() if k.startswith("opt__")}


def _train(task: str, argv: list[str]) -> int:
    from face3d_data.train.loop import fit

    options = task_options(task)
    parser = _Parser(prog=f"python -m pipelines.train {task}",
                     description=f"Train the {task} task (docs/training.md).")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl, previews)")
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding the defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option (repeatable)")
    parser.add_argument("--resume", default="auto", metavar="auto|never|PATH",
                        help="auto: continue from RUN/checkpoints/last.pt when present (default)")
    parser.add_argument("--force", action="store_true",
                        help="resume even if the configuration or a datalist changed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    _add_option_flags(parser, options)
    args = parser.parse_args(argv)
    cfg = build_config(options, args.config, args.set, _explicit(args))
    summary = fit(task, cfg, args.out, resume=args.resume, force=args.force, quiet=args.quiet)
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:
        loss = "n/a" if summary.last_loss is None else f"{summary.last_loss:.6g}"
        print(f"{task}: {summary.steps} steps, epoch {summary.epoch}, last loss {loss}, "
              f"{summary.dropped} samples dropped, {summary.skipped} non-finite steps skipped -> "
              f"{os.path.join(args.out, 'checkpoints', 'last.pt')}", file=sys.stderr)
    return summary.exit_code


def _checkpoint_parser(mode: str, task: str) -> _Parser:
    parser = _Parser(prog=f"python -m pipelines.train {mode} {task}")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint (RUN/checkpoints/last.pt or best.pt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=8, help="evaluation batch size (default 8)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading workers (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration key stored in the checkpoint (repeatable)")
    return parser


def _overrides(state_cfg: dict, sets: list[str]) -> dict:
    from pipelines.core.config import coerce

    out = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        out[k] = coerce(k, v, state_cfg.get(k))
    return out


def _device(name: str):
    import torch

    from face3d_data.train.loop import Dist, resolve_device

    return resolve_device(name, Dist()) if name != "auto" else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")


def _eval(task: str, argv: list[str]) -> int:
    import torch

    from face3d_data.io.atomic import write_text
    from face3d_data.train.checkpoint import load_checkpoint, model_from_checkpoint

    parser = _checkpoint_parser("eval", task)
    parser.add_argument("--datalist", help="the list to evaluate (default: the run's validation list)")
    args = parser.parse_args(argv)
    saved = load_checkpoint(args.checkpoint)
    if saved["task"] != task:
        raise ConfigError(f"{args.checkpoint} is a {saved['task']!r} checkpoint, not {task!r}")
    overrides = _overrides(saved["config"], args.set)
    overrides["workers"] = args.workers
    task_obj, model, _ = model_from_checkpoint(args.checkpoint, overrides)
    device = _device(args.device)
    model.to(device)
    dataset = task_obj.eval_dataset(args.datalist)
    from face3d_data.train.task import scan_samples

    failures = scan_samples(dataset, True, args.workers)
    dataset.drop_keys({f.key for f in failures})
    os.makedirs(args.out, exist_ok=True)
    if failures:
        from face3d_data.train.loop import write_failures
        write_failures(os.path.join(args.out, "failures.csv"), failures)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    with torch.no_grad():
        metrics = task_obj.evaluate(model, loader, device, report_dir=args.out)
    metrics = {"task": task, "checkpoint": os.path.abspath(args.checkpoint), "step": saved["step"],
               "datalist": os.path.abspath(args.datalist) if args.datalist else None,
               "samples": len(dataset), "dropped": len(failures), **metrics}
    write_text(os.path.join(args.out, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, sort_keys=True))
    return 3 if failures else 0


def _predict(task: str, argv: list[str]) -> int:
    from face3d_data.io.images import is_image_file
    from face3d_data.train.checkpoint import model_from_checkpoint

    parser = _checkpoint_parser("predict", task)
    parser.add_argument("--img_folder", "--img-folder", dest="img_folder", required=True,
                        help="folder of images (face crops)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.img_folder):
        raise ConfigError(f"--img_folder {args.img_folder!r} is not a folder")
    paths = sorted(os.path.join(args.img_folder, n) for n in os.listdir(args.img_folder) if is_image_file(n))
    if not paths:
        raise ConfigError(f"--img_folder {args.img_folder!r} holds no images")
    task_obj, model, saved = model_from_checkpoint(args.checkpoint, {"workers": args.workers})
    if saved["task"] != task:
        raise ConfigError(f"{args.checkpoint} is a {saved['task']!r} checkpoint, not {task!r}")
    device = _device(args.device)
    model.to(device)
    os.makedirs(args.out, exist_ok=True)
    failures = task_obj.predict(model, paths, args.out, device)
    if failures:
        from face3d_data.train.loop import write_failures
        write_failures(os.path.join(args.out, "failures.csv"), failures)
    print(f"predict {task}: {len(paths) - len(failures)} of {len(paths)} images -> {args.out}", file=sys.stderr)
    return 3 if failures else 0


def _usage() -> str:
    return ("usage: python -m pipelines.train {prnet,rnet,params} --out RUN [options]   (TASK --help)\n"
            "       python -m pipelines.train eval TASK --checkpoint CKPT [--datalist LIST] --out DIR\n"
            "       python -m pipelines.train predict prnet --checkpoint CKPT --img_folder DIR --out DIR\n"
            "exit status: 0 done, 2 usage error, 3 some samples dropped (failures.csv), "
            "4 aborted on non-finite losses")


def main(argv: list[str] | None = None) -> int:
    from face3d_data.train.loop import NonFiniteAbort

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(_usage())
            return 0 if argv else 2
        mode = "train"
        if argv[0] in ("eval", "predict"):
            mode = argv.pop(0)
            if not argv or argv[0] in ("-h", "--help"):
                print(_usage())
                return 0 if argv else 2
        task = argv.pop(0)
        if task not in TASK_NAMES:
            raise ConfigError(f"unknown task {task!r}; tasks: {', '.join(TASK_NAMES)}")
        return {"train": _train, "eval": _eval, "predict": _predict}[mode](task, argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteAbort as exc:
        print(f"aborted: {exc}", file=sys.stderr)
        return 4
    finally:
        _shutdown_distributed()


def _shutdown_distributed() -> None:
    if "torch" in sys.modules:
        import torch

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
