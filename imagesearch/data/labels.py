"""The 23 garment categories of the competition and the normalisation of label variants (SPEC §1)."""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "短袖上衣", "长袖上衣", "短袖衬衫", "长袖衬衫", "背心上衣", "吊带上衣", "无袖上衣", "短外套",
    "短马甲", "长袖连衣裙", "短袖连衣裙", "无袖连衣裙", "长马甲", "长外套", "连体衣", "古风",
    "短裙", "中等半身裙", "长半身裙", "短裤", "中裤", "长裤", "背带裤",
)  # fmt: skip
CATEGORY_INDEX: dict[str, int] = {name: i for i, name in enumerate(CATEGORIES)}

# Variants seen in the real annotation files, mapped to their canonical category.
LABEL_VARIANTS: dict[str, str] = {
    "古装": "古风",
    "短袖Top": "短袖上衣",
    "长袖Top": "长袖上衣",
    "吊带Top": "吊带上衣",
    "长款外套": "长外套",
    "中等半身裙（及膝）": "中等半身裙",
    "长半身裙（到脚）": "长半身裙",
}


class UnknownLabelError(ValueError):
    """A label that is neither one of the 23 categories nor a known variant."""


def normalise_label(label: str) -> str:
    """Map a raw annotation label to one of the 23 canonical categories.

    Args:
        label: the `label` field of an annotation, possibly a variant such as "古装".

    Returns:
        The canonical category name.

    Raises:
        UnknownLabelError: the label is not known.

    >>> normalise_label("长款外套")
    '长外套'
    """
    text = label.strip()
    if text in CATEGORY_INDEX:
        return text
    if text in LABEL_VARIANTS:
        return LABEL_VARIANTS[text]
    raise UnknownLabelError(f"unknown label {label!r}")
