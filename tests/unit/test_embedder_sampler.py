"""The embedder's samplers on a hand-made crop index: the original's triplet rule, and P x K batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from imagesearch.data.crops import CropRecord
from imagesearch.embedder.sampler import PKSampler, TripletSampler


def crop(source: str, item: str, instance: int, category: int, video: str = "") -> CropRecord:
    return CropRecord(
        file=f"{source}_{item}_{instance}.jpg", source=source, item_id=item, instance_id=instance,
        label=str(category), category=category, box=(0.0, 0.0, 1.0, 1.0), video_id=video,
    )  # fmt: skip


def crop_index() -> list[CropRecord]:
    """Items A, B, D of category 0; C alone in category 1; E a two-piece set (E1 cat 2, E2 cat 3);
    F has frames but no product crops; a distractor frame crop (instance 0)."""
    return [
        crop("frame", "A", 1, 0, "vA"),  # 0
        crop("frame", "A", 1, 0, "vA"),  # 1
        crop("image", "A", 1, 0),  # 2
        crop("image", "A", 1, 0),  # 3
        crop("frame", "B", 2, 0, "vB"),  # 4
        crop("image", "B", 2, 0),  # 5
        crop("frame", "C", 3, 1, "vC"),  # 6  (only item of category 1: negatives fall back)
        crop("image", "C", 3, 1),  # 7
        crop("frame", "D", 4, 0, "vD"),  # 8
        crop("image", "D", 4, 0),  # 9
        crop("frame", "E", 51, 2, "vE"),  # 10 top
        crop("frame", "E", 52, 3, "vE"),  # 11 bottom (only instance of category 3)
        crop("image", "E", 51, 2),  # 12
        crop("image", "E", 52, 3),  # 13
        crop("frame", "F", 6, 0, "vF"),  # 14 (no product crops: never an anchor, may be a negative)
        crop("frame", "", 0, 0, "vA"),  # 15 distractor: never used
        crop("frame", "B", 2, 0, "vA"),  # 16 item B seen in video vA: never a negative of A's anchors
    ]


def test_triplet_sampler_obeys_the_rule_on_every_draw():
    records = crop_index()
    sampler = TripletSampler(records, num_triplets=200, seed=7)
    fallbacks = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        triplets = list(sampler)
        assert len(triplets) == 200 == len(sampler)
        for a, p, n, _ in triplets:
            ra, rp, rn = records[a], records[p], records[n]
            assert ra.source == "frame" and ra.instance_id > 0
            assert rp.source == "image" and rp.instance_id == ra.instance_id
            assert rn.source == "frame" and rn.instance_id > 0
            assert rn.item_id != ra.item_id and rn.video_id != ra.video_id
            if ra.category in (1, 2, 3):  # one item in the category: the documented fallback
                fallbacks += 1
            else:
                assert rn.category == ra.category
        assert {t[0] for t in triplets} == {0, 1, 4, 6, 8, 10, 11, 16}  # every usable anchor, no 14 / 15
    assert sampler.fallbacks == fallbacks > 0


def test_triplet_sampler_negatives_of_a_are_b_d_f_from_other_videos():
    records = crop_index()
    sampler = TripletSampler(records, num_triplets=400, seed=0)
    negatives = Counter(n for a, _, n, _ in sampler if a in (0, 1))
    # category 0, not item A, not video vA: 4 (B/vB), 8 (D), 14 (F); not 16 (B but in vA), not 15.
    assert set(negatives) == {4, 8, 14}
    positives = {p for a, p, _, _ in sampler if a in (0, 1)}
    assert positives == {2, 3}
    tops = {p for a, p, _, _ in sampler if a == 10}
    assert tops == {12}  # the top's positive is the top's product crop, not the bottom's


def test_triplet_sampler_is_seeded_by_seed_and_epoch():
    records = crop_index()
    s1, s2 = TripletSampler(records, seed=3), TripletSampler(records, seed=3)
    assert len(s1) == 8  # one triplet per usable anchor by default
    assert list(s1) == list(s2)
    s2.set_epoch(1)
    assert list(s1) != list(s2)
    assert list(TripletSampler(records, seed=4)) != list(s1)


def test_triplet_sampler_without_a_possible_negative_fails():
    records = [crop("frame", "A", 1, 0, "vA"), crop("image", "A", 1, 0)]
    with pytest.raises(ValueError, match="no usable anchor"):
        TripletSampler(records)


def pk_index() -> tuple[list[int], list[str]]:
    """Identity 0: 3 frames + 3 images; 1: 1 frame + 5 images; 2: 5 frames + 1 image; 3: 1 + 1;
    4: images only (never drawn)."""
    spec = {0: (3, 3), 1: (1, 5), 2: (5, 1), 3: (1, 1), 4: (0, 4)}
    labels, sources = [], []
    for label, (n_frames, n_images) in spec.items():
        labels += [label] * (n_frames + n_images)
        sources += ["frame"] * n_frames + ["image"] * n_images
    return labels, sources


def test_pk_sampler_batches_are_p_identities_times_k_crops():
    labels, sources = pk_index()
    sampler = PKSampler(labels, sources, p=3, k=4, num_batches=50, seed=1)
    assert len(sampler) == 50
    assert sampler.identities == [0, 1, 2, 3]
    keys = list(sampler)
    assert len(keys) == 50
    assert len({seed for key in keys for _, seed in key}) > 500  # a fresh augmentation seed per crop
    batches = [[i for i, _ in key] for key in keys]
    for batch in batches:
        assert len(batch) == 12
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 3 and set(counts.values()) == {4}
        assert 4 not in counts
        for identity in counts:
            picked = [i for i in batch if labels[i] == identity]
            kinds = Counter(sources[i] for i in picked)
            assert kinds["frame"] >= 1 and kinds["image"] >= 1
            if identity == 0:  # enough of both: 2 frames + 2 images, no repeats
                assert kinds == {"frame": 2, "image": 2} and len(set(picked)) == 4
            if identity in (1, 2):  # topped up from the other source, no repeats
                assert len(set(picked)) == 4
            if identity == 3:  # 2 crops only: repeats
                assert len(set(picked)) == 2


def test_pk_sampler_default_length_and_epochs():
    labels, sources = pk_index()
    sampler = PKSampler(labels, sources, p=2, k=2, seed=0)
    assert len(sampler) == (6 + 6 + 6 + 2) // 4  # usable crops (identity 4 excluded) // (p * k)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_pk_sampler_needs_p_identities():
    labels, sources = pk_index()
    with pytest.raises(ValueError, match="only 4 identities"):
        PKSampler(labels, sources, p=5, k=2)


def test_triplet_sampler_anchors_equal_the_rule_checked_pair_by_pair():
    # Random crops of 3 items in 2 videos, so that many frame crops have no possible negative; the
    # oracle tests every frame crop against every other, as the sampler did before it counted instead.
    rng = np.random.default_rng(0)
    partial = 0  # cases where some frame crops with product crops are anchors and some are not
    for _ in range(60):
        records = []
        for _ in range(int(rng.integers(4, 12))):
            item = int(rng.integers(0, 3))
            instance = 10 * item + 1 + int(rng.integers(0, 2)) if rng.random() < 0.9 else 0
            source, video = ("frame", f"v{rng.integers(0, 2)}") if rng.random() < 0.6 else ("image", "")
            records.append(crop(source, f"I{item}" if instance else "", instance, int(rng.integers(0, 3)), video))
        frames = [i for i, r in enumerate(records) if r.source == "frame" and r.instance_id > 0]
        products = {r.instance_id for r in records if r.source == "image" and r.instance_id > 0}
        with_products = [j for j, i in enumerate(frames) if records[i].instance_id in products]
        expected = [
            j
            for j in with_products
            if any(
                records[o].item_id != records[frames[j]].item_id and records[o].video_id != records[frames[j]].video_id
                for o in frames
            )
        ]
        if not expected:
            with pytest.raises(ValueError, match="no usable anchor"):
                TripletSampler(records)
            continue
        assert TripletSampler(records).anchors.tolist() == expected
        partial += len(expected) < len(with_products)
    assert partial >= 5
