"""`scripts/run_pipeline.py` on tiny synthetic splits: every stage in turn, skipping, resuming, invalidation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagesearch.data.reader import load_split
from imagesearch.metrics.results import parse_results
from imagesearch.pipeline import route_overrides
from tests.helpers import load_script
from tests.pipeline.test_evaluate_top20 import REPO

TINY_TRAIN = ["train.epochs=1", "train.max_iters_per_epoch=2", "train.tensorboard=false", "train.progress=false"]
ARGS = [
    "synthetic.enabled=true", "synthetic.frames=81", "synthetic.width=136", "synthetic.height=240",
    "synthetic.image_size=200", "synthetic.workers=1",
    "synthetic.splits=[{name: train, items: 3, seed: 0, annotate_every: 20}, {name: val, items: 2, seed: 1}, {name: test, items: 2, seed: 2}]",
    "detector.config=configs/smoke/detector.yaml", "classifier.config=configs/smoke/classifier.yaml",
    "embedder.config=configs/smoke/embedder.yaml",
    *(f"{stage}.{o}" for stage in ("detector", "classifier", "embedder") for o in TINY_TRAIN),
    "detector.data.budget=16", "detector.data.batch_size=8", "detector.data.num_workers=0",
    "classifier.data.samples_per_epoch=16", "classifier.data.batch_size=8", "embedder.data.batch_size=4",
    "eval.detector.min_score=0.0", "eval.progress=false", "eval.report.max_videos=2",
]  # fmt: skip


def _stage(out: Path, name: str) -> dict:
    return json.loads((out / name / "stage.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    argv = [str(REPO / "configs/smoke/pipeline.yaml"), f"out_dir={out}", *ARGS]
    return out, argv, load_script("run_pipeline").main(argv)


def test_every_stage_runs_and_feeds_the_next(first_run):
    out, _, summary = first_run
    assert summary["ran"] == ["detector", "classifier", "embedder", "fusion", "eval"] and summary["skipped"] == []
    for name in ("detector", "classifier", "embedder", "eval"):
        assert _stage(out, name)["done"]
    assert (out / "classifier" / "merge_map.json").is_file()
    cls_argv = _stage(out, "classifier")["key"]["argv"]
    emb_argv = _stage(out, "embedder")["key"]["argv"]
    assert f"model.weights={out / 'detector' / 'trunk.pth'}" in cls_argv and (out / "detector" / "trunk.pth").is_file()
    assert f"model.init_checkpoint={out / 'classifier' / 'best.pt'}" in emb_argv
    eval_argv = _stage(out, "eval")["key"]["argv"]
    assert f"data.split={out / 'splits' / 'test'}" in eval_argv and "features.kind=embedder" in eval_argv
    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["split"] == str(out / "splits" / "val")  # tuned on val, never on test
    assert f"features.lbp_weight={fusion['lbp_weight']}" in eval_argv
    assert summary["metrics"]["videos"]["evaluated"] == 2 and Path(summary["report"]).is_file()
    parse_results(out / "eval" / "result.json")
    # Each split's annotated-frame spacing: train every 20th of 81 frames, val and test the default 40th.
    for name, frames in (("train", [0, 20, 40, 60, 80]), ("val", [0, 40, 80]), ("test", [0, 40, 80])):
        split = load_split(out / "splits" / name, probe_videos=False)
        assert {tuple(sorted(f.frame_index for f in v.frames)) for v in split.videos.values()} == {tuple(frames)}, name


def test_rerun_skips_resumes_and_invalidates(first_run):
    out, argv, _ = first_run
    main = load_script("run_pipeline").main
    again = main(argv)
    assert again["ran"] == [] and again["skipped"] == ["detector", "classifier", "embedder", "fusion", "eval"]
    # An interrupted embedder (its marker not done): rerun resumes from last.pt, which is already complete,
    # so the checkpoint is untouched and the evaluation (same inputs) stays skipped.
    marker = out / "embedder" / "stage.json"
    state = json.loads(marker.read_text())
    marker.write_text(json.dumps({**state, "done": False}))
    last = (out / "embedder" / "last.pt").stat().st_mtime_ns
    resumed = main(argv)
    assert resumed["ran"] == ["embedder"] and "eval" in resumed["skipped"]
    assert (out / "embedder" / "last.pt").stat().st_mtime_ns == last
    # A changed evaluation setting reruns the evaluation (and the fusion tuning, which reads the same
    # settings), not the training; the old evaluation folder is moved aside.
    changed = main([*argv, "eval.matcher.k=5"])
    assert changed["ran"] == ["fusion", "eval"] and (out / "eval.old" / "metrics.json").is_file()
    assert "matcher.k=5" in _stage(out, "eval")["key"]["argv"]


def test_route_overrides():
    own, staged = route_overrides(["out_dir=x", "eval.matcher.k=5", "eval.enabled=false", "fusion.tune=false"])
    assert own == ["out_dir=x", "eval.enabled=false", "fusion.tune=false"] and staged == {"eval": ["matcher.k=5"]}


def test_every_stage_gets_every_training_part(tmp_path):
    from imagesearch.pipeline import PipelineRun, _stage_argvs

    cfg = PipelineRun(train_roots=["/d/part1", "/d/part2", "/d/part3"], val_root="/d/val", eval_split="/d/val2")
    argvs = _stage_argvs(cfg, tmp_path, {})
    for stage in ("detector", "classifier", "embedder"):
        assert "data.train_roots=[/d/part1,/d/part2,/d/part3]" in argvs[stage], stage


def test_seed_goes_to_every_training_stage_and_loads_as_each_stage_seed(tmp_path):
    import importlib

    from imagesearch.config import load_config
    from imagesearch.pipeline import STAGE_PACKAGES, PipelineRun, _stage_argvs

    base = PipelineRun(train_roots=["/d/train"], val_root="/d/val", eval_split="/d/test")
    base.detector.config = str(REPO / "configs/smoke/detector.yaml")
    base.classifier.config = str(REPO / "configs/smoke/classifier.yaml")
    base.embedder.config = str(REPO / "configs/smoke/embedder.yaml")
    base.detector.overrides = ["train.seed=5"]  # a stage config's own seed: the pipeline's replaces it
    unseeded = _stage_argvs(base, tmp_path, {})
    assert not any(a.startswith("train.seed=") for a in unseeded["classifier"] + unseeded["embedder"])
    base.seed = 7
    argvs = _stage_argvs(base, tmp_path, {"embedder": ["train.seed=3"]})  # one stage's own on the command line wins
    expect = {"detector": 7, "classifier": 7, "embedder": 3}
    for stage, seed in expect.items():
        run = load_config(importlib.import_module(STAGE_PACKAGES[stage]).Run, argvs[stage][0], argvs[stage][1:])
        assert run.train.seed == seed, stage


def test_seed_is_a_pipeline_key():
    own, staged = route_overrides(["seed=4", "detector.train.seed=2"])
    assert own == ["seed=4"] and staged == {"detector": ["train.seed=2"]}
