"""Every stage in turn (SPEC §3): data -> detector -> classifier -> embedder -> fusion weight -> evaluation.

Each stage runs what the stage's own script runs (`run(cfg)` of detector / classifier / embedder
`train`, `evaluate_split`), in-process, with its YAML config plus the overrides that chain it to the
previous stage:

    detector    data.train_roots / data.val_root
    classifier  model.weights          = <detector>/trunk.pth      (the detector's VGG16 trunk)
    embedder    model.init_checkpoint  = <classifier>/best.pt      (the classifier without its FC)
    fusion      features.lbp_weight chosen on the validation split (`tune_fusion_weight`)
    evaluation  detector / classifier / embedder checkpoints, the chosen LBP weight

Each stage keeps `stage.json` in its folder: its key (the exact argv and the content fingerprint of
every file it names: configs, input checkpoints) and `done`. A later run skips a stage that is done
with the same key; one that started with the same key but was interrupted is rerun and resumes from
its `last.pt` (the engine's resume), so a pipeline can be stopped and restarted at any point; a
folder left under another key (changed settings, or a retrained earlier stage) is moved aside to
`<stage>.old` and the stage runs afresh. Synthetic splits (the demo) are generated first, each once per
(items, seed, sizes), recorded in `<out_dir>/splits/<name>.json`.

Stage overrides on the command line are routed by prefix: `detector.train.epochs=1` goes to the
detector's script as `train.epochs=1`; `eval.matcher.num_frames=20` to the evaluation. `seed=n` (a
pipeline key) goes to every training stage as `train.seed=n`, after the stage's config overrides and
before its own command-line ones; the synthetic splits keep their data seeds.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from imagesearch.backbones import TRUNK_FILE
from imagesearch.config import load_config, write_config
from imagesearch.io import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["FoldsSection", "PipelineRun", "SplitSpec", "StageSection", "SyntheticSection", "route_overrides", "run_pipeline"]

STAGES = ("detector", "classifier", "embedder", "eval")
STAGE_FILE = "stage.json"


@dataclass
class SplitSpec:
    """One synthetic split: its folder name, item count, seed (different seeds: disjoint items) and
    annotated-frame spacing (frames 0, annotate_every, ...; 40 gives the real data's 10 per 400 frames)."""

    name: str = "train"
    items: int = 24
    seed: int = 0
    annotate_every: int = 40


@dataclass
class SyntheticSection:
    """Generate synthetic splits first (the demo); then train on `train`, tune on `val`, report on `test`."""

    enabled: bool = False
    splits: list[SplitSpec] = field(
        default_factory=lambda: [SplitSpec("train", 24, 0), SplitSpec("val", 12, 1), SplitSpec("test", 12, 2)]
    )
    frames: int = 81
    width: int = 136
    height: int = 240
    image_size: int = 200
    workers: int = 2


@dataclass
class StageSection:
    """A stage: on or off, its YAML config and extra `key=value` overrides for its script."""

    enabled: bool = True
    config: str = ""
    overrides: list[str] = field(default_factory=list)


@dataclass
class FusionSection:
    """Choose the LBP fusion weight on the validation split (never on the reported split)."""

    tune: bool = True
    candidates: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.3, 0.5])


@dataclass
class FoldsSection:
    """Cross-validate on a small annotated split instead (`imagesearch.folds.run_folds`): hold out one video and
    its item at a time, train on the rest, evaluate on it; then train on the whole split.

    Attributes:
        source: the split; "" = no folds (train_roots / val_root / eval_split are used).
        holdout: the videos held out, one fold each; [] = every present video that shows an item.
        gt_boxes: also evaluate each fold with the annotated boxes (the gap is what detection costs).
        final: train the stages on the whole split at the end and write `final/predict.yaml`.
    """

    source: str = ""
    holdout: list[str] = field(default_factory=list)
    gt_boxes: bool = True
    final: bool = True


@dataclass
class PipelineRun:
    """Everything `scripts/run_pipeline.py` reads (defaults <- YAML <- key=value overrides).

    Attributes:
        out_dir: every stage writes under it (`detector/`, `classifier/`, `embedder/`, `eval/`, `cache/`).
        train_roots: training splits; every stage trains on all of them. Set from the synthetic splits
            when `synthetic.enabled`.
        val_root: the validation split: best checkpoints, category merging, the fusion weight.
        eval_split: the split evaluated and reported.
        gt_boxes: evaluate with annotated boxes instead of the detector.
        imagenet_weights: the converted ImageNet VGG16 file (SPEC §5); when a stage's config names it
            (a `weights` key) and it is missing, the pipeline converts it first, offline.
        cache_dir: where the stages keep decoded frames, trunk views, crops and galleries; "" is
            `<out_dir>/cache` (runs that share images, such as folds, share one).
        seed: every training stage's `train.seed` (its initialisation, augmentation and sampling);
            None leaves each stage's own. The data (synthetic splits) does not depend on it.
    """

    out_dir: str = "runs/pipeline"
    train_roots: list[str] = field(default_factory=list)
    val_root: str = ""
    eval_split: str = ""
    gt_boxes: bool = False
    imagenet_weights: str = "data/weights/vgg16_features.pth"
    cache_dir: str = ""
    seed: int | None = None
    synthetic: SyntheticSection = field(default_factory=SyntheticSection)
    detector: StageSection = field(default_factory=lambda: StageSection(config="configs/detector/ssd300_vgg16.yaml"))
    classifier: StageSection = field(
        default_factory=lambda: StageSection(config="configs/classifier/vgg16bn_inceptionc.yaml")
    )
    embedder: StageSection = field(default_factory=lambda: StageSection(config="configs/embedder/triplet.yaml"))
    fusion: FusionSection = field(default_factory=FusionSection)
    eval: StageSection = field(default_factory=lambda: StageSection(config="configs/eval/default.yaml"))
    folds: FoldsSection = field(default_factory=FoldsSection)


def route_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split command-line overrides into the pipeline's own and each stage's.

    `<stage>.<key>=v` with `<key>` not a `StageSection` field goes to that stage as `<key>=v`.

    >>> route_overrides(["out_dir=/tmp/x", "detector.train.epochs=1", "detector.enabled=false"])
    (['out_dir=/tmp/x', 'detector.enabled=false'], {'detector': ['train.epochs=1']})
    """
    own: list[str] = []
    staged: dict[str, list[str]] = {}
    section_keys = {f.name for f in fields(StageSection)}
    for item in overrides:
        head, _, rest = item.partition(".")
        if head in STAGES and rest and rest.split("=", 1)[0].split(".")[0] not in section_keys:
            staged.setdefault(head, []).append(rest)
        else:
            own.append(item)
    return own, staged


def _checkpoint(folder: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no best.pt or last.pt; did the stage run?")


def _stage_key(argv: list[str]) -> dict[str, Any]:
    """The argv and the content fingerprint of every file it names (input checkpoints, configs)."""
    from imagesearch.io import file_fingerprint

    paths = [argv[0], *(a.split("=", 1)[1] for a in argv[1:] if "=" in a)]
    return {"argv": argv, "inputs": {p: file_fingerprint(p) for p in paths if p and Path(p).is_file()}}


def _run_stage(name: str, folder: Path, argv: list[str], runner: Callable[[list[str]], Any], summary: dict) -> None:
    """Run a stage unless `<folder>/stage.json` says it completed with the same key.

    A stage that started with the same key but did not finish is rerun, and its training resumes
    from last.pt. A folder left by a different key (other config or changed input checkpoints) is
    moved to `<folder>.old` first, so a stale last.pt is never resumed.
    """
    marker, key = folder / STAGE_FILE, _stage_key(argv)
    if marker.is_file():
        stored = json.loads(marker.read_text(encoding="utf-8"))
        if stored.get("key") == key and stored.get("done"):
            log.info("pipeline: %s is complete (%s); skipped", name, marker)
            summary["skipped"].append(name)
            return
        if stored.get("key") != key:
            old = folder.with_name(folder.name + ".old")
            log.warning("pipeline: %s: settings or inputs changed; moving the old run to %s", name, old)
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
    log.info("pipeline: %s: %s", name, " ".join(argv))
    atomic_write_text(marker, json.dumps({"stage": name, "key": key, "done": False}, ensure_ascii=False) + "\n")
    runner(argv)
    atomic_write_text(marker, json.dumps({"stage": name, "key": key, "done": True}, ensure_ascii=False) + "\n")
    summary["ran"].append(name)


# The stages, by the package that exposes each one's `Run` config and `run` (the stage API, see
# `imagesearch.detector`); imported when run, so that reading this module loads no model code.
STAGE_PACKAGES = {
    "detector": "imagesearch.detector",
    "classifier": "imagesearch.classifier",
    "embedder": "imagesearch.embedder",
    "eval": "imagesearch.evaluation",
}


def run_stage_argv(name: str, argv: list[str]) -> Any:
    """What a stage's script does with `CONFIG key=value ...`: load its `Run` config and `run` it."""
    package = importlib.import_module(STAGE_PACKAGES[name])
    return package.run(load_config(package.Run, argv[0], argv[1:]))


RUNNERS: dict[str, Callable[[list[str]], Any]] = {name: partial(run_stage_argv, name) for name in STAGE_PACKAGES}


def _make_splits(cfg: PipelineRun, out: Path) -> None:
    from imagesearch.synthetic import SyntheticConfig, generate_split

    syn = cfg.synthetic
    root = out / "splits"
    for spec in syn.splits:
        folder, stamp = root / spec.name, root / f"{spec.name}.json"
        sc = SyntheticConfig(frames=syn.frames, width=syn.width, height=syn.height, image_size=syn.image_size,
                             annotate_every=spec.annotate_every, workers=max(1, syn.workers), overwrite=True)  # fmt: skip
        # The stamp is every generator setting that shapes the files (not how many workers wrote them), so a
        # setting added to SyntheticConfig can never be left out of it.
        settings = {k: v for k, v in asdict(sc).items() if k not in ("workers", "overwrite")}
        want = {"items": spec.items, "seed": spec.seed, **settings}
        if folder.is_dir() and stamp.is_file() and json.loads(stamp.read_text()) == want:
            continue
        log.info("pipeline: generating synthetic split %s (%d items, seed %d)", folder, spec.items, spec.seed)
        generate_split(folder, spec.items, spec.seed, sc)  # appears only when complete
        atomic_write_text(stamp, json.dumps(want) + "\n")
    names = {s.name: str(root / s.name) for s in syn.splits}
    missing = {"train", "val", "test"} - set(names)
    if missing:
        raise ValueError(f"synthetic.splits must name train, val and test splits; missing {sorted(missing)}")
    cfg.train_roots, cfg.val_root, cfg.eval_split = [names["train"]], names["val"], names["test"]


def _cache(cfg: PipelineRun) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache"


def _stage_argvs(cfg: PipelineRun, out: Path, staged: dict[str, list[str]]) -> dict[str, list[str]]:
    roots = "[" + ",".join(cfg.train_roots) + "]"
    cache = _cache(cfg)
    det, cls, emb = out / "detector", out / "classifier", out / "embedder"
    common = {
        "detector": [f"data.train_roots={roots}", f"data.val_root={cfg.val_root}",
                     f"data.cache_dir={cache / 'detector_frames'}", f"train.out_dir={det}"],
        "classifier": [f"data.train_roots={roots}", f"data.val_root={cfg.val_root}",
                       f"data.cache_dir={cache / 'crops'}", f"train.out_dir={cls}"],
        "embedder": [f"data.train_roots={roots}", f"data.val_root={cfg.val_root}",
                     f"data.cache_dir={cache / 'crops'}", f"train.out_dir={emb}"],
    }  # fmt: skip
    # The pipeline's seed overrides the stage configs' but not a seed given on the command line for one stage.
    seed = [] if cfg.seed is None else [f"train.seed={cfg.seed}"]
    argvs = {}
    for name in ("detector", "classifier", "embedder"):
        section: StageSection = getattr(cfg, name)
        argvs[name] = [section.config, *common[name], *section.overrides, *seed, *staged.get(name, [])]
    if cfg.detector.enabled and cfg.classifier.enabled:  # the detector's trunk, as a weights file
        argvs["classifier"].insert(1, f"model.weights={det / TRUNK_FILE}")
    if cfg.classifier.enabled and cfg.embedder.enabled:
        argvs["embedder"].insert(1, f"model.init_checkpoint={cls / 'best.pt'}")
    return argvs


def _eval_overrides(cfg: PipelineRun, out: Path, staged: dict[str, list[str]]) -> list[str]:
    argv = [f"gallery.cache_dir={_cache(cfg) / 'gallery'}", f"out_dir={out / 'eval'}"]
    if cfg.gt_boxes:
        argv += ["matcher.gt_boxes=true", "gallery.boxes=annotated"]
    elif cfg.detector.enabled:
        argv.append(f"detector.checkpoint={_checkpoint(out / 'detector')}")
    if cfg.classifier.enabled:
        argv.append(f"classifier.checkpoint={_checkpoint(out / 'classifier')}")
    if cfg.embedder.enabled:
        argv += ["features.kind=embedder", f"features.checkpoint={_checkpoint(out / 'embedder')}"]
    return [*argv, *cfg.eval.overrides, *staged.get("eval", [])]


def _tune_fusion(cfg: PipelineRun, overrides: list[str], out: Path, summary: dict) -> float:
    from imagesearch.evaluation.evaluate import EvalRun
    from imagesearch.evaluation.fusion import tune_fusion_weight

    path = out / "fusion.json"
    argv = [cfg.eval.config, *overrides, f"data.split={cfg.val_root}", f"out_dir={out / 'fusion'}"]
    key = {**_stage_key(argv), "candidates": list(cfg.fusion.candidates)}
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            summary["skipped"].append("fusion")
            return float(stored["lbp_weight"])
    result = tune_fusion_weight(load_config(EvalRun, argv[0], argv[1:]), cfg.fusion.candidates)
    atomic_write_text(path, json.dumps({**result, "key": key}, indent=2, ensure_ascii=False) + "\n")
    summary["ran"].append("fusion")
    return float(result["lbp_weight"])


def _weights_values(tree: Any) -> set[str]:
    """Every value of a key named `weights` in a config dict, at any depth."""
    if isinstance(tree, dict):
        found = {str(v) for k, v in tree.items() if k == "weights" and isinstance(v, str)}
        return found.union(*(_weights_values(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(*(_weights_values(v) for v in tree))
    return set()


def _ensure_imagenet(cfg: PipelineRun, argvs: dict[str, list[str]]) -> None:
    """Convert the ImageNet VGG16 file when a stage that will run names it and it is missing."""
    from imagesearch.config import config_to_dict
    from imagesearch.weights import ensure_vgg16_weights

    target = Path(cfg.imagenet_weights)
    if not cfg.imagenet_weights or target.is_file():
        return
    for name, argv in argvs.items():
        if not getattr(cfg, name).enabled:
            continue
        stage_cfg = load_config(importlib.import_module(STAGE_PACKAGES[name]).Run, argv[0], argv[1:])
        if any(Path(v) == target for v in _weights_values(config_to_dict(stage_cfg))):
            log.info("pipeline: %s needs %s, which is missing: converting it (offline)", name, target)
            ensure_vgg16_weights(target)
            return


def run_pipeline(cfg: PipelineRun, staged: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Run every enabled stage in turn, skipping completed ones.

    Args:
        cfg: the pipeline config.
        staged: extra overrides per stage ("detector", "classifier", "embedder", "eval").

    Returns:
        {"ran": [...], "skipped": [...], "lbp_weight", "metrics" (the evaluation's metrics.json),
        "report" (path of report.html), "out_dir", "seed" (the training seed given, None for the stages' own)}.
    """
    staged = staged or {}
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.synthetic.enabled:
        _make_splits(cfg, out)
    if not cfg.train_roots or (cfg.eval.enabled and not cfg.eval_split):
        raise ValueError("train_roots and eval_split must be set (or synthetic.enabled=true, or folds.source)")
    if not cfg.val_root and (cfg.fusion.tune or cfg.classifier.enabled):
        raise ValueError("val_root must be set: the fusion weight and the classifier's category merges are chosen on it")
    write_config(cfg, out, "pipeline.yaml")
    summary: dict[str, Any] = {"ran": [], "skipped": [], "out_dir": str(out), "seed": cfg.seed}
    argvs = _stage_argvs(cfg, out, staged)
    _ensure_imagenet(cfg, {**argvs, "eval": [cfg.eval.config, *cfg.eval.overrides, *staged.get("eval", [])]})
    for name in ("detector", "classifier", "embedder"):
        if getattr(cfg, name).enabled:
            _run_stage(name, out / name, argvs[name], RUNNERS[name], summary)
    overrides = _eval_overrides(cfg, out, staged)
    weight = None
    if cfg.fusion.tune:
        weight = _tune_fusion(cfg, overrides, out, summary)
        overrides.append(f"features.lbp_weight={weight}")
    summary["lbp_weight"] = weight
    if cfg.eval.enabled:
        argv = [cfg.eval.config, f"data.split={cfg.eval_split}", *overrides]
        _run_stage("eval", out / "eval", argv, RUNNERS["eval"], summary)
        summary["metrics"] = json.loads((out / "eval" / "metrics.json").read_text(encoding="utf-8"))
        summary["report"] = summary["metrics"].get("report")
    return summary
