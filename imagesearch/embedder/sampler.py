"""Which crops go together in a training step: the original's triplets, and P x K batches for mining.

Identities. A crop's identity is its product *instance* (`CropRecord.instance_id`), not its item:
a two-piece item has two instances (a top and a bottom), which are different garments, so pulling
their crops together would teach the embedder that a skirt looks like a blouse. For a single-piece
item (most of them) instance and item coincide. Distractor crops (instance 0) are never used.

Triplets (SPEC §3 stage 5, the original's rule), drawn by `TripletSampler`:
  * anchor   = a crop from a video frame;
  * positive = a crop of the same instance from its item's product images;
  * negative = a crop from a frame of another video, of the same category but another item.
  When no frame crop of the anchor's category belongs to another item (a category with one item
  in the split), the negative falls back to any frame crop of another item from another video,
  so the anchor is still used; `TripletSampler.fallbacks` counts those draws.

P x K batches (`PKSampler`, for batch-hard / semi-hard mining and ArcFace): every batch holds
exactly P distinct identities x K crops each, about half from frames and half from product images.

Both samplers draw from `numpy.random.default_rng([seed, epoch])`, so an epoch's draws depend only
on (seed, epoch); `set_epoch` (called by `engine.fit`) picks the epoch, and a resumed run replays it.
Each key they yield also carries an augmentation seed (`aug_seed`): albumentations 2 draws from its
own generators, which `seed_everything` does not reach, so the datasets (`embedder.data`) re-seed the
transform with it. Augmentation is then a function of (seed, epoch) too, whatever the worker count.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from imagesearch.data.crops import CropRecord

log = logging.getLogger(__name__)

# Rejection draws of a negative before falling back to an exact (vectorised) candidate list.
_NEGATIVE_TRIES = 16


def is_identity_crop(record: CropRecord) -> bool:
    """A crop usable for metric learning: a product instance (not a distractor) mapped to an item."""
    return record.instance_id > 0 and bool(record.item_id)


class TripletSampler(Sampler[tuple[int, int, int, int]]):
    """Yield (anchor, positive, negative, aug_seed): indices into `records` by the original's rule, and a seed.

    Args:
        records: the training crops (frame and product-image crops of one or more splits).
        num_triplets: triplets per epoch; 0 = one per usable anchor (each usable frame crop once).
        seed: with the epoch, fixes every draw.

    Anchors are visited in a random order each epoch (cycled when `num_triplets` exceeds them); the
    positive is uniform over the anchor instance's product crops and the negative uniform over the
    allowed frame crops (see the module docstring).

    Raises:
        ValueError: no frame crop has both a product-image crop of its instance and a possible negative.
    """

    def __init__(self, records: Sequence[CropRecord], num_triplets: int = 0, seed: int = 0) -> None:
        self.records = list(records)
        self.seed, self.epoch = seed, 0
        self.fallbacks = 0
        usable = [i for i, r in enumerate(self.records) if is_identity_crop(r)]
        self.images_of: dict[int, list[int]] = defaultdict(list)
        for i in usable:
            if self.records[i].source == "image":
                self.images_of[self.records[i].instance_id].append(i)
        self.frames = np.array([i for i in usable if self.records[i].source == "frame"], dtype=np.int64)
        # Integer codes of each frame crop's item / video / category, for vectorised negative masks.
        self._item = _codes([self.records[i].item_id for i in self.frames])
        self._video = _codes([self.records[i].video_id for i in self.frames])
        self._category = np.array([self.records[i].category for i in self.frames], dtype=np.int64)
        self._by_category = {int(c): np.flatnonzero(self._category == c) for c in np.unique(self._category)}
        has_images = np.array([bool(self.images_of.get(self.records[i].instance_id)) for i in self.frames], bool)
        self.anchors = np.flatnonzero(has_images & self._any_negative()).astype(np.int64)
        if len(self.anchors) == 0:
            raise ValueError(
                "TripletSampler: no usable anchor: need frame crops whose instance has product-image crops, "
                "and frame crops of at least one other item from another video"
            )
        self.num_triplets = num_triplets if num_triplets > 0 else len(self.anchors)

    def _any_negative(self) -> np.ndarray:
        """(F,) bool: whether each frame crop has a frame crop of another item from another video.

        By inclusion-exclusion over the F frame crops: #{other item and other video} = F - #{same
        item} - #{same video} + #{same item and same video}; linear, where testing each crop against
        all others was quadratic (minutes at a training part's ~10^5 frame crops).
        """
        if len(self.frames) == 0:
            return np.zeros(0, bool)
        same_item = np.bincount(self._item)[self._item]
        same_video = np.bincount(self._video)[self._video]
        _, pair, same_both = np.unique(
            self._item * (int(self._video.max()) + 1) + self._video, return_inverse=True, return_counts=True
        )
        return len(self.frames) - same_item - same_video + same_both[pair] > 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws `__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_triplets

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        reps = math.ceil(self.num_triplets / len(self.anchors))
        order = np.concatenate([rng.permutation(self.anchors) for _ in range(reps)])[: self.num_triplets]
        for j in order:
            anchor = int(self.frames[j])
            positive = int(rng.choice(self.images_of[self.records[anchor].instance_id]))
            negative = int(self.frames[self._draw_negative(int(j), rng)])
            yield anchor, positive, negative, int(rng.integers(2**31))

    def _draw_negative(self, j: int, rng: np.random.Generator) -> int:
        """A position in `self.frames`: same category, other item, other video (else the fallback)."""
        same_category = self._by_category[int(self._category[j])]
        for _ in range(_NEGATIVE_TRIES):  # cheap and exactly uniform when accepted; the mask below is the slow path
            c = int(rng.choice(same_category))
            if self._item[c] != self._item[j] and self._video[c] != self._video[j]:
                return c
        allowed = same_category[
            (self._item[same_category] != self._item[j]) & (self._video[same_category] != self._video[j])
        ]
        if len(allowed) == 0:
            self.fallbacks += 1
            allowed = np.flatnonzero((self._item != self._item[j]) & (self._video != self._video[j]))
        return int(rng.choice(allowed))


def _codes(values: Sequence[str]) -> np.ndarray:
    """Map strings to dense integer codes (equal strings, equal codes)."""
    table: dict[str, int] = {}
    return np.array([table.setdefault(v, len(table)) for v in values], dtype=np.int64)


class PKSampler(Sampler[list[tuple[int, int]]]):
    """A batch sampler: each batch is exactly P distinct identities x K crops, frames and products mixed.

    Yields lists of P * K (index, aug_seed) pairs, identity by identity.

    Args:
        labels: (N,) identity of each crop (e.g. an instance index); the batches index these positions.
        sources: (N,) "frame" or "image" for each crop.
        p: identities per batch.
        k: crops per identity; ceil(K/2) are taken from frames and the rest from product images when
            the identity has enough of each, topped up from the other source otherwise. An identity
            with fewer than K crops in all repeats some (drawn with replacement).
        num_batches: batches per epoch; 0 = (usable crops) // (P * K), at least 1.
        seed: with the epoch, fixes every draw.

    Only identities with at least one frame crop and one product-image crop are drawn, so every
    identity in a batch has a cross-domain (frame <-> product) positive pair when K >= 2.

    Raises:
        ValueError: P < 1, K < 1, or fewer than P usable identities.
    """

    def __init__(
        self, labels: Sequence[int], sources: Sequence[str], p: int, k: int, num_batches: int = 0, seed: int = 0
    ) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"PKSampler: p ({p}) and k ({k}) must be >= 1")
        if len(labels) != len(sources):
            raise ValueError(f"PKSampler: {len(labels)} labels but {len(sources)} sources")
        frames: dict[int, list[int]] = defaultdict(list)
        images: dict[int, list[int]] = defaultdict(list)
        for i, (label, source) in enumerate(zip(labels, sources, strict=True)):
            (frames if source == "frame" else images)[int(label)].append(i)
        self.identities = sorted(set(frames) & set(images))
        if len(self.identities) < p:
            raise ValueError(
                f"PKSampler: only {len(self.identities)} identities have both frame and product-image crops; "
                f"a batch needs p={p}"
            )
        self.frames, self.images = frames, images
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        usable = sum(len(frames[i]) + len(images[i]) for i in self.identities)
        self.num_batches = num_batches if num_batches > 0 else max(1, usable // (p * k))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws `__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.num_batches):
            chosen = rng.choice(len(self.identities), size=self.p, replace=False)
            batch: list[int] = []
            for c in chosen:
                identity = self.identities[int(c)]
                batch += self._draw_identity(self.frames[identity], self.images[identity], rng)
            yield [(i, int(s)) for i, s in zip(batch, rng.integers(2**31, size=len(batch)), strict=True)]

    def _draw_identity(self, frames: list[int], images: list[int], rng: np.random.Generator) -> list[int]:
        take_f = min(len(frames), (self.k + 1) // 2)
        take_i = min(len(images), self.k - take_f)
        take_f = min(len(frames), self.k - take_i)  # top up from frames when products ran short
        picked = [*rng.choice(frames, take_f, replace=False), *rng.choice(images, take_i, replace=False)]
        missing = self.k - len(picked)
        if missing:  # fewer than K crops in all: repeat some
            picked += list(rng.choice(frames + images, missing, replace=True))
        return [int(i) for i in picked]
