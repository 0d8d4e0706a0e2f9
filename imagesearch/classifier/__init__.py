"""Stage 4: the garment classifier (VGG16-BN trunk + Inception-C head) and category merging.

Training lives in `imagesearch.classifier.train` (driven by `scripts/train_classifier.py`). Two-piece
sets are searched by the matcher (`matching.voting.two_piece_search`), not by the classifier.
"""

from imagesearch.classifier.merging import MergeConfig, load_merge_map
from imagesearch.classifier.model import Classifier, ClassifierModelConfig, build_classifier, load_classifier

__all__ = [
    "Classifier",
    "ClassifierModelConfig",
    "MergeConfig",
    "build_classifier",
    "load_classifier",
    "load_merge_map",
]
