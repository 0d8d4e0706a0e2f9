"""The detector at inference: batched detection on frames of any size, and its one post-processing.

`Detector` is the one call the gallery (product images) and the matcher (frames) make; `DetectionConfig`
is how raw SSD outputs become garment boxes for both alike (one score threshold, one class-agnostic NMS,
one cap per image), so no caller filters boxes again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from imagesearch.backbones import VGG16_MEAN, VGG16_STD
from imagesearch.detector.model import label_names, load_detector

__all__ = ["DetectionConfig", "Detector"]


@dataclass
class DetectionConfig:
    """How the detector's raw outputs become garment boxes: one rule for product images and frames alike.

    Attributes:
        min_score: the lowest garment score kept (the score is the best foreground class's probability).
        nms_iou: one class-agnostic NMS: a box overlapping a higher-scoring kept box more than this is a
            duplicate or an occluded garment and is dropped, keeping the highest-scoring (SPEC §3 stage 7).
        max_per_image: at most this many boxes per image or frame, best first.
    """

    min_score: float = 0.3
    nms_iou: float = 0.45
    max_per_image: int = 8


class Detector:
    """Batched garment detection on frames of any size: the one call the gallery and the matcher make.

    Args:
        model: an SSD from `build_detector`; put in eval mode and moved to `device`.
        classes: the model's class mode, for `names`.
        device: where to run.
        amp: float16 autocast on CUDA (ignored on CPU).
        post: the post-processing (`DetectionConfig`): one score threshold, one NMS, one cap. The SSD's
            own `score_thresh` / `nms_thresh` / `detections_per_img` serve only training-time evaluation.

    The hot path skips `SSD.transform` (one resize per image in float, then a padded batch) and does
    the same with one op per batch: uint8 frames of a size are stacked, moved to the device, resized
    by bilinear interpolation (as `GeneralizedRCNNTransform` does) and normalised together. The SSD's
    own backbone, head, anchor generator and box coder then run as in `SSD.forward`; `_postprocess`
    replaces its per-class post-processing by `post`'s class-agnostic one, and boxes are scaled back to
    each frame's pixels.
    """

    def __init__(
        self, model: SSD, classes: str = "garment", device: str | torch.device = "cpu", amp: bool = False,
        post: DetectionConfig | None = None,
    ) -> None:  # fmt: skip
        self.post = post or DetectionConfig()
        if not 0.0 <= self.post.nms_iou <= 1.0 or self.post.max_per_image < 1:
            raise ValueError(f"detector: nms_iou must be in [0, 1] and max_per_image >= 1, got {self.post}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.classes, self.names = classes, label_names(classes)
        size = model.transform.fixed_size
        if size is None:
            raise ValueError("Detector needs an SSD with a fixed input size")
        self.size = (int(size[1]), int(size[0]))  # fixed_size is (width, height); keep (height, width)
        self.amp = amp and self.device.type == "cuda"
        self._mean = torch.tensor(VGG16_MEAN, device=self.device).view(1, 3, 1, 1)
        self._inv_std = 1.0 / torch.tensor(VGG16_STD, device=self.device).view(1, 3, 1, 1)
        self._anchor_cache: Tensor | None = None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", amp: bool = False, post: DetectionConfig | None = None
    ) -> Detector:
        """Load a training checkpoint (`last.pt` / `best.pt`) through `load_detector`."""
        model, cfg = load_detector(path)
        return cls(model, cfg.classes, device, amp, post)

    def key_config(self) -> dict[str, Any]:
        """What decides the boxes besides the weights file (for cache keys): the post-processing and size."""
        return {"post": asdict(self.post), "size": list(self.size), "classes": self.classes}

    def preprocess(self, frames: Sequence[np.ndarray]) -> Tensor:
        """(N, 3, H, W) normalised batch at the model size from RGB uint8 (h, w, 3) frames of any sizes."""
        batch = torch.empty((len(frames), 3, *self.size), device=self.device)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected an RGB uint8 (H, W, 3) array, got {frame.dtype} {frame.shape}")
            by_size.setdefault(frame.shape, []).append(i)
        for idx in by_size.values():
            x = torch.from_numpy(np.stack([frames[i] for i in idx])).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
            batch[idx] = (x - self._mean) * self._inv_std
        return batch

    def _anchors(self) -> Tensor:
        # The default boxes depend only on the input size: compute them once, through the SSD's own
        # generator (it reads only the maps' sides, dtype and device, so empty maps stand in).
        if self._anchor_cache is None:
            sides = self.model.backbone.feature_sizes
            maps = [torch.empty((1, 0, s, s), device=self.device) for s in sides]
            images = ImageList(torch.empty((1, 3, *self.size), device=self.device), [self.size])
            self._anchor_cache = self.model.anchor_generator(images, maps)[0]
        return self._anchor_cache

    def _postprocess(self, regression: Tensor, logits: Tensor, keep_best: bool) -> tuple[Tensor, Tensor, Tensor]:
        """One image's (A, 4) box regressions and (A, C) class logits -> kept boxes, scores, labels.

        Each default box is one candidate with its best foreground class; those >= `min_score` (the best
        `topk_candidates` of them) go through one class-agnostic NMS, and the first `max_per_image` stay.
        Hand-written because torchvision's `SSD.postprocess_detections` thresholds and suppresses class by
        class and cannot fall back to an image's best box.
        """
        boxes = box_ops.clip_boxes_to_image(self.model.box_coder.decode_single(regression, self._anchors()), self.size)
        scores, labels = F.softmax(logits, dim=-1)[:, 1:].max(dim=1)
        candidates = torch.nonzero(scores >= self.post.min_score).squeeze(1)
        if candidates.numel() == 0 and keep_best:
            candidates = scores.argmax().view(1)
        top = scores[candidates].topk(min(self.model.topk_candidates, candidates.numel())).indices
        candidates = candidates[top]
        kept = box_ops.nms(boxes[candidates], scores[candidates], self.post.nms_iou)[: self.post.max_per_image]
        chosen = candidates[kept]
        return boxes[chosen], scores[chosen], labels[chosen] + 1

    @torch.inference_mode()
    def detect(self, frames: Sequence[np.ndarray], keep_best: bool = False) -> list[dict[str, np.ndarray]]:
        """Detect garments in a batch of frames with one forward pass, post-processed by `post`.

        Args:
            frames: RGB uint8 arrays (H_i, W_i, 3), sizes may differ.
            keep_best: an image with no box >= `min_score` keeps its single best box (below the threshold):
                the gallery's rule, so that every product image stays reachable.

        Returns:
            Per frame: "boxes" (K, 4) float32 x1 y1 x2 y2 in that frame's pixels, "scores" (K,) float32
            (descending), "labels" (K,) int64 (1 = garment, or 1 + category index; see `names`).
        """
        if not frames:
            return []
        x = self.preprocess(frames)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            head = self.model.head(list(self.model.backbone(x).values()))
        head = {k: v.float() for k, v in head.items()}
        out = []
        for i, frame in enumerate(frames):
            boxes, scores, labels = self._postprocess(head["bbox_regression"][i], head["cls_logits"][i], keep_best)
            boxes = resize_boxes(boxes, list(self.size), [frame.shape[0], frame.shape[1]])
            out.append({
                "boxes": boxes.cpu().numpy().astype(np.float32),
                "scores": scores.cpu().numpy().astype(np.float32),
                "labels": labels.cpu().numpy().astype(np.int64),
            })  # fmt: skip
        return out
