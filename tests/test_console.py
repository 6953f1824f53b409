"""Logging set-up, -v/-q, and progress reporting (bar on a terminal, lines elsewhere)."""
from __future__ import annotations

import io
import logging

import pytest

from ems_ray.cli import main
from ems_ray.console import PACKAGE_LOGGER, Progress, configure_logging, current_verbosity, ensure_logging


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger(PACKAGE_LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.mark.parametrize("verbosity, shown", [(-1, {"warning"}), (0, {"info", "warning"}),
                                              (1, {"debug", "info", "warning"})])
def test_verbosity_levels(verbosity, shown):
    stream = io.StringIO()
    configure_logging(verbosity, stream)
    log = logging.getLogger("ems_ray.some.stage")
    log.debug("debug"), log.info("info"), log.warning("warning")
    out = stream.getvalue()
    assert {w for w in ("debug", "info", "warning") if w in out} == shown
    assert current_verbosity() == verbosity


def test_configure_twice_keeps_one_handler():
    stream = io.StringIO()
    configure_logging(0, stream)
    configure_logging(0, stream)
    logging.getLogger("ems_ray.x").info("once")
    assert stream.getvalue().count("once") == 1


def test_worker_with_configured_root_propagates_instead_of_printing_twice(monkeypatch):
    """A Ray Train worker's root logger prints already: no second handler of ours there."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.handlers[:] = [h for h in logger.handlers if not getattr(h, "_ems_ray_handler", False)]
    root_stream = io.StringIO()
    root_handler = logging.StreamHandler(root_stream)
    monkeypatch.setattr(logging.getLogger(), "handlers", [root_handler])
    ensure_logging(-1)
    logging.getLogger("ems_ray.train.progressive").info("hidden by -q")
    logging.getLogger("ems_ray.train.progressive").warning("shown")
    assert root_stream.getvalue() == "shown\n"
    assert not [h for h in logger.handlers if getattr(h, "_ems_ray_handler", False)]


def test_progress_lines_without_terminal_have_rate_and_eta():
    lines = []
    progress = Progress("[collect fp]", 10, done=2, every_s=0.0, log=lines.append)
    progress.add(3)
    progress.add(5)
    progress.close()
    assert lines[0].startswith("[collect fp]: 5/10 points (+3 this run)")
    assert "points/min" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("[collect fp]: 10/10 points (+8 this run)")
    assert len(lines) == 2  # close() adds nothing when the last count was reported


def test_progress_bar_on_a_terminal(monkeypatch):
    import sys

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(0, stream)
    with Progress("[final]", 4, unit="models", bar=True) as progress:
        progress.add(4)
    out = stream.getvalue()
    assert "[final]" in out and "4/4" in out  # tqdm's bar, not a log line
    assert "this run" not in out


def test_cli_quiet_and_verbose_flags_anywhere(capsys):
    assert main(["space", "show", "--preset", "fmnist-small", "-q"]) == 0
    assert current_verbosity() == -1
    assert "search space 'fmnist-small'" in capsys.readouterr().out  # the command's result still printed
    assert main(["-v", "space", "show", "--preset", "fmnist-small"]) == 0
    assert current_verbosity() == 1
