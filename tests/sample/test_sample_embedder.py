"""The smoke embedder on the real sample's crops: frame crops (queries) against product crops (gallery).

The smoke model is random, so only the plumbing is checked: counts, shapes, unit norms, finite values,
metrics in range. (SPEC §6 counts 30 frame crops of the 3 present videos and 75 product crops of 10 items.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from imagesearch.config import load_config
from imagesearch.data.crops import CropDataset, extract_crops
from imagesearch.data.reader import load_split
from imagesearch.embedder.model import build_embedder
from imagesearch.embedder.sampler import is_identity_crop
from imagesearch.embedder.train import EmbedderRun, retrieval_metrics

REPO = Path(__file__).resolve().parents[2]


def test_smoke_embedder_on_sample_crops(tianchi_sample: Path, tmp_path: Path) -> None:
    run = load_config(EmbedderRun, REPO / "configs" / "smoke" / "embedder.yaml")
    folder, records = extract_crops(load_split(tianchi_sample), tmp_path, max_side=run.data.max_side, progress=False)
    records = [r for r in records if is_identity_crop(r)]
    frames = [r for r in records if r.source == "frame"]
    products = [r for r in records if r.source == "image"]
    assert (len(frames), len(products)) == (30, 75)
    assert {r.video_id for r in frames} == {"000117", "000134", "000165"}

    def arrays(recs):
        ds = CropDataset(folder, recs, transform=lambda image: {"image": image}, target=lambda r: 0)
        return [ds.load_rgb(i) for i in range(len(ds))]

    torch.manual_seed(0)
    embedder = build_embedder(run.model)
    queries = embedder.embed_crops(arrays(frames), batch_size=16)
    gallery = embedder.embed_crops(arrays(products), batch_size=32)
    assert queries.shape == (30, run.model.embed_dim) and gallery.shape == (75, run.model.embed_dim)
    for emb in (queries, gallery):
        assert torch.isfinite(emb).all()
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(emb)))
    metrics = retrieval_metrics(queries, [r.item_id for r in frames], gallery, [r.item_id for r in products])
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["val/recall@1"] <= metrics["val/recall@5"] <= metrics["val/recall@20"]
