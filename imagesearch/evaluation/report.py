"""The evaluation report (SPEC §3 stage 8): one HTML page that says where the points went.

From the top: which config and model files produced the page; the S1/S2/S3 definitions and a legend
of the box colours; the scores; the points lost by reason (`metrics.diagnostics`); the box-choice
rules compared on this split (when measured); a table of every shown video (predicted and true
item, rank, frames, IoUs, reason, points lost), sortable by clicking a header (a few lines of inline
JavaScript, no external resources); then one section per video, worst first: its sampled frames with
their boxes and its top-ranked items as product images. Pictures are small JPEGs in `img/` beside
`report.html`, linked relatively, written at report time for the shown videos only
(`evaluation.thumbs`).

On a split without annotations (`report` None) the page shows the predictions alone: no scores,
no right / wrong marks, no S columns; videos are ordered least sure first (largest match distance).
In an annotated split, a video without an annotation file is shown unmarked and not scored.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from imagesearch.data.records import Split
from imagesearch.evaluation.report_tables import loss_section, score_summary, video_table
from imagesearch.evaluation.thumbs import LEGEND, frame_thumbs, gif, product_thumb
from imagesearch.io import atomic_write_text, file_fingerprint
from imagesearch.matching.decisions import VideoTrace
from imagesearch.metrics.official import ScoreReport, VideoScore
from imagesearch.runtime import progress_bar

__all__ = ["describe_models", "write_report"]

CSS = """
body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#eee;text-align:center}table.sortable th{cursor:pointer}table.sortable th:hover{background:#ddd}
td.l,th.l{text-align:left}
section{background:#fff;border:1px solid #ddd;border-left:8px solid #c33;margin:1em 0;padding:.5em 1em}
section.hit{border-left-color:#3a3}section.partial{border-left-color:#e90}section.unknown{border-left-color:#1e78dc}
.row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}
figure{margin:0;font-size:12px;text-align:center}img{display:block}
figure.right img{outline:4px solid #3a3;outline-offset:-4px}figure.wrong img{outline:4px solid #c33;outline-offset:-4px}
.muted{color:#777}.sw{display:inline-block;width:2em;height:.9em;margin-right:.5em;vertical-align:middle;background:#777}
pre{background:#f3f3f3;padding:.5em;max-height:30em;overflow:auto}
"""
# Click a header to sort its table's rows (again to reverse); cells sort by data-v when given, numbers as numbers.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(t => t.querySelectorAll("th").forEach((th, i) =>
  th.addEventListener("click", () => {
    const up = th.dataset.dir !== "up"; th.dataset.dir = up ? "up" : "down";
    const val = r => { const c = r.cells[i], v = c.dataset.v ?? c.textContent, n = Number(v);
                       return v !== "" && !isNaN(n) ? n : v; };
    const rows = [...t.tBodies[0].rows].sort((a, b) => { const x = val(a), y = val(b);
      return (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1)) * (up ? 1 : -1); });
    rows.forEach(r => t.tBodies[0].appendChild(r));
  })));
"""
LEVELS_TEXT = (
    "The official score is 0.2·F1(S1) + 0.6·F1(S2) + 0.2·F1(S3), each F1 from P = TP / videos predicted and "
    "R = TP / videos showing a product. S1: the predicted item is the video's. S2: also, the named frame "
    "(scored at the nearest annotated frame within ±20) shows an annotated instance of that item. S3: also, "
    "one result entry's product box and frame box both overlap that instance's boxes with IoU > 0.5."
)


def describe_models(files: Mapping[str, str | Path]) -> list[dict[str, str]]:
    """The model files behind a run, for the page: role, path and content fingerprint.

    Args:
        files: role (e.g. "detector") -> path; empty paths are left out.

    Returns:
        [{"role", "path", "fingerprint"}], "file not found" for a path that is not a file.
    """
    out = []
    for role, path in files.items():
        if str(path):
            found = Path(path).is_file()
            fp = file_fingerprint(path) if found else "file not found"
            out.append({"role": role, "path": str(path), "fingerprint": fp})
    return out


def _provenance(provenance: Mapping[str, Any] | None) -> str:
    if not provenance:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td class='l'>{esc(m['role'])}</td><td class='l'>{esc(m['path'])}</td>"
        f"<td class='l'><code>{esc(m['fingerprint'])}</code></td></tr>"
        for m in provenance.get("models", [])
    )
    table = (
        f"<table><tr><th class='l'>model</th><th class='l'>file</th><th class='l'>fingerprint</th></tr>{rows}</table>"
    )
    text = yaml.safe_dump(provenance.get("config", {}), sort_keys=False, allow_unicode=True)
    return (
        "<h2>Produced by</h2>" + (table if rows else "<p class='muted'>no model files (annotated boxes)</p>")
        + f"<details><summary>the resolved config</summary><pre>{esc(text)}</pre></details>"
    )  # fmt: skip


def _how_to_read(scored: bool) -> str:
    swatches = "".join(
        f"<li><span class='sw' style='border:{3 if w == 'thick' else 2}px solid {c}'></span>{html.escape(t)}</li>"
        for c, w, t, pages in LEGEND
        if pages in ("both", "scored" if scored else "unscored")
    )
    marks = (
        "<p>A video's section is framed green when it reaches S3, orange when the item is right but S2 or S3 "
        "is lost, red otherwise; a product image is framed green for a true item, red for a wrong one.</p>"
        if scored
        else "<p>This split has no annotations: the page shows the predictions without right / wrong marks.</p>"
    )
    return f"<h2>How to read this page</h2><p>{html.escape(LEVELS_TEXT)}</p>{marks}<ul>{swatches}</ul>"


def _order(traces: Sequence[VideoTrace], scores: Mapping[str, VideoScore] | None) -> list[VideoTrace]:
    """Shown videos (frames sampled) worst first: most points lost, or, unscored, least sure first."""
    shown = [t for t in traces if t.frame_indices]
    if scores is not None:

        def key(t: VideoTrace) -> tuple:
            v = scores.get(t.video_id)
            return (-round(v.total_lost, 12), v.s1 + v.s2 + v.s3) if v is not None else (0.0, 0)

        return sorted(shown, key=lambda t: (*key(t), t.video_id))
    dist = {t.video_id: (t.decision.distance if t.decision is not None else float("inf")) for t in shown}
    return sorted(shown, key=lambda t: (-dist[t.video_id], t.video_id))


def _ranked_figures(out: Path, split: Split, trace: VideoTrace, vs: VideoScore | None, cfg: Any) -> list[str]:
    esc, d = html.escape, trace.decision
    if d is None:
        return []
    # The order of result.json's ranked_items: the chosen item first (one-to-one may have moved it), then the vote.
    ranked = sorted(d.ranked, key=lambda s: s.item_id != d.item_id)
    parts = []
    for rank, s in enumerate(ranked[: cfg.top_k], 1):
        # The chosen item shows the reported entry (a box rule may differ from the closest match).
        ev = d.results[0] if s.item_id == d.item_id and d.results else s.evidence
        item = split.items.get(s.item_id)
        image = next((im for im in item.images if im.stem == Path(ev.img_name).stem), None) if item else None
        path = product_thumb(out / "img" / f"v{trace.video_id}_r{rank}.jpg", image, ev.item_box, cfg.thumb_side)
        state = "" if vs is None else ("right" if s.item_id in vs.true_items else "wrong")
        cap = f"#{rank} {s.item_id}/{ev.img_name} · {s.votes} votes · d={ev.distance:.3f}"
        img = f'<img src="img/{esc(path.name)}" alt="{esc(s.item_id)}">' if path is not None else ""
        parts.append(f'<figure class="{state}">{img}<figcaption>{esc(cap)}</figcaption></figure>')
    return parts


def _section(out: Path, split: Split, trace: VideoTrace, vs: VideoScore | None, cfg: Any) -> str:
    esc, d = html.escape, trace.decision
    right = vs.s1 if vs is not None else None
    frames = frame_thumbs(out / "img", split.videos[trace.video_id], trace, right, cfg.thumb_side)
    predicted = d.item_id if d is not None and d.item_id else "-"
    frame = d.frame_index if d is not None and d.frame_index is not None else "-"
    if vs is None:
        cls, title, marks = "unknown", f"video {trace.video_id}: predicted {predicted}", "not annotated: not scored · "
    else:
        cls = "hit" if vs.s3 else ("partial" if vs.s1 else "")
        title = f"video {trace.video_id}: {vs.reason}"
        marks = " ".join(f"{lv.upper()} {'✓' if getattr(vs, lv) else '✗'}" for lv in ("s1", "s2", "s3")) + " · "
        marks += f"true item(s): {', '.join(vs.true_items) or '-'} · "
    info = f"{marks}predicted: {predicted} · frame {frame} · {len(trace.queries)} garments"
    parts = [
        f'<section id="v{esc(trace.video_id)}" class="{cls}"><h2>{esc(title)}</h2><p>{esc(info)}</p><div class="row">'
    ]
    for i, p in frames:
        parts.append(
            f'<figure><img src="img/{esc(p.name)}" alt="frame {i}"><figcaption>frame {i}</figcaption></figure>'
        )
    parts.append('</div><div class="row">')
    parts += _ranked_figures(out, split, trace, vs, cfg)
    parts.append("</div>")
    if cfg.gif and frames:
        made = gif(frames, out / "img" / f"v{trace.video_id}.gif", cfg.gif_ms)
        if made is not None:
            parts.append(f'<p><a href="img/{esc(made.name)}">animated GIF</a></p>')
    return "".join(parts) + "</section>"


def write_report(
    out: str | Path,
    split: Split,
    traces: Sequence[VideoTrace],
    report: ScoreReport | None,
    cfg: Any,
    metrics: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write `<out>/report.html` and the pictures of its shown videos in `<out>/img/`.

    Args:
        out: the evaluation output folder.
        split: the evaluated split (its product images and annotations give the pictures).
        traces: the matcher's decided traces.
        report: the official score over all videos (per-video levels, reasons, points lost), or None
            for a split without annotations (the page then shows the predictions alone).
        cfg: a `ReportConfig` (`max_videos`, `top_k`, `thumb_side`, `gif`, `gif_ms`).
        metrics: the metrics dict (scores at the top; `box_choice` when measured).
        provenance: {"config": the resolved config dict, "models": `describe_models(...)`}.

    Returns:
        The path of report.html.
    """
    out = Path(out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    scores = {v.video_id: v for v in report.videos} if report is not None else None
    shown = _order(traces, scores)[: cfg.max_videos]
    hidden = sum(bool(t.frame_indices) for t in traces) - len(shown)
    skipped = [t for t in traces if t.status in ("missing", "unreadable")]
    body = [f"<h1>imagesearch evaluation: {html.escape(str(split.root))}</h1>", _provenance(provenance)]
    body += [_how_to_read(report is not None), score_summary(metrics)]
    if report is not None:
        body.append(loss_section(report, metrics.get("box_choice")))
    body.append(video_table(shown, scores, hidden, {v for v, video in split.videos.items() if not video.annotated}))
    for t in progress_bar(shown, enabled=len(shown) >= 20, desc="report", unit="video"):
        body.append(_section(out, split, t, scores.get(t.video_id) if scores is not None else None, cfg))
    if hidden:
        body.append(f"<p class='muted'>{hidden} better videos not shown (report.max_videos).</p>")
    if skipped:
        rows = "".join(f"<tr><td>{html.escape(t.video_id)}</td><td>{html.escape(t.status)}</td></tr>" for t in skipped)
        body.append(f"<h2>Skipped videos ({len(skipped)})</h2><table><tr><th>video</th><th>why</th></tr>{rows}</table>")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>imagesearch report</title>'
        f"<style>{CSS}</style></head><body>{''.join(body)}<script>{SORT_JS}</script></body></html>\n"
    )
    return atomic_write_text(out / "report.html", page)
