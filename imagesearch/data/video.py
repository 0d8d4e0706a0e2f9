"""Exact frame decoding and probing of live-stream clips with OpenCV (SPEC §1).

The annotation's `frame_index` k means the (k+1)-th decoded frame of the clip, counted from the
start. Sequential decoding is exact by construction; seeking (`CAP_PROP_POS_FRAMES`) is exact only
when the container's timestamps are regular, so `read_frames` decodes sequentially and seeks only
over long gaps, verifying each seek and falling back to sequential decoding when a seek lands
elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# A seek costs about as much as grabbing 20-30 frames: OpenCV seeks to the keyframe before the
# target and decodes forward from there. Measured on the sample clips (540x960 MPEG-4 Part 2), the
# frames 0, 40, ..., 360 take 0.26 s CPU decoded sequentially and 0.16 s with a seek over each gap.
DEFAULT_SEEK_THRESHOLD = 32


class VideoError(RuntimeError):
    """A video that is missing, unreadable, or shorter than a requested frame index."""


class ShortVideoError(VideoError):
    """A requested frame lies beyond what decodes: the header promised more frames than the stream holds
    (a truncated or partly corrupt file). `decoded` is how many frames did decode from the start."""

    def __init__(self, message: str, decoded: int) -> None:
        super().__init__(message)
        self.decoded = decoded


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a clip.

    Attributes:
        frames: number of frames (container header; exact for the competition's MPEG-4 files, and
            counted by decoding when the header has no count).
        fps: frames per second (0.0 when the header has none).
        width: frame width in pixels.
        height: frame height in pixels.
    """

    frames: int
    fps: float
    width: int
    height: int


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open video (unreadable or not a video)")
    return cap


def probe_video(path: str | Path) -> VideoInfo:
    """Read a clip's frame count, frame rate and size without decoding it.

    Args:
        path: the `.mp4` file.

    Returns:
        The clip's `VideoInfo`.

    Raises:
        VideoError: the file is missing or OpenCV cannot open it, or it has no frames.
    """
    path = Path(path)
    cap = _open(path)
    try:
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if frames <= 0:
            # Some streams carry no count in the header: count by decoding (slow, but exact).
            frames = 0
            while cap.grab():
                frames += 1
    finally:
        cap.release()
    if frames <= 0 or width <= 0 or height <= 0:
        raise VideoError(f"{path}: video has no decodable frames (frames={frames}, size={width}x{height})")
    return VideoInfo(frames=frames, fps=fps if np.isfinite(fps) else 0.0, width=width, height=height)


def _seek(cap: cv2.VideoCapture, index: int) -> bool:
    """Seek so that the next `grab()` returns frame `index`; False when the seek did not land there.

    OpenCV's own position after a seek comes from the same timestamps it seeks by, so this check
    catches failed seeks (no index, beyond the end, broken timestamps) rather than proving
    exactness; exactness on the competition's codec is checked by the tests against sequential
    decoding and against frames that encode their own index.
    """
    ok = cap.set(cv2.CAP_PROP_POS_FRAMES, float(index))
    return bool(ok) and int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == index


def _decode_sorted(path: Path, targets: list[int], seek_threshold: int | None) -> dict[int, np.ndarray]:
    """Decode the sorted, unique `targets` as BGR arrays, grabbing forward and seeking over long gaps."""
    decoded: dict[int, np.ndarray] = {}
    cap = _open(path)
    try:
        position = 0  # index of the frame the next grab() returns
        max_gap = math.inf if seek_threshold is None else seek_threshold
        for target in targets:
            if target - position > max_gap:
                if _seek(cap, target):
                    position = target
                else:
                    # The seek left the stream at an unknown place: restart and decode sequentially.
                    max_gap = math.inf
                    cap.release()
                    cap = _open(path)
                    position = 0
            while position < target:
                if not cap.grab():
                    raise ShortVideoError(f"{path}: frame index {target} is beyond the end (decoded {position} frames)", position)  # fmt: skip
                position += 1
            # grab() decodes; retrieve() only converts, so it is paid for the wanted frames alone.
            if not cap.grab():
                raise ShortVideoError(f"{path}: frame index {target} is beyond the end (decoded {position} frames)", position)  # fmt: skip
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise ShortVideoError(f"{path}: cannot decode frame index {target}", position)
            position += 1
            decoded[target] = frame
    finally:
        cap.release()
    return decoded


def read_frames(
    path: str | Path, indices: Sequence[int], seek_threshold: int | None = DEFAULT_SEEK_THRESHOLD
) -> list[np.ndarray]:
    """Decode exactly the requested frames of a clip.

    Frames are decoded once each in increasing order, by `grab()`-ing forward and `retrieve()`-ing
    only the wanted ones; a forward gap longer than `seek_threshold` frames is crossed by a seek that
    is checked (see `_seek`), with a fall-back to sequential decoding from the start when it fails.
    About 0.16 s CPU for 10 frames spread over a 400-frame 540x960 clip.

    Args:
        path: the `.mp4` file.
        indices: 0-based frame indices, in any order, duplicates allowed.
        seek_threshold: the gap (in frames) beyond which to seek instead of decoding through; None
            never seeks (pure sequential decoding), 0 seeks before every frame.

    Returns:
        One RGB uint8 array of shape (H, W, 3) per requested index, in the requested order
        (a repeated index gives an equal but separate array).

    Raises:
        ValueError: a negative index.
        VideoError: the file is missing or unreadable; `ShortVideoError` (with the count of frames that
            did decode) when an index is beyond what decodes.
    """
    path = Path(path)
    wanted = [int(i) for i in indices]
    negative = [i for i in wanted if i < 0]
    if negative:
        raise ValueError(f"{path}: negative frame index {negative[0]}")
    if not wanted:
        _open(path).release()  # still report a missing or unreadable file
        return []
    decoded = _decode_sorted(path, sorted(set(wanted)), seek_threshold)
    # cvtColor returns a fresh array per call, so a repeated index never aliases another entry.
    return [cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB) for i in wanted]
