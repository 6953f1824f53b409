"""Where ems-ray's messages go: the `ems_ray` logger, and progress for long stages.

Every module logs through `logging.getLogger(__name__)`; nothing is printed except a command's
own result. `configure_logging` (called once by the CLI, a job script or a Ray worker) gives the
`ems_ray` logger one handler on stderr: `-q` shows warnings only, the default shows progress
(INFO), `-v` adds debug lines with times and logger names. It leaves the root logger alone, so
an application that embeds ems-ray keeps its own logging set-up.

`Progress` is what a long loop reports through: a tqdm bar with rate and ETA when stderr is a
terminal, plain INFO lines at most every `every_s` seconds otherwise (log files, CI, `ray job
submit`), so the same code is readable in both places. A caller-supplied `log` sink always gets
the plain lines.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable

PACKAGE_LOGGER = "ems_ray"
_HANDLER_FLAG = "_ems_ray_handler"


def verbosity_level(verbosity: int) -> int:
    """-1 (quiet) → WARNING, 0 → INFO, ≥ 1 (verbose) → DEBUG."""
    return logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG


def configure_logging(verbosity: int = 0, stream=None) -> logging.Logger:
    """Give the `ems_ray` logger one stderr handler at the level for `verbosity` (idempotent)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    level = verbosity_level(verbosity)
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_FLAG, True)
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s" if level <= logging.DEBUG else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # our handler prints it; the root logger's would print it twice
    return logger


def current_verbosity() -> int:
    """The verbosity the `ems_ray` logger is set to (passed on to Ray workers); 0 when unset."""
    level = logging.getLogger(PACKAGE_LOGGER).level or logging.INFO
    return -1 if level >= logging.WARNING else 0 if level >= logging.INFO else 1


def ensure_logging(verbosity: int = 0) -> None:
    """In a process the driver's set-up does not reach (a Ray worker): apply its verbosity.

    Our handler is added only where nothing else shows log records: a Ray Train worker's root
    logger already prints to the console (and to Ray Train's log files), so there records simply
    propagate to it; a second handler would print every line twice.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    if any(getattr(h, _HANDLER_FLAG, False) for h in logger.handlers):
        return
    if logging.getLogger().handlers:
        logger.setLevel(verbosity_level(verbosity))
        logger.propagate = True
        return
    configure_logging(verbosity)


def _on_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts done out of `total`; a tqdm bar on a terminal, else periodic INFO lines with rate and ETA."""

    def __init__(self, label: str, total: int, *, done: int = 0, unit: str = "points", every_s: float = 30.0,
                 log: Callable[[str], None] | None = None, bar: bool | None = None):
        self.label, self.total, self.unit, self.every_s = label, int(total), unit, every_s
        self.log = log or logging.getLogger(PACKAGE_LOGGER).info
        self.start_done = self.done = self.reported = int(done)
        self.t0 = self.last = time.monotonic()
        show_bar = _on_terminal(sys.stderr) if bar is None else bar
        self._bar = None
        if show_bar and log is None and logging.getLogger(PACKAGE_LOGGER).isEnabledFor(logging.INFO):
            from tqdm import tqdm

            from tqdm.contrib.logging import logging_redirect_tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=label, unit=unit.rstrip("s") or unit,
                             dynamic_ncols=True, leave=True, file=sys.stderr)
            # log lines while the bar is shown are written above it instead of through it
            self._redirect = logging_redirect_tqdm(loggers=[logging.getLogger(PACKAGE_LOGGER)])
            self._redirect.__enter__()

    @property
    def rate_per_min(self) -> float:
        elapsed = time.monotonic() - self.t0
        return 60.0 * (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def add(self, n: int = 1) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
            return
        now = time.monotonic()
        if self.done != self.reported and (now - self.last >= self.every_s or self.done >= self.total):
            self._line(now)

    def close(self) -> None:
        """Final line (or close the bar); safe to call twice."""
        if self._bar is not None:
            self._redirect.__exit__(None, None, None)
            self._bar.close()
            self._bar = None
        elif self.done != self.reported:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self.last, self.reported = now, self.done
        rate = self.rate_per_min
        eta = (self.total - self.done) / rate if rate > 0 else math.nan
        self.log(f"{self.label}: {self.done}/{self.total} {self.unit} (+{self.done - self.start_done} "
                         f"this run), {rate:.1f} {self.unit}/min, ETA {eta:.1f} min")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
