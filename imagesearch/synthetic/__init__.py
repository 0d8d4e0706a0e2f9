"""Deterministic synthetic splits in the exact competition layout (SPEC §1), for tests and smoke runs.

Items are garments of the 23 categories with item-specific colours, textures and silhouettes, shown in
3-6 product images and worn or held in a 20 fps portrait clip over a cluttered, moving background.

    from imagesearch.synthetic import SyntheticConfig, generate_split
    generate_split("data/synthetic/train", num_items=20, seed=0, config=SyntheticConfig(frames=81))
"""

from imagesearch.synthetic.config import SyntheticConfig, annotated_frame_indices
from imagesearch.synthetic.items import ItemSpec, plan_items
from imagesearch.synthetic.split import generate_split, render_item, split_counts

__all__ = ["ItemSpec", "SyntheticConfig", "annotated_frame_indices", "generate_split", "plan_items", "render_item", "split_counts"]
