"""Exact frame decoding: clips whose frames encode their own index, written with the real data's codec."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from imagesearch.data import video
from imagesearch.data.video import ShortVideoError, VideoError, VideoInfo, probe_video, read_frames

WIDTH, HEIGHT, FRAMES, FPS = 96, 160, 60, 20.0
BITS = 6  # 2 columns x 3 rows of 48x53 blocks: indices 0..63
GRID = [(r, c) for r in range(3) for c in range(2)]


def _frame_for(index: int) -> np.ndarray:
    """A BGR frame whose blocks are white for the 1-bits of `index` (big blocks survive MPEG-4 compression)."""
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    bh, bw = HEIGHT // 3, WIDTH // 2
    for bit, (r, c) in enumerate(GRID):
        if index >> bit & 1:
            frame[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 255
    return frame


def decode_index(rgb: np.ndarray) -> int:
    """Read back the index drawn by `_frame_for` from the centre of each block."""
    bh, bw = HEIGHT // 3, WIDTH // 2
    index = 0
    for bit, (r, c) in enumerate(GRID):
        centre = rgb[r * bh + bh // 4 : (r + 1) * bh - bh // 4, c * bw + bw // 4 : (c + 1) * bw - bw // 4]
        index |= int(centre.mean() > 127) << bit
    return index


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "numbered.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(_frame_for(i))
    writer.release()
    return path


def test_index_code_round_trips_without_compression() -> None:
    assert [decode_index(_frame_for(i)[..., ::-1]) for i in range(64)] == list(range(64))


def test_probe_video(clip: Path) -> None:
    assert probe_video(clip) == VideoInfo(frames=FRAMES, fps=FPS, width=WIDTH, height=HEIGHT)


@pytest.mark.parametrize("seek_threshold", [None, 0, 5, 32])
@pytest.mark.parametrize(
    "indices",
    [
        [0, 13, 27, 41, 59],  # sparse, increasing, last frame
        [59, 41, 27, 13, 0],  # reverse
        [7, 7, 50, 7, 1, 50],  # duplicates
        [58, 59],  # the end
        [30],
    ],
)
def test_read_frames_returns_exactly_the_requested_frames(
    clip: Path, indices: list[int], seek_threshold: int | None
) -> None:
    frames = read_frames(clip, indices, seek_threshold=seek_threshold)
    assert len(frames) == len(indices)
    for frame in frames:
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
    assert [decode_index(f) for f in frames] == indices


def test_failed_seek_falls_back_to_sequential_decoding(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def bad_seek(cap: cv2.VideoCapture, index: int) -> bool:
        calls.append(index)
        cap.set(cv2.CAP_PROP_POS_FRAMES, float(index + 3))  # lands elsewhere, and says so
        return False

    monkeypatch.setattr(video, "_seek", bad_seek)
    frames = read_frames(clip, [50, 10, 40], seek_threshold=5)
    assert [decode_index(f) for f in frames] == [50, 10, 40]
    assert calls == [10]  # after the first failure it never seeks again


def test_duplicates_are_separate_arrays(clip: Path) -> None:
    a, b = read_frames(clip, [3, 3])
    np.testing.assert_array_equal(a, b)
    a[:] = 0
    assert b.max() == 255  # frame 3 has white blocks, untouched by writing into `a`


def test_frames_are_rgb(tmp_path: Path) -> None:
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 64))
    for _ in range(3):
        writer.write(np.full((64, 64, 3), (0, 0, 255), np.uint8))  # pure red in OpenCV's BGR
    writer.release()
    (frame,) = read_frames(path, [1])
    r, g, b = frame.reshape(-1, 3).mean(0)
    assert r > 200 and g < 50 and b < 50


def test_empty_request(clip: Path) -> None:
    assert read_frames(clip, []) == []


@pytest.mark.parametrize("seek_threshold", [None, 0])
def test_index_beyond_the_end_names_the_index(clip: Path, seek_threshold: int | None) -> None:
    with pytest.raises(VideoError, match=r"frame index 60 .*beyond the end"):
        read_frames(clip, [2, FRAMES], seek_threshold=seek_threshold)


def test_negative_index_is_a_caller_error(clip: Path) -> None:
    with pytest.raises(ValueError, match="negative frame index -1"):
        read_frames(clip, [-1])


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.mp4"
    for call in (lambda: read_frames(path, [0]), lambda: read_frames(path, []), lambda: probe_video(path)):
        with pytest.raises(VideoError, match="absent.mp4: video file not found"):
            call()


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for call in (lambda: read_frames(path, [0]), lambda: probe_video(path)):
        with pytest.raises(VideoError, match="garbage.mp4"):
            call()


def test_truncated_file(clip: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_frames(path, [0, 50])


@pytest.mark.sample
def test_real_clip_seek_equals_sequential_decoding(tianchi_sample: Path) -> None:
    path = tianchi_sample / "video" / "000134.mp4"
    assert probe_video(path) == VideoInfo(frames=400, fps=20.0, width=540, height=960)
    wanted = [399, 3, 200, 40, 217]
    # Oracle: plain OpenCV reading every frame from the start, independent of read_frames.
    cap = cv2.VideoCapture(str(path))
    reference = {}
    for k in range(max(wanted) + 1):
        ok, bgr = cap.read()
        assert ok, k
        if k in wanted:
            reference[k] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()
    for seek_threshold in (0, None):
        frames = read_frames(path, wanted, seek_threshold=seek_threshold)
        for k, frame in zip(wanted, frames, strict=True):
            assert frame.shape == (960, 540, 3)
            np.testing.assert_array_equal(frame, reference[k], err_msg=f"frame {k}, seek_threshold={seek_threshold}")
    # Neighbouring frames differ, so equality above pins the index rather than any similar frame.
    assert not np.array_equal(reference[200], read_frames(path, [201])[0])


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AVI (MJPEG) cut in half: its header still counts FRAMES frames, about half of them decode."""
    folder = tmp_path_factory.mktemp("short")
    whole = folder / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for i in range(FRAMES):
        writer.write(_frame_for(i))
    writer.release()
    path = folder / "short.avi"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def test_short_video_says_how_much_decodes(short_clip: Path) -> None:
    assert probe_video(short_clip).frames == FRAMES  # the header promises more than the stream holds
    with pytest.raises(ShortVideoError) as info:
        read_frames(short_clip, [0, FRAMES - 1])
    decoded = info.value.decoded
    assert 0 < decoded < FRAMES
    assert [decode_index(f) for f in read_frames(short_clip, [0, decoded - 1])] == [0, decoded - 1]


def test_a_partly_decodable_video_keeps_the_frames_that_decode(short_clip: Path) -> None:
    from imagesearch.data.prefetch import FramePlan, decode_video
    from imagesearch.data.records import Video

    video = Video("000001", short_clip, None, present=True, num_frames=FRAMES)
    got = decode_video(0, video, FramePlan(count=4))
    assert got.status == "ok" and "partly decodable" in got.error
    decoded = FRAMES - got.frames_lost
    assert 0 < decoded < FRAMES and got.indices == [0, round((decoded - 1) / 3), round(2 * (decoded - 1) / 3), decoded - 1]
    assert [decode_index(f) for f in got.frame_list()] == got.indices
