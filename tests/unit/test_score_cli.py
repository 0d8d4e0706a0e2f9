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


def test_breakdown_by_reason_sums_to_the_score(cli, tmp_path, capsys):
    module, split = cli
    result = perfect_result(split)
    result["vB"]["item_id"] = "C"  # wrong item
    result["vB"]["ranked_items"] = ["C", "A", "B"]
    del result["vC"]  # no prediction, and vC.mp4 is not on disk: "video missing"
    path = _write(tmp_path, result)
    # N_P 2, N_GT 3, D 5, TP 1: score 2/5; vB loses 2/5 (0.08 + 0.24 + 0.08), vC 1/5 (0.04 + 0.12 + 0.04)
    assert module.main([str(tmp_path), str(path), "--worst", "1"]) == 0
    out = capsys.readouterr().out
    assert "wrong item                            1  0.0800  0.2400  0.0800   0.4000" in out
    assert "video missing                         1  0.0400  0.1200  0.0400   0.2000" in out
    assert "score + lost = max reachable: 0.4000 + 0.6000 = 1.0000" in out
    worst = [line.split() for line in out.splitlines() if line.startswith(" " * 14)]
    assert worst == [["vB", "C", "B", "3", "0", "0", "1.00", "-", "0.4000", "wrong", "item"]]
    assert module.main([str(tmp_path), str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    points = {row["reason"]: row["points"] for row in report["losses"]}
    assert points.keys() == {"wrong item", "video missing"}
    assert abs(report["score"] + sum(points.values()) - report["max_reachable"]) < 1e-9
    assert {v["video_id"]: v["reason"] for v in report["videos"]} == {
        "vA": "hit",
        "vB": "wrong item",
        "vC": "video missing",
    }
