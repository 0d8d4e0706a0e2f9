from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
import yaml

from imagesearch.config import ConfigError, config_to_dict, load_config, write_config
from imagesearch.io import atomic_write_text


@dataclass
class Optim:
    lr: float = 0.1
    name: str = "sgd"


@dataclass
class Run:
    optim: Optim = field(default_factory=Optim)
    epochs: int = 2
    milestones: list[int] = field(default_factory=lambda: [3])
    weights: str | None = None


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 5\noptim:\n  lr: 0.01\n")
    cfg = load_config(Run, path, ["optim.lr=3e-4", "milestones=[1,2]"])
    assert isinstance(cfg, Run) and isinstance(cfg.optim, Optim)
    assert cfg.epochs == 5  # from the file
    assert cfg.optim.lr == pytest.approx(3e-4)  # the override wins over the file
    assert cfg.optim.name == "sgd"  # default kept
    assert cfg.milestones == [1, 2]
    assert cfg.weights is None


def test_empty_override_is_the_empty_string_and_null_is_none():
    cfg = load_config(Run, None, ["optim.name=", "weights=x.pt"])
    assert cfg.optim.name == "" and cfg.weights == "x.pt"
    assert load_config(Run, None, ["weights=null"]).weights is None
    assert load_config(Run, None, ["weights="]).weights == ""


@pytest.mark.parametrize(
    "overrides, key",
    [(["epochs=abc"], "epochs"), (["epohcs=2"], "epohcs"), (["optim.lrr=1"], "optim.lrr")],
)
def test_bad_override_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(Run, None, overrides)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  momentum: 0.9\n")
    with pytest.raises(ConfigError) as info:
        load_config(Run, path)
    assert "bad.yaml" in str(info.value) and "optim.momentum" in str(info.value)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Run, None, ["epochs"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(Run, tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Run, tmp_path / "list.yaml")


def test_written_config_round_trips_and_is_checkpoint_safe(tmp_path):
    cfg = load_config(Run, None, ["epochs=7", "weights=/x/vgg.pth"])
    path = write_config(cfg, tmp_path / "out")
    assert path.name == "config.yaml"
    assert load_config(Run, path) == cfg
    # A plain dict survives torch.load(weights_only=True), which rejects arbitrary classes.
    torch.save({"config": config_to_dict(cfg)}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["config"]["epochs"] == 7
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == pytest.approx(0.1)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
