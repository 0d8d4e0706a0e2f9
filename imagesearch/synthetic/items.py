"""Planning a split: which items exist and what each looks like (category, pattern, shape, video script)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imagesearch.data.labels import CATEGORIES
from imagesearch.synthetic.config import SyntheticConfig
from imagesearch.synthetic.patterns import PATTERN_WORDS, random_pattern
from imagesearch.synthetic.render import Garment
from imagesearch.synthetic.shapes import LOWER, SET_TOPS, SILHOUETTES, ShapeJitter

# Instance ids follow the real scheme: 2, the 6-digit item number, a 2-digit piece number
# (20004401 is piece 1 of item 000044). Only an id scheme: nothing decodes it (SPEC §1).
INSTANCE_BASE = 20_000_000
SKIN_TONES_BGR: tuple[tuple[int, int, int], ...] = ((150, 180, 225), (125, 162, 212), (95, 135, 188), (70, 100, 150))
_TITLE_PREFIX = ("2024新款", "夏季", "网红同款", "百搭", "气质", "韩版")
_TITLE_SUFFIX = ("女装", "宽松显瘦", "ins风", "时尚", "高级感")
_ASR = (
    "宝宝们看一下这件{colour}的{pattern}{category}，面料很舒服",
    "今天给大家推荐这款{category}，{colour}{pattern}的，非常好搭配",
    "这个{colour}真的很显白，{pattern}{category}，喜欢的直接拍",
    "来看{category}，{colour}，{pattern}，上身效果大家看",
)


@dataclass(frozen=True)
class ItemSpec:
    """Everything that fixes an item's appearance and its video's script.

    Attributes:
        index: position in the split (0-based).
        item_id: 6-digit id, also the video id.
        pieces: one garment, or two (top + bottom) for a two-piece set, each with its own instance id.
        skin: BGR skin colour of the person-like figure.
        num_images: product images to draw.
        late_start: the product enters the video only after the first annotated frames.
        held: the product is held up (display 0) in the video instead of worn.
        back_turn: the host turns round for a while (viewpoint 1).
        num_distractors: distractor garments (instance_id 0) in the video.
        title: product title (image_text).
        asr: streamer speech line (video_text).
    """

    index: int
    item_id: str
    pieces: tuple[Garment, ...]
    skin: tuple[int, int, int]
    num_images: int
    late_start: bool
    held: bool
    back_turn: bool
    num_distractors: int
    title: str
    asr: str

    @property
    def region(self) -> str:
        """The body part that the item's pieces cover together: "upper", "lower" or "full"."""
        regions = {SILHOUETTES[g.category].region for g in self.pieces}
        return regions.pop() if len(regions) == 1 else "full"


def chosen(index: int, fraction: float, offset: float) -> bool:
    """Whether item `index` is among an evenly spread `fraction` of the items (exactly that share, no luck)."""
    return math.floor((index + 1) * fraction + offset) > math.floor(index * fraction + offset)


def random_jitter(rng: np.random.Generator) -> ShapeJitter:
    """Item-specific silhouette changes: width, hem length and flare."""
    ease, length, flare = rng.uniform(0.93, 1.1), rng.uniform(-0.025, 0.025), rng.uniform(0.7, 1.3)
    return ShapeJitter(ease=float(ease), length=float(length), flare=float(flare))


def random_distractor(rng: np.random.Generator, categories: tuple[str, ...] = CATEGORIES) -> Garment:
    """A garment that matches no product (instance_id 0)."""
    return Garment(str(rng.choice(categories)), random_pattern(rng), random_jitter(rng), 0)


def _pieces(
    index: int, item_number: int, earlier: list[ItemSpec], cfg: SyntheticConfig, rng: np.random.Generator
) -> tuple[Garment, ...]:
    singles = [it for it in earlier if len(it.pieces) == 1]
    if chosen(index, cfg.two_piece_fraction, 0.5):
        pattern = random_pattern(rng)
        bottom_pattern = pattern if rng.uniform() < 0.5 else random_pattern(rng)  # a matching set or not
        cats = (str(rng.choice(SET_TOPS)), str(rng.choice(LOWER)))
        return tuple(
            Garment(cat, pat, random_jitter(rng), INSTANCE_BASE + item_number * 100 + k + 1)
            for k, (cat, pat) in enumerate(zip(cats, (pattern, bottom_pattern), strict=True))
        )
    if singles and chosen(index, cfg.confusable_fraction, 0.0):
        # Same category and dominant colour as an earlier item, another texture: only the pattern tells them apart.
        model = singles[int(rng.integers(len(singles)))].pieces[0]
        pattern = random_pattern(rng, colour_name=model.pattern.colour_name, avoid_kind=model.pattern.kind)
        category = model.category
    else:
        pattern, category = random_pattern(rng), str(rng.choice(CATEGORIES))
    return (Garment(category, pattern, random_jitter(rng), INSTANCE_BASE + item_number * 100 + 1),)


def _texts(pieces: tuple[Garment, ...], rng: np.random.Generator) -> tuple[str, str]:
    colour = pieces[0].pattern.colour_name
    pattern = PATTERN_WORDS[pieces[0].pattern.kind]
    category = "+".join(g.category for g in pieces)
    kind = "两件套" if len(pieces) > 1 else ""
    title = f"{rng.choice(_TITLE_PREFIX)} {colour}{pattern}{category}{kind} {rng.choice(_TITLE_SUFFIX)}"
    asr = str(rng.choice(_ASR)).format(colour=colour, pattern=pattern, category=category)
    return title, asr


def plan_items(num_items: int, seed: int, cfg: SyntheticConfig) -> list[ItemSpec]:
    """Plan the items of a split (cheap; no pixels are drawn).

    Args:
        num_items: items (and videos) in the split.
        seed: split seed; item i draws from `np.random.default_rng([seed, i, 1])`.
        cfg: generator settings.

    Returns:
        One ItemSpec per item, ids id_offset, id_offset + 1, ...
    """
    offset = cfg.id_offset if cfg.id_offset is not None else (seed % 1000) * 1000
    if num_items < 1 or offset + num_items > 1_000_000:
        raise ValueError(f"num_items={num_items} with id offset {offset}: item ids must fit 6 digits (< 1000000)")
    if cfg.id_offset is None and num_items > 1000:
        raise ValueError(f"num_items={num_items} > 1000 would overlap the next seed's ids: pass id_offset explicitly")
    items: list[ItemSpec] = []
    for i in range(num_items):
        rng = np.random.default_rng([seed, i, 1])
        pieces = _pieces(i, offset + i, items, cfg, rng)
        title, asr = _texts(pieces, rng)
        items.append(
            ItemSpec(
                index=i,
                item_id=f"{offset + i:06d}",
                pieces=pieces,
                skin=SKIN_TONES_BGR[int(rng.integers(len(SKIN_TONES_BGR)))],
                num_images=int(rng.integers(cfg.min_images, cfg.max_images + 1)),
                late_start=chosen(i, cfg.late_start_fraction, 0.5),
                held=len(pieces) == 1 and chosen(i, cfg.held_fraction, 0.25),
                back_turn=chosen(i, cfg.back_turn_fraction, 0.6),
                num_distractors=min(cfg.max_distractors, i % 3),
                title=title,
                asr=asr,
            )
        )
    return items
