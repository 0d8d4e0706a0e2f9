"""The documents the code points at: every `SPEC §n` (and `§3 stage k`) names a section of docs/SPEC.md."""

from __future__ import annotations

import re

from tests.helpers import REPO_ROOT

SPEC = REPO_ROOT / "docs" / "SPEC.md"
CITING = ("imagesearch", "scripts", "configs", "tests")


def _citations() -> list[tuple[str, str]]:
    found = []
    for folder in CITING:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".yaml") and path.name != "test_docs.py":
                text = path.read_text(encoding="utf-8")
                found += [(f"{path.relative_to(REPO_ROOT)}", m.group(0)) for m in re.finditer(r"SPEC §[^\n]*", text)]
    return found


def test_every_spec_reference_resolves_to_a_section() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", spec, flags=re.M)}
    stage_block = spec.split("## 3. ", 1)[1].split("\n## ", 1)[0]
    stages = {int(n) for n in re.findall(r"^(\d+)\. \*\*", stage_block, flags=re.M)}
    assert sections >= {1, 2, 3, 4, 5, 6} and stages == set(range(1, 9))
    citations = _citations()
    assert len(citations) > 50  # the code does cite it
    bad = []
    for where, text in citations:
        cited = text.split("SPEC ", 1)[1]
        numbers = {int(n) for n in re.findall(r"§(\d+)", cited)}
        pairs = re.findall(r"§3 stages? (\d+)(?: and (\d+))?", cited)  # "stage 4", "stages 4 and 7"
        cited_stages = {int(n) for pair in pairs for n in pair if n}
        if not numbers <= sections or not cited_stages <= stages:
            bad.append((where, text))
    assert bad == []
