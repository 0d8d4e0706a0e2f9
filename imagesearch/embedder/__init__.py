"""The embedder (SPEC §3 stage 5, §4): classifier features -> unit-norm embeddings, trained with
triplet (fixed or mined) or ArcFace losses on the shared engine.

- `model`: `EmbedderModelConfig`, `Embedder` (`embed`, `embed_crops`), `build_embedder`, `load_embedder`.
- `loss`: `LossConfig`, `LOSSES`, `MINERS`, `build_loss`, `EmbedderWithLoss` (the engine's loss dict).
- `sampler`: `TripletSampler` (the original's anchor/positive/negative rule), `PKSampler` (P x K batches).
- `data`: `EmbedderDataConfig`, `TripletDataset`, loaders, the validation `RetrievalSet`.
- `train`: `EmbedderRun`, `build_parts`, `run`, `evaluate_embedder`, `evaluate_run`.

The stage API (see `imagesearch.detector`): `Run`, `build_model`, `build_parts`, `run`, `load_model`.
The embedder starts from a classifier checkpoint (`model.init_checkpoint`): it is the classifier without
its FC layer, so it builds that network (`classifier.model`), the one stage-to-stage import, downward.
"""

from imagesearch.embedder.loss import LOSSES, MINERS, EmbedderWithLoss, LossConfig, build_loss
from imagesearch.embedder.model import Embedder, EmbedderModelConfig, build_embedder, load_embedder
from imagesearch.embedder.sampler import PKSampler, TripletSampler
from imagesearch.embedder.train import EmbedderRun, build_parts, run


def load_model(path: str, map_location: str = "cpu") -> tuple[Embedder, EmbedderModelConfig]:
    """The stage API's loader: (the trained embedder, its resolved model config)."""
    model = load_embedder(path, map_location)
    return model, model.cfg


Run = EmbedderRun
build_model = build_embedder

__all__ = [
    "LOSSES",
    "MINERS",
    "Embedder",
    "EmbedderModelConfig",
    "EmbedderRun",
    "Run",
    "build_model",
    "build_parts",
    "load_model",
    "run",
    "EmbedderWithLoss",
    "LossConfig",
    "PKSampler",
    "TripletSampler",
    "build_embedder",
    "build_loss",
    "load_embedder",
]
