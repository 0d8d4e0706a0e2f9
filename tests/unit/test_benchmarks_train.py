"""The training-throughput benchmark end to end at toy size, and its pieces: batches, interleaved timing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import _common, train_throughput
from imagesearch.classifier.train import ClassifierRun
from imagesearch.config import load_config
from imagesearch.detector.model import DetectorModelConfig, build_detector
from imagesearch.detector.train import DetectorRun
from imagesearch.embedder.train import EmbedderRun

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ROW_FIELDS = {"peer", "params", "trainable_params", "median_s", "min_s", "times_s", "images_per_s", "loss"}
ROW_FIELDS |= {"step_peak_bytes"}


def _finite_positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_main_at_toy_size_writes_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision's SSD300 peer has no size knob and takes ~7 s a step on this CPU: a tiny SSD with the
    # same train-mode API stands in, and the call that would have built the real one is checked.
    peer_calls: list[dict] = []

    def tiny_ssd(**kwargs: object) -> torch.nn.Module:
        peer_calls.append(kwargs)
        return build_detector(DetectorModelConfig(size=64, width_mult=0.0625, extra_batch_norm=False))

    monkeypatch.setattr(train_throughput, "ssd300_vgg16", tiny_ssd)
    out = tmp_path / "train.json"
    payload = train_throughput.main(["--smoke", "--batch", "1", "--iters", "1", "--warmup", "0", "--out", str(out)])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["benchmark"] == "train_throughput" and record["stages"] == json.loads(json.dumps(payload["stages"]))
    assert record["device_type"] == "cpu" and record["device"] == _common.machine_info()["cpu"]
    assert record["torch"] == str(torch.__version__) and record["threads"] == torch.get_num_threads()
    assert record["smoke"] is True and record["amp"] is None and record["channels_last"] is False
    assert record["args"]["batch"] == 1 and record["iters"] == 1 and record["machine"]["cpu_cores"] >= 1
    stages = record["stages"]
    assert list(stages) == ["detector", "classifier", "embedder"]
    # Sizes come from the smoke configs; batch 1 gives the embedder one triplet (round(1 / 3) -> at least 1).
    sizes = {
        "detector": load_config(DetectorRun, CONFIGS / "smoke/detector.yaml").model.size,
        "classifier": load_config(ClassifierRun, CONFIGS / "smoke/classifier.yaml").model.image_size,
        "embedder": load_config(EmbedderRun, CONFIGS / "smoke/embedder.yaml").model.image_size,
    }
    assert sizes == {"detector": 160, "classifier": 64, "embedder": 64}
    for name, stage in stages.items():
        assert stage["image_size"] == sizes[name] and stage["config"] == f"configs/smoke/{name}.yaml"
        assert stage["images_per_step"] == (3 if name == "embedder" else 1)
        peers = [r for r, v in stage["rows"].items() if v["peer"]]
        assert peers == [stage["peer"]]
        for row_name, row in stage["rows"].items():
            assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
            assert len(row["times_s"]) == 1 and row["median_s"] == row["min_s"] == row["times_s"][0]
            for key in ("median_s", "min_s", "images_per_s", "params", "trainable_params"):
                assert _finite_positive(row[key]), (name, row_name, key, row[key])
            assert row["images_per_s"] == pytest.approx(stage["images_per_step"] / row["median_s"])
            assert math.isfinite(row["loss"]) and row["loss"] >= 0  # a triplet loss may be exactly 0
            assert row["trainable_params"] <= row["params"] and row["step_peak_bytes"] is None  # CPU: no CUDA peak
            if row["peer"]:
                assert row["trainable_params"] == row["params"]  # the peers train every layer
        for ours, ratio in stage["ours_vs_peer"].items():
            expected = stage["rows"][ours]["images_per_s"] / stage["rows"][stage["peer"]]["images_per_s"]
            assert _finite_positive(ratio) and ratio == pytest.approx(expected)
    # Only the smoke classifier freezes something (its trunk): only it gets an "all trainable" row.
    assert {name: len(stage["rows"]) for name, stage in stages.items()} == {
        "detector": 2,
        "classifier": 3,
        "embedder": 2,
    }
    classifier = stages["classifier"]["rows"]
    assert (
        classifier["ours (as configured)"]["trainable_params"] < classifier["ours, all trainable"]["trainable_params"]
    )
    assert classifier["ours, all trainable"]["trainable_params"] == classifier["ours, all trainable"]["params"]
    assert stages["detector"]["peer"] == "torchvision ssd300_vgg16 num_classes=2"
    assert peer_calls == [{"weights": None, "weights_backbone": None, "num_classes": 2}]


def test_bad_stage_is_rejected() -> None:
    with pytest.raises(SystemExit):
        train_throughput.parse_args(["--stages", "detector,clasifier"])


def test_detector_batch_boxes_lie_inside_the_image() -> None:
    images, targets = train_throughput.detector_batch(5, 300, torch.device("cpu"), torch.Generator().manual_seed(3))
    assert images.shape == (5, 3, 300, 300) and images.dtype == torch.uint8
    assert len(targets) == 5
    for t in targets:
        boxes, labels = t["boxes"], t["labels"]
        assert 1 <= len(boxes) <= 4 and labels.tolist() == [1] * len(boxes)
        wh = boxes[:, 2:] - boxes[:, :2]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 300).all()
        assert (wh >= 0.15 * 300 - 1e-3).all() and (wh <= 0.40 * 300 + 1e-3).all()


def test_triplet_batch_layout() -> None:
    images, labels, rows = train_throughput.triplet_batch(2, 8, torch.device("cpu"), True, torch.Generator())
    assert images.shape == (6, 3, 8, 8) and images.is_contiguous(memory_format=torch.channels_last)
    assert labels.tolist() == [0, 1, 0, 1, 2, 3]  # anchors, positives (same labels), negatives
    assert rows.tolist() == [[0, 1], [2, 3], [4, 5]]
    for a, p, n in rows.T.tolist():  # each triplet: anchor and positive agree, the negative differs
        assert labels[a] == labels[p] != labels[n]


def test_time_interleaved_rotates_the_order() -> None:
    calls: list[str] = []
    rows = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = _common.time_interleaved(rows, warmup=1, iters=2)
    assert calls == list("abc" + "bca" + "cab")
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2, "c": 2}
    assert all(t >= 0 for v in times.values() for t in v)
