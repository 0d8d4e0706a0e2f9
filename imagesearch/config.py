"""YAML configs into typed dataclasses, with `key=value` command-line overrides.

Merge order: the schema's in-code defaults, then the YAML file (only the deltas), then the
overrides. Unknown keys and wrong types fail at load, naming the key. The resolved config is
written next to every run's outputs (`write_config`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from imagesearch.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema; the message names the key."""


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load a dataclass config: defaults <- YAML file <- `key=value` overrides.

    Args:
        schema: a dataclass type whose fields all have defaults.
        path: a YAML file holding only the deltas from the defaults, or None.
        overrides: dotted `key=value` strings, e.g. `("optim.lr=3e-4", "train.epochs=2")`.

    Returns:
        An instance of `schema` (a plain dataclass, not a DictConfig).

    Raises:
        ConfigError: an unknown key, a wrong type, a malformed override or an unreadable file,
            with the file and the key in the message.
    """
    where = str(path) if path is not None else "<defaults>"
    try:
        merged = OmegaConf.structured(schema)
        if path is not None:
            text = Path(path).read_text(encoding="utf-8")
            loaded = yaml.safe_load(text) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{where}: the top level must be a mapping, got {type(loaded).__name__}")
            merged = OmegaConf.merge(merged, OmegaConf.create(loaded))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        if overrides:
            where = f"{where} + overrides {list(overrides)}"
            # `key=` means the empty string (OmegaConf would read it as null); `key=null` gives None.
            dotlist = [f"{item}''" if item.endswith("=") else item for item in overrides]
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(dotlist))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: bad config key {key!r}: {first_line}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read config: {exc}") from exc


# Keys that older checkpoints store and that no longer mean anything once a model is trained (they only
# named an initialisation file): dropped, at any depth, when a stored config is read back.
RETIRED_KEYS = frozenset({"trunk_checkpoint"})


def _without(values: Any, retired: frozenset[str]) -> Any:
    if isinstance(values, dict):
        return {k: _without(v, retired) for k, v in values.items() if k not in retired}
    return values


def config_from_dict(schema: type[T], values: Any, where: str = "<dict>") -> T:
    """A config dataclass from a stored plain dict (a checkpoint's `config["model"]`): the schema's defaults
    for missing keys, nested dataclasses rebuilt, `RETIRED_KEYS` dropped, other unknown keys and wrong types
    an error naming the key.

    Raises:
        ConfigError: `values` is not a mapping, or does not fit `schema`.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping for {schema.__name__}, got {type(values).__name__}")
    values = _without(values, RETIRED_KEYS)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(values))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: bad {schema.__name__} key {getattr(exc, 'full_key', None)!r}: {first_line}") from exc


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (only str/int/float/bool/None/list/dict), safe for `torch.load(weights_only=True)`."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]  # type: ignore[return-value]
    if isinstance(cfg, Path):
        return str(cfg)  # type: ignore[return-value]
    return cfg


def write_config(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config to `<out_dir>/config.yaml` (atomically) and return its path."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(out_dir) / name, text)


def _type_name(annotation: Any) -> str:
    # `from __future__ import annotations` leaves the annotation as its source text, which reads best.
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def config_rows(cfg: Any, defaults: Any, prefix: str = "") -> list[tuple[str, Any, Any, str]]:
    """Every leaf key of a dataclass config, depth first in field order, as (key, value, default, type).

    Args:
        cfg: the resolved config (a dataclass instance).
        defaults: the schema's defaults (`type(cfg)()`), walked in step with `cfg`.
        prefix: the dotted key of `cfg` itself ("" at the top).

    Returns:
        Rows such as `("train.epochs", 2, 1, "int")`; values and defaults as plain data (`config_to_dict`).
    """
    rows = []
    for f in dataclasses.fields(cfg):
        key, value, default = f"{prefix}{f.name}", getattr(cfg, f.name), getattr(defaults, f.name)
        if dataclasses.is_dataclass(value) and dataclasses.is_dataclass(default):
            rows += config_rows(value, default, f"{key}.")
        else:
            rows.append((key, config_to_dict(value), config_to_dict(default), _type_name(f.type)))
    return rows


def describe_config(cfg: Any, defaults: Any | None = None, max_width: int = 48) -> str:
    """A table of every key of a config with its resolved value, its default and its type (`--show-config`).

    Keys whose value differs from the default are marked `*`. Values print as JSON (strings quoted,
    `null`, `true`), i.e. what an override `key=value` or a YAML file would have to say.

    Args:
        cfg: the resolved config (defaults <- YAML <- overrides), a dataclass instance.
        defaults: the schema's defaults; None = `type(cfg)()`.
        max_width: column width cap for the value and default columns (longer values still print whole).
    """
    rows = config_rows(cfg, type(cfg)() if defaults is None else defaults)
    cells = [("key", "value", "default", "type")]
    for key, value, default, kind in rows:
        show = [json.dumps(v, ensure_ascii=False) for v in (value, default)]
        cells.append((("* " if value != default else "  ") + key, show[0], show[1], kind))
    cells[0] = ("  " + cells[0][0], *cells[0][1:])
    widths = [min(max(len(c[i]) for c in cells), max_width if i else 10**6) for i in range(3)]
    lines = [f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {c[2]:<{widths[2]}}  {c[3]}".rstrip() for c in cells]
    return "\n".join([*lines, f"({len(rows)} keys; * = differs from the default)"])
