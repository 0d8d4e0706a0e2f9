"""Stage 4: the garment classifier (VGG16-BN trunk + Inception-C head) and category merging.

The stage API (see `imagesearch.detector`): `Run` (`ClassifierRun`), `build_model` (`build_classifier`),
`build_parts`, `run` (train, then merge the confused categories), `load_model` (`load_classifier`). Its trunk
starts from `model.weights`: the converted ImageNet VGG16 or a detector's `trunk.pth`. Two-piece sets are
searched by the matcher (`matching.voting.two_piece_search`), not by the classifier.
"""

from imagesearch.classifier.merging import MergeConfig, load_merge_map
from imagesearch.classifier.model import Classifier, ClassifierModelConfig, build_classifier, load_classifier
from imagesearch.classifier.train import ClassifierRun, build_parts, run

Run = ClassifierRun
build_model = build_classifier
load_model = load_classifier

__all__ = [
    "Classifier",
    "ClassifierModelConfig",
    "ClassifierRun",
    "MergeConfig",
    "Run",
    "build_classifier",
    "build_model",
    "build_parts",
    "load_classifier",
    "load_merge_map",
    "load_model",
    "run",
]
