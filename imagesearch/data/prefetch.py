"""Streaming, ordered decoding of each video's sampled frames, in worker processes.

Decoding (`data.video.read_frames`, seeking to the sampled indices only) is CPU work that the
detector and the feature models need not wait for: a `torch.utils.data.DataLoader` over the videos
(`batch_size=None`, one video per item) decodes in `workers` processes, keeps at most
`prefetch` videos per worker in flight, and yields them in the order given. The frames travel as
one uint8 tensor per video, which the DataLoader passes through shared memory rather than a pipe.

Nothing here holds more than the prefetched videos: the caller drops each video's frames when done.
A missing or unreadable video is an item with a status and an error, never an exception, so the
caller counts it exactly as the sequential path did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imagesearch.data.records import Video
from imagesearch.data.video import ShortVideoError, VideoError, probe_video, read_frames

__all__ = ["DecodedVideo", "FramePlan", "decode_video", "iter_decoded", "sample_frames"]


def sample_frames(
    n_frames: int, count: int, skip: int = 0, align: int = 0, candidates: Sequence[int] | None = None
) -> list[int]:
    """`count` frame indices evenly spaced among the candidates, first and last included.

    Args:
        n_frames: frames in the clip.
        count: how many to take (all candidates when there are fewer).
        skip: candidates below this index are dropped.
        align: > 0: candidates are the multiples of `align` (ignored when `candidates` is given).
        candidates: explicit candidates (e.g. the annotated frames); default every (aligned) frame.

    Returns:
        Sorted, distinct indices in [skip, n_frames).

    >>> sample_frames(400, 10), sample_frames(400, 10, skip=80, align=40)
    ([0, 44, 89, 133, 177, 222, 266, 310, 355, 399], [80, 120, 160, 200, 240, 280, 320, 360])
    """
    if candidates is None:
        step = align if align > 0 else 1
        pool = list(range(-(-skip // step) * step, n_frames, step))
    else:
        pool = sorted({int(c) for c in candidates if skip <= c < n_frames})
    if len(pool) <= count or count <= 0:
        return pool if count > 0 else []
    # Spacing (len - 1) / (count - 1) > 1, so the rounded positions are distinct.
    return [pool[p] for p in np.linspace(0, len(pool) - 1, count).round().astype(int)]


@dataclass
class FramePlan:
    """Which frames of a video to decode: `sample_frames` with these settings, among the annotated frames
    that have boxes when `annotated_only`. A picklable callable, for the decode workers.

    Attributes:
        count, skip, align: as in `sample_frames`.
        annotated_only: sample among the annotated frames with boxes (the matcher's `gt_boxes`).
        products_only: with `annotated_only`, only the annotated frames with a product box (instance_id > 0),
            not those that show distractors alone.
    """

    count: int
    skip: int = 0
    align: int = 0
    annotated_only: bool = False
    products_only: bool = False

    def __call__(self, video: Video, n_frames: int) -> list[int]:
        cands = None
        if self.annotated_only:
            keep = (lambda b: b.instance_id > 0) if self.products_only else (lambda b: True)
            cands = [f.frame_index for f in video.frames if any(keep(b) for b in f.boxes)]
        return sample_frames(n_frames, self.count, self.skip, self.align, cands)


@dataclass
class DecodedVideo:
    """One video's sampled frames, or why there are none.

    Attributes:
        position: the video's position in the sequence given to `iter_decoded`.
        video_id: the video.
        status: "ok", "missing" (no .mp4), "unreadable" or "no frames" (nothing sampled).
        indices: the sampled frame indices (empty unless decoded).
        frames: (n, H, W, 3) uint8 RGB, one per index; None unless status is "ok".
        error: the reason of a skip, or what was lost of a partly decodable video.
        frames_lost: frames the container's header counts but that do not decode (a truncated file);
            the sample was then drawn from the frames that do.
    """

    position: int
    video_id: str
    status: str = "ok"
    indices: list[int] = field(default_factory=list)
    frames: torch.Tensor | None = None
    error: str = ""
    frames_lost: int = 0

    def frame_list(self) -> list[np.ndarray]:
        """The frames as (H, W, 3) uint8 numpy views (no copy); empty when none."""
        return [] if self.frames is None else list(self.frames.numpy())


def decode_video(position: int, video: Video, plan: FramePlan) -> DecodedVideo:
    """Sample and decode one video's frames (the sequential path, and each worker's job).

    Args:
        position: carried into the result.
        video: the record; a video not present or whose file is gone gives status "missing".
        plan: which frames to decode, from the video and its frame count.

    Returns:
        The `DecodedVideo`.
    """
    out = DecodedVideo(position, video.video_id)
    if not video.present or not video.path.is_file():
        out.status, out.error = "missing", f"{video.path}: video file not found"
        return out
    try:
        n = video.num_frames or probe_video(video.path).frames
        out.indices = plan(video, n)
        try:
            frames = read_frames(video.path, out.indices)
        except ShortVideoError as exc:
            if exc.decoded <= 0:
                raise
            # The header promised more frames than decode: sample again among those that do.
            out.frames_lost, out.error = n - exc.decoded, f"partly decodable: {exc}"
            out.indices = plan(video, exc.decoded)
            frames = read_frames(video.path, out.indices)
    except VideoError as exc:
        out.status, out.error, out.indices = "unreadable", str(exc), []
        return out
    if not frames:
        out.status = "no frames"
        return out
    out.frames = torch.from_numpy(np.stack(frames))
    return out


class _Videos(Dataset):
    def __init__(self, videos: Sequence[Video], plan: FramePlan) -> None:
        self.videos, self.plan = list(videos), plan

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> DecodedVideo:
        return decode_video(i, self.videos[i], self.plan)


def _identity(item: DecodedVideo) -> DecodedVideo:
    # DataLoader's default (default_convert) would rebuild the dataclass; keep it as it is.
    return item


def iter_decoded(
    videos: Sequence[Video], plan: FramePlan, workers: int = 0, prefetch: int = 2
) -> Iterator[DecodedVideo]:
    """Yield every video's `DecodedVideo`, in the given order.

    Args:
        videos: the videos to decode.
        plan: which frames to decode (see `FramePlan`).
        workers: decoding processes; 0 decodes in this process, one video at a time.
        prefetch: videos decoded ahead per worker (bounds the frames in memory).

    Yields:
        One `DecodedVideo` per video, `position` 0, 1, 2, ...
    """
    if workers <= 0:
        for i, video in enumerate(videos):
            yield decode_video(i, video, plan)
        return
    loader = DataLoader(
        _Videos(videos, plan), batch_size=None, shuffle=False, num_workers=min(workers, max(1, len(videos))),
        prefetch_factor=max(1, prefetch), collate_fn=_identity,
    )  # fmt: skip
    yield from loader
