"""scripts/score.py on the real Tianchi sample: a result built from its own annotations scores 1.0."""

from __future__ import annotations

import json

import pytest

from imagesearch.data.reader import load_split
from tests.helpers import load_script, perfect_result

pytestmark = pytest.mark.sample


def _main():
    return load_script("score").main


def _run(capsys, argv: list[str]) -> dict:
    assert _main()(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_perfect_result_on_the_sample(tianchi_sample, tmp_path, capsys):
    split = load_split(tianchi_sample)
    result = perfect_result(split)
    assert len(result) == 10  # every sample video shows its product
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result), encoding="utf-8")

    report = _run(capsys, [str(tianchi_sample), str(path)])
    assert report["score"] == 1.0 and report["skipped_records"] == 0
    assert [report[lv]["tp"] for lv in ("s1", "s2", "s3")] == [10, 10, 10]

    # only the 3 videos on disk predicted: P = 1, R = 3/10 -> F1 = 0.6 / 1.3 at every level
    present = {v for v, video in split.videos.items() if video.present}
    assert present == {"000117", "000134", "000165"}
    path.write_text(json.dumps({v: r for v, r in result.items() if v in present}), encoding="utf-8")
    report = _run(capsys, [str(tianchi_sample), str(path)])
    assert abs(report["score"] - 0.6 / 1.3) < 1e-12
    report = _run(capsys, [str(tianchi_sample), str(path), "--present-only"])
    assert report["score"] == 1.0 and report["s1"]["n_gt"] == 3 and report["num_scope_videos"] == 3
