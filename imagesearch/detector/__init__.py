"""Stage 3: the SSD300-VGG16 garment detector (model, data, class-balanced sampler, training parts)."""

from imagesearch.detector.model import Detector, DetectorModelConfig, SSDVGG16Backbone, build_detector
from imagesearch.detector.sampler import ClassBalancedSampler, balanced_weights

__all__ = [
    "ClassBalancedSampler",
    "Detector",
    "DetectorModelConfig",
    "SSDVGG16Backbone",
    "balanced_weights",
    "build_detector",
]
