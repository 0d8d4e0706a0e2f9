"""The embedder (SPEC §3 stage 5, §4): classifier features -> unit-norm embeddings, trained with
triplet (fixed or mined) or ArcFace losses on the shared engine.

- `model`: `EmbedderModelConfig`, `Embedder` (`embed`, `embed_crops`), `build_embedder`, `load_embedder`.
- `loss`: `LossConfig`, `LOSSES`, `MINERS`, `build_loss`, `EmbedderWithLoss` (the engine's loss dict).
- `sampler`: `TripletSampler` (the original's anchor/positive/negative rule), `PKSampler` (P x K batches).
- `data`: `EmbedderDataConfig`, `TripletDataset`, loaders, the validation `RetrievalSet`.
- `train`: `EmbedderRun`, `build_parts`, `run`, `evaluate_embedder`, `evaluate_run`.
"""

from imagesearch.embedder.loss import LOSSES, MINERS, EmbedderWithLoss, LossConfig, build_loss
from imagesearch.embedder.model import Embedder, EmbedderModelConfig, build_embedder, load_embedder
from imagesearch.embedder.sampler import PKSampler, TripletSampler

__all__ = [
    "LOSSES",
    "MINERS",
    "Embedder",
    "EmbedderModelConfig",
    "EmbedderWithLoss",
    "LossConfig",
    "PKSampler",
    "TripletSampler",
    "build_embedder",
    "build_loss",
    "load_embedder",
]
