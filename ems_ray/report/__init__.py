"""The report of a run (paper Table 2 and Figure 4 analogues), written from the run's files.

    run_report_stage(cfg.context())    # <run_dir>/report/report.md, accuracy_latency.png, searchers_<budget>.png
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".stage": ("REPORT_DIR", "build_report", "run_report_stage"),
})
