"""What the config-driven scripts share: `--help` with the whole docstring, config and overrides, `--show-config`.

One argument style: a YAML config (deltas from the run's dataclass defaults), then any number of
`key=value` overrides, with the flags anywhere among them. `--show-config` prints every key of the
resolved config (defaults <- YAML <- overrides) with its default and its type, and exits, as `--help`
does. Each script calls `setup_logging` through `parse_args`, so every log line is printed once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TypeVar

from imagesearch.config import describe_config, load_config

T = TypeVar("T")

SHOW_CONFIG_HELP = (
    "print every key of the resolved config (defaults <- YAML <- overrides) with its value, default and type, "
    "then exit"
)


def script_parser(doc: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose `--help` prints `doc` (the script's docstring) whole, usage examples included."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_arguments(
    parser: argparse.ArgumentParser, schema: type, example: str, positional: bool = True
) -> argparse.ArgumentParser:
    """Add the YAML config (positional, or `--config` when optional), the overrides and `--show-config`.

    Args:
        parser: the script's parser.
        schema: the run's config dataclass, named in the help.
        example: an override or two for the help text, e.g. "optim.lr=0.01 train.epochs=2".
        positional: the config is the first positional argument (training scripts); else `--config`,
            optional (the evaluation scripts, whose positional is the split).
    """
    what = f"YAML config (deltas from {schema.__name__}'s defaults)"
    if positional:
        parser.add_argument("config", help=what)
    else:
        parser.add_argument("--config", default=None, help=f"{what}; none = the defaults")
    parser.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {example}")
    parser.add_argument("--show-config", action="store_true", help=SHOW_CONFIG_HELP)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv` (flags may sit among the `key=value` overrides) and set up logging for the script."""
    from imagesearch.runtime import setup_logging  # here: the scripts that only need `script_parser` load no torch

    args = parser.parse_intermixed_args(argv)
    setup_logging()
    return args


def load_or_show(
    parser: argparse.ArgumentParser, schema: type[T], args: argparse.Namespace, overrides: Sequence[str] | None = None
) -> T:
    """Load `args.config` with the overrides (default `args.overrides`); with `--show-config`, print it and exit.

    Raises:
        ConfigError: an unknown key or a wrong type (from `load_config`).
        SystemExit: 0 after printing, when `args.show_config`.
    """
    cfg = load_config(schema, args.config, args.overrides if overrides is None else overrides)
    if args.show_config:
        print(describe_config(cfg, schema()))
        parser.exit()
    return cfg
