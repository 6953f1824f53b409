"""The report of a run (paper Table 2 and Figure 4 analogues), written from the run's files.

    run_report_stage(cfg)    # <run_dir>/report/report.md, accuracy_latency.png, searchers_<budget>.png
"""
from .stage import REPORT_DIR, build_report, run_report_stage

__all__ = ["REPORT_DIR", "build_report", "run_report_stage"]
