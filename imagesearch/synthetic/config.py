"""The knobs of the synthetic split generator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of `generate_split`; the defaults give the real data's sizes (SPEC §1).

    Attributes:
        frames: frames per video (real: 400).
        fps: video frame rate (real: 20).
        width: video width in pixels, even (MPEG-4 Part 2 encodes even sizes only; real: 540).
        height: video height in pixels, even (real: 960).
        image_size: side of the square product images (real: mostly 800).
        annotate_every: frames 0, annotate_every, 2 * annotate_every, ... below `frames` are annotated.
        min_images: fewest product images per item.
        max_images: most product images per item.
        text: write `image_text/<item_id>.txt` and `video_text/<video_id>.txt`.
        id_offset: item ids are id_offset, id_offset + 1, ... (6 digits). None: (seed % 1000) * 1000, so
            splits made with seeds that differ below 1000 never share an id when they hold <= 1000 items.
        two_piece_fraction: share of items that are a top + bottom set (two instance ids).
        late_start_fraction: share of videos whose product enters only after the first annotated frames.
        confusable_fraction: share of items that copy the category and dominant colour of an earlier
            item but not its texture (so retrieval has to look at the pattern).
        held_fraction: share of single-piece items held up in the video instead of worn.
        back_turn_fraction: share of videos in which the host turns round for a while (viewpoint 1).
        max_distractors: at most this many distractor garments (instance_id 0) per video, 0..2.
        jpeg_quality: cv2 JPEG quality of the product images.
        workers: processes rendering items in parallel; the files do not depend on it.
        overwrite: replace an existing output folder instead of refusing.
    """

    frames: int = 400
    fps: float = 20.0
    width: int = 540
    height: int = 960
    image_size: int = 800
    annotate_every: int = 40
    min_images: int = 3
    max_images: int = 6
    text: bool = True
    id_offset: int | None = None
    two_piece_fraction: float = 0.25
    late_start_fraction: float = 0.5
    confusable_fraction: float = 0.3
    held_fraction: float = 0.2
    back_turn_fraction: float = 0.3
    max_distractors: int = 2
    jpeg_quality: int = 92
    workers: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        checks = {
            "frames": self.frames >= 1,
            "fps": self.fps > 0,
            "width": self.width >= 32 and self.width % 2 == 0,
            "height": self.height >= 32 and self.height % 2 == 0,
            "image_size": self.image_size >= 32,
            "annotate_every": self.annotate_every >= 1,
            "min_images": 1 <= self.min_images <= self.max_images,
            "id_offset": self.id_offset is None or 0 <= self.id_offset < 1_000_000,
            "max_distractors": 0 <= self.max_distractors <= 2,
            "jpeg_quality": 1 <= self.jpeg_quality <= 100,
            "workers": self.workers >= 1,
        }
        for name in ("two_piece_fraction", "late_start_fraction", "confusable_fraction", "held_fraction"):
            checks[name] = 0.0 <= getattr(self, name) <= 1.0
        checks["back_turn_fraction"] = 0.0 <= self.back_turn_fraction <= 1.0
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(
                f"SyntheticConfig: invalid {shown} (width/height must be even and >= 32, sizes >= 32, "
                "1 <= min_images <= max_images, fractions in [0, 1], max_distractors in 0..2)"
            )


def annotated_frame_indices(frames: int, every: int) -> list[int]:
    """The annotated frames: 0, every, 2 * every, ... below `frames` (real data: 0, 40, ..., 360 of 400).

    >>> annotated_frame_indices(400, 40)[-1], annotated_frame_indices(81, 40)
    (360, [0, 40, 80])
    """
    return list(range(0, frames, every))
