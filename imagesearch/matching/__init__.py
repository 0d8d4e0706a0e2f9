"""Matching (SPEC §3 stage 7): gallery k-NN indexes and the per-video / across-video decision rules."""

from imagesearch.matching.assign import abstain, assign_one_to_one, decisions_to_results, to_result_entry
from imagesearch.matching.boxes import FRAME_RULES, ITEM_RULES, choose_boxes
from imagesearch.matching.index import INDEXES, BruteForceIndex, FaissIndex, GalleryIndex, build_index
from imagesearch.matching.voting import (
    WEIGHTINGS,
    Evidence,
    FrameCandidates,
    ItemScore,
    Neighbour,
    VideoDecision,
    category_consistent,
    dedupe_boxes,
    dedupe_frames,
    two_piece_search,
    vote,
)

__all__ = [
    "FRAME_RULES",
    "INDEXES",
    "ITEM_RULES",
    "WEIGHTINGS",
    "BruteForceIndex",
    "Evidence",
    "FaissIndex",
    "FrameCandidates",
    "GalleryIndex",
    "ItemScore",
    "Neighbour",
    "VideoDecision",
    "abstain",
    "assign_one_to_one",
    "build_index",
    "category_consistent",
    "choose_boxes",
    "decisions_to_results",
    "dedupe_boxes",
    "dedupe_frames",
    "to_result_entry",
    "two_piece_search",
    "vote",
]
