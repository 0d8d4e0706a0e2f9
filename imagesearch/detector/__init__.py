"""Stage 3: the SSD300-VGG16 garment detector.

The stage API every training stage exposes (`imagesearch.detector`, `.classifier`, `.embedder`):

- `Run`: the run config (`DetectorRun`: data, model, augment, optim, train), read from YAML by `load_config`;
- `build_model(cfg.model)`: the network (`build_detector`);
- `build_parts(run) -> engine.TrainParts`: model, loaders, hooks, best.pt's metric, what follows training;
- `run(run) -> engine.FitResult`: `engine.train_stage(build_parts(run))`;
- `load_model(path) -> (model, model config)`: a trained one from its checkpoint (`checkpoint.load_model`).

Weights pass between stages as files: after training the detector writes `trunk.pth` (its VGG16 trunk in
torchvision's `vgg16().features` layout), which the classifier reads as its `model.weights`.
"""

from imagesearch.backbones import TRUNK_FILE
from imagesearch.detector.inference import DetectionConfig, Detector
from imagesearch.detector.model import DetectorModelConfig, SSDVGG16Backbone, build_detector, load_detector
from imagesearch.detector.train import DetectorRun, build_parts, run

Run = DetectorRun
build_model = build_detector
load_model = load_detector

__all__ = [
    "TRUNK_FILE",
    "DetectionConfig",
    "Detector",
    "DetectorModelConfig",
    "DetectorRun",
    "Run",
    "SSDVGG16Backbone",
    "build_detector",
    "build_model",
    "build_parts",
    "load_detector",
    "load_model",
    "run",
]
