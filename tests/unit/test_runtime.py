"""`imagesearch.runtime`: TensorBoard as an optional extra, logging handlers that print each line once."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from imagesearch import runtime
from imagesearch.engine import fit
from tests.unit.test_engine import make_cfgs, make_parts


def test_without_tensorboard_a_run_goes_on_with_one_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import fails as if not installed
    pictures: list[int] = []
    optim, train, config = make_cfgs(tmp_path, epochs=2, tensorboard=True)
    parts = make_parts(evaluate=lambda m, e: {"val/score": 0.5}, log_visuals=lambda w, e: pictures.append(e))
    with caplog.at_level(logging.INFO, logger="imagesearch"):
        result = fit(parts, optim, train, config, best_metric="val/score")
    assert result.epochs_trained == 2 and (tmp_path / "last.pt").is_file()
    notes = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert notes == [(logging.WARNING, runtime.TENSORBOARD_MISSING)]
    assert "\n" not in runtime.TENSORBOARD_MISSING
    assert not (tmp_path / "tb").exists() and pictures == []  # no writer, so no hook call


def test_the_writer_is_none_when_tensorboard_is_off_or_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert runtime.make_summary_writer(tmp_path / "tb") is None


def test_setup_logging_adds_one_console_handler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if h.get_name() != runtime.CONSOLE_HANDLER_NAME])
    before = len(root.handlers)
    runtime.setup_logging()
    runtime.setup_logging()
    assert len(root.handlers) == before + 1
    with runtime.rank_zero_logging(None) as pkg:  # the root prints already: no second console handler
        assert pkg.handlers == []


def test_rank_zero_logging_prints_when_nothing_else_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if h.get_name() != runtime.CONSOLE_HANDLER_NAME])
    with runtime.rank_zero_logging(tmp_path / "train.log") as pkg:
        kinds = sorted(type(h).__name__ for h in pkg.handlers)
    assert kinds == ["FileHandler", "_ConsoleHandler"] and pkg.handlers == []


def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert not sys.stderr.isatty()
    assert list(runtime.progress_bar(range(3), desc="x")) == [0, 1, 2]
    assert runtime.progress_bar(range(3)).disable and runtime.progress_bar(range(3), enabled=False).disable
    assert capsys.readouterr().err == ""
