"""The gallery: rows from annotated / detector boxes, the on-disk cache and its key, fusion weights."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imagesearch import io as io_mod
from imagesearch.data.reader import load_split
from imagesearch.detector.inference import DetectionConfig
from imagesearch.io import file_fingerprint
from imagesearch.matching.gallery import GalleryConfig, build_gallery, gallery_key
from imagesearch.matching.matcher import Matcher, MatcherConfig
from tests.unit.tiny_retrieval import fake_extractor, make_tiny_split


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return load_split(make_tiny_split(tmp_path_factory.mktemp("gallery") / "split", items=3, seed=5))


def _cfg(tmp_path: Path, **kw: object) -> GalleryConfig:
    return GalleryConfig(cache_dir=str(tmp_path / "cache"), **kw)  # type: ignore[arg-type]


def test_annotated_rows_are_the_product_boxes(split, tmp_path):
    g = build_gallery(split, fake_extractor(), _cfg(tmp_path), progress=False)
    expected = [(im.item_id, im.img_name, b.xyxy, b.label, b.instance_id)
                for im in split.product_images() for b in im.boxes if b.instance_id > 0]  # fmt: skip
    assert [(r.item_id, r.img_name, r.box, r.label, r.instance_id) for r in g.records] == expected
    assert g.parts["global"].shape == (len(expected), 6)
    assert g.parts["lbp"].shape == (len(expected), 40)  # 2x2 grid x (8 + 2) bins
    with_distractors = build_gallery(split, fake_extractor(), _cfg(tmp_path, include_distractors=True), progress=False)
    assert len(with_distractors) == sum(len(im.boxes) for im in split.product_images())


def test_cache_is_reused_and_rebuilt_when_a_checkpoint_changes(split, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights v1")
    ex = fake_extractor(files=[ckpt])
    first = build_gallery(split, ex, _cfg(tmp_path), progress=False)
    calls = ex.calls
    assert first.built and calls >= 1 and (first.folder / "meta.json").is_file()
    again = build_gallery(split, ex, _cfg(tmp_path), progress=False)
    assert not again.built and ex.calls == calls and again.key == first.key  # read back, no extractor call
    np.testing.assert_array_equal(again.parts["global"], first.parts["global"])
    assert again.records == first.records
    ckpt.write_bytes(b"weights v2")  # same size, other content
    changed = build_gallery(split, ex, _cfg(tmp_path), progress=False)
    assert changed.built and changed.key != first.key and ex.calls > calls


def test_cache_key_follows_the_settings_that_matter(split, tmp_path):
    ex = fake_extractor()
    base, _ = gallery_key(split, ex, _cfg(tmp_path))
    assert gallery_key(split, fake_extractor(margin=0.2), _cfg(tmp_path))[0] != base  # the crop geometry
    assert gallery_key(split, fake_extractor(margin=0.1), _cfg(tmp_path))[0] == base  # ... in effect, not its source
    assert gallery_key(split, fake_extractor(image_size=112), _cfg(tmp_path))[0] != base
    assert gallery_key(split, fake_extractor(layer="conv4_3"), _cfg(tmp_path))[0] != base
    # Not part of the key: where the cache lives, batching, the device, the fusion weight, and the
    # detector of an annotated gallery.
    assert gallery_key(split, ex, GalleryConfig(cache_dir=str(tmp_path / "elsewhere")))[0] == base
    assert gallery_key(split, fake_extractor(batch_size=3, device="cpu", lbp_weight=0.4), _cfg(tmp_path))[0] == base
    assert gallery_key(split, ex, _cfg(tmp_path), detector=_BoxDetector({}, min_score=0.9))[0] == base
    assert gallery_key(split, ex, _cfg(tmp_path, boxes="detector"))[0] != base


def test_file_fingerprint_full_hash_and_big_file_edges(tmp_path, monkeypatch):
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc" * 1000)
    assert file_fingerprint(small) == "sha1:" + hashlib.sha1(b"abc" * 1000).hexdigest()
    monkeypatch.setattr(io_mod, "FULL_HASH_LIMIT", 100)
    monkeypatch.setattr(io_mod, "EDGE_BYTES", 10)
    io_mod._fingerprint.cache_clear()
    big = tmp_path / "big.bin"
    data = bytearray(range(200))
    big.write_bytes(bytes(data))
    fp = file_fingerprint(big)
    expected = hashlib.sha1(bytes(data[:10]) + bytes(data[-10:])).hexdigest()
    assert fp.startswith("edges:200:") and fp.endswith(expected)
    data[-1] ^= 0xFF
    big.write_bytes(bytes(data))
    assert file_fingerprint(big) != fp
    io_mod._fingerprint.cache_clear()


def test_configured_fusion_weight_flows_into_the_index(split, tmp_path):
    ex = fake_extractor(lbp_weight=0.3)
    g = build_gallery(split, ex, _cfg(tmp_path), progress=False)
    # Hand-made fusion: each part is unit-norm, scaled by sqrt(w / (1 + 0.3)).
    by_hand = np.concatenate(
        [g.parts["global"] * math.sqrt(1 / 1.3), g.parts["lbp"] * math.sqrt(0.3 / 1.3)], axis=1
    ).astype(np.float32)
    np.testing.assert_allclose(g.features(ex.fuse), by_hand, rtol=1e-5, atol=1e-6)
    matcher = Matcher(g, ex, MatcherConfig(gt_boxes=True))
    dist, rows = matcher.index.search(by_hand, 1)
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-5)
    np.testing.assert_array_equal(g.parts["global"][rows[:, 0]], g.parts["global"])
    # The FAISS option gives the same neighbours as the exact brute-force default.
    faiss_matcher = Matcher(g, ex, MatcherConfig(gt_boxes=True), index="faiss_flat")
    np.testing.assert_array_equal(faiss_matcher.index.search(by_hand, 3)[1], matcher.index.search(by_hand, 3)[1])
    # With weight 0 the index holds the global part alone.
    plain = Matcher(g, fake_extractor(lbp_weight=0.0), MatcherConfig(gt_boxes=True))
    assert plain.index.dim == 6


class _BoxDetector:
    """A `Detects` whose raw detections are the annotated boxes of each image (found by size), shifted by 1 px,
    at score 0.9, plus a box at 0.1; it post-processes them as `detector.Detector` does (min_score, keep_best)."""

    def __init__(self, boxes_by_shape: dict[tuple[int, int], list], min_score: float = 0.3) -> None:
        self.boxes_by_shape = boxes_by_shape
        self.post = DetectionConfig(min_score=min_score)
        self.calls = 0

    def key_config(self):
        return {"post": vars(self.post)}

    def detect(self, frames, keep_best=False):
        self.calls += 1
        out = []
        for f in frames:
            boxes = np.array([[x1 + 1, y1, x2 + 1, y2] for x1, y1, x2, y2 in self.boxes_by_shape[f.shape[:2]]] + [[0, 0, 5, 5]], np.float32)  # fmt: skip
            scores = np.array([0.9] * (len(boxes) - 1) + [0.1], np.float32)
            keep = scores >= self.post.min_score
            if keep_best and not keep.any():
                keep = scores == scores.max()
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": np.ones(int(keep.sum()), np.int64)})
        return out


class _Skirts:
    """A classifier calling every box a skirt (`LabelsBoxes`)."""

    def box_labels(self, images, owners, boxes, margin, max_side):
        assert len(owners) == len(boxes) and owners.max() < len(images)
        return ["短裙"] * len(boxes)


def test_detector_rows_never_read_annotations(split, tmp_path):
    image = split.product_images()[0]
    one = replace(split, items={image.item_id: replace(split.items[image.item_id], images=[image])})
    det = _BoxDetector({(image.height, image.width): [b.xyxy for b in image.boxes]})
    g = build_gallery(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), det, progress=False)
    assert det.calls == 1
    expected = sorted((x1 + 1, y1, x2 + 1, y2) for x1, y1, x2, y2 in (b.xyxy for b in image.boxes))
    np.testing.assert_allclose(sorted(r.box for r in g.records), expected)
    # No instance ids from the annotation (predictions must not depend on it); the low-score box is dropped.
    assert all((r.instance_id, r.label, r.source) == (0, None, "detector") for r in g.records)
    assert all(r.score == pytest.approx(0.9) for r in g.records)
    # The same image without its annotation gives the same rows and the same cache key.
    bare = replace(one, items={image.item_id: replace(one.items[image.item_id], images=[replace(image, boxes=[])])})
    assert gallery_key(bare, fake_extractor(), _cfg(tmp_path, boxes="detector"), detector=det)[0] == gallery_key(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), detector=det)[0]  # fmt: skip
    # The detector's post-processing is part of the key (it decides the boxes).
    other = _BoxDetector(det.boxes_by_shape, min_score=0.5)
    assert gallery_key(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), detector=other)[0] != gallery_key(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), detector=det)[0]  # fmt: skip


def test_an_image_without_detections_stays_reachable(split, tmp_path):
    image = split.product_images()[0]
    one = replace(split, items={image.item_id: replace(split.items[image.item_id], images=[image])})
    low = _BoxDetector({(image.height, image.width): []})  # only the 0.1 box, below min_score
    g = build_gallery(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), low, use_cache=False, progress=False)  # fmt: skip
    assert [(r.box, r.source) for r in g.records] == [((0.0, 0.0, 5.0, 5.0), "detector_low")]
    assert g.records[0].score == pytest.approx(0.1)

    class Nothing(_BoxDetector):
        def detect(self, frames, keep_best=False):
            return [{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64)} for _ in frames]  # fmt: skip

    g = build_gallery(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), Nothing({}), use_cache=False, progress=False)  # fmt: skip
    whole = (0.0, 0.0, float(image.width), float(image.height))
    assert [(r.box, r.source, r.score) for r in g.records] == [(whole, "whole_image", 0.0)]


def test_annotated_boxes_need_annotations(split, tmp_path):
    bare = replace(split, items={k: replace(it, images=[replace(im, annotation_path=None, boxes=[]) for im in it.images]) for k, it in split.items.items()})  # fmt: skip
    with pytest.raises(ValueError, match="has none .a test split.*gallery.boxes=detector"):
        build_gallery(bare, fake_extractor(), _cfg(tmp_path), progress=False)


def test_detector_rows_with_a_classifier(split, tmp_path):
    image = split.product_images()[0]
    one = replace(split, items={image.item_id: replace(split.items[image.item_id], images=[image])})
    det = _BoxDetector({(image.height, image.width): [b.xyxy for b in image.boxes]})
    labelled = build_gallery(
        one, fake_extractor(), _cfg(tmp_path, boxes="detector"), det, classify=_Skirts(),
        use_cache=False, progress=False,
    )  # fmt: skip
    assert {r.label for r in labelled.records} == {"短裙"}
    with pytest.raises(ValueError, match="detector checkpoint"):
        build_gallery(one, fake_extractor(), _cfg(tmp_path, boxes="detector"), progress=False)
