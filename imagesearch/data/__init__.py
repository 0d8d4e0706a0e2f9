"""The data layer: records, labels, the split reader and exact video decoding (SPEC §1)."""

from imagesearch.data.labels import CATEGORIES, CATEGORY_INDEX, UnknownLabelError, normalise_label
from imagesearch.data.reader import BOX_TOLERANCE_PX, DataError, load_split
from imagesearch.data.records import AnnotatedFrame, Box, Item, ProductImage, SkippedRecord, Split, Video
from imagesearch.data.summary import split_summary
from imagesearch.data.video import VideoError, VideoInfo, probe_video, read_frames

__all__ = [
    "BOX_TOLERANCE_PX",
    "CATEGORIES",
    "CATEGORY_INDEX",
    "AnnotatedFrame",
    "Box",
    "DataError",
    "Item",
    "ProductImage",
    "SkippedRecord",
    "Split",
    "UnknownLabelError",
    "Video",
    "VideoError",
    "VideoInfo",
    "load_split",
    "normalise_label",
    "probe_video",
    "read_frames",
    "split_summary",
]
