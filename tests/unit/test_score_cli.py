"""scripts/score.py run in-process through main(argv), on the hand-made split of score_split.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_script, perfect_result
from tests.unit.score_split import build_split


@pytest.fixture()
def cli(monkeypatch):
    module = load_script("score")
    split = build_split()
    split.videos["vA"].present = True
    split.videos["vB"].present = True
    monkeypatch.setattr(module, "load_split", lambda root: split)
    return module, split


def _write(tmp_path: Path, obj) -> Path:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_text_output_with_counts_and_topk(cli, tmp_path, capsys):
    module, split = cli
    result = perfect_result(split)
    del result["vC"]  # P 1, R 2/3, F1 0.8 at every level
    result["vA"]["ranked_items"] = ["B", "A"]
    assert module.main([str(tmp_path), str(_write(tmp_path, result))]) == 0
    out = capsys.readouterr().out
    assert "S1         2     2     3   1.0000   0.6667   0.8000" in out
    assert "S3         2     2     3   1.0000   0.6667   0.8000" in out
    assert "score = 0.2*F1(S1) + 0.6*F1(S2) + 0.2*F1(S3) = 0.8000" in out
    # vA at rank 2, vB ranked by its item_id only, vC abstained
    assert "top1=0.3333  top5=0.6667  top20=0.6667" in out
    assert "all videos: 4" in out


def test_json_and_present_only(cli, tmp_path, capsys):
    module, split = cli
    path = _write(tmp_path, perfect_result(split))
    assert module.main([str(tmp_path), str(path), "--json", "--present-only"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scope"] == "video_ids" and report["num_scope_videos"] == 2
    assert report["s2"]["tp"] == 2 and report["s2"]["n_gt"] == 2 and report["score"] == 1.0
    assert report["out_of_scope_videos"] == ["vC"]
    assert report["topk"] is None


def test_malformed_result_exits_2_naming_the_video(cli, tmp_path, capsys):
    module, split = cli
    result = perfect_result(split)
    result["vB"]["result"][0]["frame_box"] = [1, 2, 3]
    assert module.main([str(tmp_path), str(_write(tmp_path, result))]) == 2
    err = capsys.readouterr().err
    assert "'vB'" in err and "'result[0].frame_box'" in err


def test_missing_split_folder_exits_2(cli, tmp_path, capsys):
    module, _ = cli
    assert module.main([str(tmp_path / "nope"), str(_write(tmp_path, {}))]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_describes_the_rule(cli, capsys):
    module, _ = cli
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert "IoU > 0.5" in " ".join(capsys.readouterr().out.split())  # argparse re-wraps the text
