"""report.html in a real browser: headless Chromium renders it, and its pictures show.

A broken `<img>` renders as a small icon, so the page with its `img/` folder must show far more
distinct colours than the same page with `img/` removed. The browser is found through
IMAGESEARCH_BROWSER or on PATH (chromium, chromium-browser, google-chrome); without one the test
says so and is skipped, as the sample tests are without the sample.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.unit.test_report import page, run  # noqa: F401  (the module-scoped report fixtures)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    found = os.environ.get("IMAGESEARCH_BROWSER") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        pytest.skip(f"no headless browser found (set IMAGESEARCH_BROWSER or install one of {BROWSERS})")
    return found


def _screenshot(browser: str, html: Path, png: Path) -> np.ndarray:
    # 2600 px tall: the page opens with tables and text; the pictures of the video sections come below.
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={png.parent / 'profile'}", "--window-size=1000,2600",
        "--virtual-time-budget=5000", f"--screenshot={png}", html.as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _colours(shot: np.ndarray) -> int:
    """Distinct colours on the screen: text, borders and broken-image icons give hundreds, JPEG
    thumbnails of frames and product images tens of thousands."""
    return len(np.unique(shot.reshape(-1, 3), axis=0))


def test_report_pictures_render_in_a_browser(page, tmp_path: Path) -> None:  # noqa: F811
    browser = _browser()
    path, traces, _ = page
    with_images = _screenshot(browser, path, tmp_path / "with.png")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(path, bare / path.name)  # the same page, its img/ folder absent: every picture broken
    without = _screenshot(browser, bare / path.name, tmp_path / "without.png")
    assert with_images.shape == without.shape
    shown, broken = _colours(with_images), _colours(without)
    assert shown > 5000, shown
    assert shown > 10 * broken, (shown, broken)


def _orders_after_clicks(browser: str, page_path: Path, tmp: Path, headers: list[str]) -> list[list[str]]:
    """The video column of the sortable table after each click on `headers` in turn, in one browser run."""
    click = (
        f"<script>const out=[];for(const h of {json.dumps(headers)}){{"
        "[...document.querySelectorAll('table.sortable th')].find(th=>th.textContent===h).click();"
        "out.push([...document.querySelectorAll('table.sortable tbody tr')].map(r=>r.cells[0].dataset.v));}"
        "const pre=document.createElement('pre');pre.id='orders';pre.textContent=JSON.stringify(out);"
        "document.body.appendChild(pre);</script></body>"
    )
    copy = tmp / "clicked.html"
    copy.write_text(page_path.read_text(encoding="utf-8").replace("</body>", click), encoding="utf-8")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=5000", "--dump-dom", copy.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    return json.loads(html.unescape(re.search(r'<pre id="orders">(.*?)</pre>', dom, re.S).group(1)))


def test_video_table_sorts_on_a_header_click(page, tmp_path: Path) -> None:  # noqa: F811
    browser = _browser()
    path, _, report = page
    lost = {v.video_id: v.total_lost for v in report.videos}
    shown = re.findall(r"<h2>video (\w+):", path.read_text(encoding="utf-8"))
    up, down, by_points = _orders_after_clicks(browser, path, tmp_path, ["video", "video", "points lost"])
    assert up == sorted(shown) and down == sorted(shown, reverse=True)  # a second click reverses
    assert [lost.get(v, 0.0) for v in by_points] == sorted(lost.get(v, 0.0) for v in shown)
