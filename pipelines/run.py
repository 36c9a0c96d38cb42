"""Command line: ``python -m pipelines.run STAGE [options]``.

``python -m pipelines.run --help`` lists the stages; ``python -m pipelines.run STAGE --help``
lists a stage's options with their defaults. Exit status: 0 all items good, 3 some items failed
(see ``failures.csv``), 2 usage, configuration or environment error (one line on stderr: bad option,
bad model, unwritable or full output folder, unreachable ``--scheduler``).
"""

from __future__ import annotations

import argparse
import os
import sys

from face3d_data.errors import ConfigError, InputError


def _common_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("runner options (every stage)")
    g.add_argument("--out", help="output folder")
    g.add_argument("--config", metavar="FILE", help="YAML file overriding the defaults")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option (repeatable)")
    g.add_argument("--jobs", type=int, default=0, help="parallel workers (default: all cores)")
    g.add_argument("--backend", default="loky", choices=("loky", "threading", "dask", "ray"),
                   help="parallel backend (default: loky processes)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of an existing Dask scheduler / Ray cluster (default: start a local one)")
    g.add_argument("--shard", default="0/1", metavar="i/n",
                   help="process only shard i of n (deterministic split by item key)")
    g.add_argument("--limit", type=int, help="process only the first N items (sorted by key)")
    g.add_argument("--overwrite", action="store_true", help="redo items that are already complete")
    g.add_argument("--seed", type=int, default=0, help="global seed (default: 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser that reports a usage error as one line (no usage block) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _stage_parser(name: str, summary: str, options_type: type | None = None) -> argparse.ArgumentParser:
    from pipelines.core.config import load_options
    from pipelines.core.options import field_specs, is_flag, is_list

    specs = field_specs(options_type) if options_type is not None else {}
    parser = _OneLineParser(prog=f"python -m pipelines.run {name}", description=summary)
    group = parser.add_argument_group(f"{name} options (defaults from pipelines/configs/{name}.yaml)")
    for opt in load_options(name):
        flags = [f"--{opt.key}"]
        if "_" in opt.key:
            flags.append(f"--{opt.key.replace('_', '-')}")
        kwargs = {"dest": f"stage__{opt.key}", "default": argparse.SUPPRESS,
                  "help": (opt.help or " ") + f" (default: {opt.default!r})"}
        spec = specs.get(opt.key)
        if is_flag(spec) if spec else isinstance(opt.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif is_list(spec) if spec else isinstance(opt.default, (list, tuple)):
            kwargs["nargs"] = "+"
        group.add_argument(*flags, **kwargs)
    _common_options(parser)
    return parser


def _top_help() -> str:
    from pipelines.registry import STAGES, stage_class

    lines = ["usage: python -m pipelines.run STAGE [options]   (STAGE --help for its options)", "",
             "stages:"]
    for name in sorted(STAGES):
        try:
            summary = stage_class(name).summary
        except Exception as exc:  # a stage whose module fails to import is still listed
            summary = f"(unavailable: {type(exc).__name__}: {exc})"
        lines.append(f"  {name:<18} {summary}")
    lines.append(f"  {'demo':<18} Run every stage on a small synthetic dataset (no licensed data).")
    lines += ["", "exit status: 0 all good, 3 some items failed (failures.csv), 2 usage error"]
    return "\n".join(lines)


def _silence_stdout() -> None:
    from pipelines.core.runner import silence_stdout

    silence_stdout()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        try:
            print(_top_help(), flush=True)
        except BrokenPipeError:
            _silence_stdout()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        if name == "demo":
            from pipelines.demo import main as demo_main

            return demo_main(rest)
        from pipelines.core import RunOptions, parse_shard, run_stage
        from pipelines.registry import stage_class

        cls = stage_class(name)
        args = _stage_parser(name, cls.summary, getattr(cls, "Options", None)).parse_args(rest)
        explicit = {k[len("stage__"):]: (",".join(v) if isinstance(v, list) else
                                         v if isinstance(v, bool) else str(v))
                    for k, v in vars(args).items() if k.startswith("stage__")}
        options = RunOptions(out=args.out, jobs=args.jobs, backend=args.backend,
                             scheduler=args.scheduler, shard=parse_shard(args.shard),
                             limit=args.limit, overwrite=args.overwrite, seed=args.seed,
                             quiet=args.quiet)
        summary = run_stage(cls, options, config_file=args.config, sets=args.set, explicit=explicit)
        return summary.exit_code
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. head, which has exited: leave quietly
        _silence_stdout()
        return 0
    except OSError as exc:  # the environment: read-only or full disk, permissions, ...
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed items are recorded; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
