"""The search benchmark end to end at a tiny size, and its pieces: recall, data, timing, table, JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _common, search_index

ROW_FIELDS = {"n", "method", "device", "build_s", "search_s", "search_times_s", "qps", "recall", "index_bytes"}
ROW_FIELDS |= {"rss_delta_bytes", "peak_rss_delta_bytes"}


def test_main_writes_the_json_with_exact_flat_recall(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    argv = ["--sizes", "2000", "--dim", "32", "--queries", "50", "--k", "20", "--nprobe", "1", "400"]
    payload = search_index.main([*argv, "--repeat", "1", "--out", str(out)])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["benchmark"] == "search_index" and record["results"] == json.loads(json.dumps(payload["results"]))
    assert record["args"]["sizes"] == [2000] and record["machine"]["cpu_cores"] >= 1 and record["machine"]["faiss"]
    rows = {(r["method"], r.get("nprobe")): r for r in record["results"]}
    nlist = min(2000 // 39, round(4 * math.sqrt(2000)))  # 51: FAISS's floor of 39 training points per cell
    assert set(rows) == {("brute_fp32", None), ("faiss_flat", None), ("faiss_ivf", 1), ("faiss_ivf", nlist)}
    for row in rows.values():
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["n"] == 2000 and row["search_s"] > 0 and row["qps"] == pytest.approx(50 / row["search_s"])
    assert rows["faiss_flat", None]["recall"] == 1.0  # exact search finds the brute force's neighbours
    assert rows["faiss_ivf", nlist]["recall"] == 1.0  # every cell visited: IVF is exhaustive
    assert 0.0 < rows["faiss_ivf", 1]["recall"] < 1.0
    assert rows["brute_fp32", None]["index_bytes"] == 2000 * 32 * 4
    # A Flat index serialises its vectors plus a small header.
    assert 2000 * 32 * 4 < rows["faiss_flat", None]["index_bytes"] < 2000 * 32 * 4 + 1024
    assert rows["faiss_ivf", 1]["nlist"] == nlist and rows["faiss_ivf", 1]["train_s"] <= rows["faiss_ivf", 1]["build_s"]


def test_recall_at_k_by_hand() -> None:
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    found = np.array([[2, 9, 0], [-1, -1, -1]])  # 2 of 3, then nothing found
    assert search_index.recall_at_k(found, exact) == pytest.approx(2 / 6)
    assert search_index.recall_at_k(exact[:, ::-1], exact) == 1.0  # order within the top k does not matter


def test_mixture_rows_are_unit_and_near_their_centre() -> None:
    centers = np.eye(4, dtype=np.float32)
    x = search_index.mixture(100, centers, sigma=0.1, rng=np.random.default_rng(0), chunk=7)
    assert x.shape == (100, 4) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    assert (x.max(axis=1) > 0.9).all()  # each row stays by one axis: noise of norm ~0.1 around it


def test_time_call_median_and_budget() -> None:
    calls = []
    timing = _common.time_call(lambda: calls.append(1), warmup=2, repeat=5)
    assert len(calls) == 7 and len(timing["times_s"]) == 5
    assert timing["median_s"] == sorted(timing["times_s"])[2]
    calls.clear()
    timing = _common.time_call(lambda: calls.append(1), warmup=0, repeat=5, budget_s=0.0)
    assert len(calls) == 1 and len(timing["times_s"]) == 1  # over budget after the first timed call


def test_format_table_and_atomic_result(tmp_path: Path) -> None:
    rows = [{"n": 10, "qps": 1234.5, "recall": None}, {"n": 1000, "qps": 2.0, "recall": 0.5}]
    table = _common.format_table(rows, [("n", "N", "d"), ("qps", "queries/s", ",.0f"), ("recall", "recall", ".2f")])
    assert table.splitlines() == [
        "   N  queries/s  recall",
        "----  ---------  ------",
        "  10      1,234       -",
        "1000          2    0.50",
    ]
    path = _common.write_result("demo", "cpu", {"results": rows}, tmp_path / "sub" / "demo.json")
    assert json.loads(path.read_text(encoding="utf-8"))["results"] == rows
    assert [p.name for p in path.parent.iterdir()] == ["demo.json"]  # no temporary file left behind
    assert _common.result_path("search_index", "cuda:0") == _common.RESULTS_DIR / "search_index-cuda.json"
    assert _common.rss_bytes() > 0 or not Path("/proc/self/status").exists()
