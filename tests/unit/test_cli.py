"""The command lines: `--help` shows each script's whole docstring, `--show-config` lists every config key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from imagesearch.config import config_rows, describe_config, load_config
from imagesearch.detector.train import DetectorRun
from imagesearch.pipeline import PipelineRun
from tests.helpers import REPO_ROOT, load_script

SCRIPTS = sorted(p.stem for p in (REPO_ROOT / "scripts").glob("*.py"))
# script -> argv before --show-config; the overridden key and the value it must show.
SHOW_CONFIG = {
    "train_detector": (["configs/smoke/detector.yaml", "train.epochs=3"], "train.epochs", "3"),
    "train_classifier": (["configs/smoke/classifier.yaml", "optim.lr=0.25"], "optim.lr", "0.25"),
    "train_embedder": (["configs/smoke/embedder.yaml", "data.batch_size=6"], "data.batch_size", "6"),
    "evaluate_top20": (["/data/val", "--config", "configs/eval/default.yaml", "matcher.num_frames=7"],
                       "matcher.num_frames", "7"),
    "predict": (["/data/test", "--out", "runs/t"], "out_dir", '"runs/t"'),
    "run_pipeline": (["configs/pipeline/demo.yaml", "gt_boxes=true", "detector.train.epochs=1"], "gt_boxes", "true"),
}  # fmt: skip


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def test_describe_config_lists_every_key_with_value_default_and_type() -> None:
    cfg = load_config(DetectorRun, REPO_ROOT / "configs/smoke/detector.yaml", ["train.epochs=3"])
    rows = {key: (value, default, kind) for key, value, default, kind in config_rows(cfg, DetectorRun())}
    # every leaf of the schema, as OmegaConf (an independent walk) sees it
    assert list(rows) == _leaves(OmegaConf.to_container(OmegaConf.structured(DetectorRun)))
    assert rows["train.epochs"] == (3, 12, "int")  # the override, DetectorRun's in-code default, the type
    assert rows["model.size"] == (160, 300, "int")  # from the YAML
    assert rows["optim.betas"] == ([0.9, 0.999], [0.9, 0.999], "list[float]")
    table = describe_config(cfg).splitlines()
    assert table[0].split() == ["key", "value", "default", "type"]
    assert [line.split() for line in table if " train.epochs " in line] == [["*", "train.epochs", "3", "12", "int"]]
    assert [line.split()[0] for line in table if " train.seed " in line] == ["train.seed"]  # unchanged: no *
    assert table[-1] == f"({len(rows)} keys; * = differs from the default)"


def test_describe_config_walks_lists_of_sections_as_values() -> None:
    cfg = load_config(PipelineRun, None, ["synthetic.frames=41"])
    rows = {key: (value, default, kind) for key, value, default, kind in config_rows(cfg, PipelineRun())}
    assert rows["synthetic.frames"] == (41, 81, "int")
    assert rows["synthetic.splits"][2] == "list[SplitSpec]" and rows["synthetic.splits"][0][0]["name"] == "train"


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_the_whole_docstring(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script(name)
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    shown = capsys.readouterr().out
    missing = [line for line in module.__doc__.strip().splitlines() if line.strip() not in shown]
    assert missing == [] and "python scripts/" in shown  # the usage examples included


@pytest.mark.parametrize("name", sorted(SHOW_CONFIG))
def test_show_config_prints_the_resolved_config_and_exits(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the configs are named relative to the repository, as in the docstrings
    argv, key, value = SHOW_CONFIG[name]
    with pytest.raises(SystemExit) as info:
        load_script(name).main([*argv, "--show-config"])
    assert info.value.code == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["*", key, value] == [row[:3] for row in rows if key in row][0]
    assert all(len(row) >= 4 for row in rows[1:-1])  # key, value, default, type on every row


def test_every_script_is_under_80_lines() -> None:
    sizes = {name: len((REPO_ROOT / "scripts" / f"{name}.py").read_text().splitlines()) for name in SCRIPTS}
    assert {name: n for name, n in sizes.items() if n >= 80} == {}
