"""Retrieval features (SPEC §3 stage 6): LBP texture histograms, global pooling, weighted fusion."""

from imagesearch.features.fusion import fuse
from imagesearch.features.lbp import lbp_codes, lbp_codes_batch, lbp_dim, lbp_histogram, lbp_histograms
from imagesearch.features.pooling import POOLS, GeM, build_pool, gem

__all__ = [
    "POOLS",
    "GeM",
    "build_pool",
    "fuse",
    "gem",
    "lbp_codes",
    "lbp_codes_batch",
    "lbp_dim",
    "lbp_histogram",
    "lbp_histograms",
]
