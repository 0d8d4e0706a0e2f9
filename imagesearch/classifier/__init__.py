"""Stage 4: the garment classifier (VGG16-BN trunk + Inception-C head), category merging, two-piece sets.

Training lives in `imagesearch.classifier.train` (driven by `scripts/train_classifier.py`).
"""

from imagesearch.classifier.merging import MergeConfig, load_merge_map
from imagesearch.classifier.model import Classifier, ClassifierModelConfig, build_classifier, load_classifier
from imagesearch.classifier.two_piece import TwoPieceConfig, is_set, pair_candidates, set_pieces

__all__ = [
    "Classifier",
    "ClassifierModelConfig",
    "MergeConfig",
    "TwoPieceConfig",
    "build_classifier",
    "is_set",
    "load_classifier",
    "load_merge_map",
    "pair_candidates",
    "set_pieces",
]
