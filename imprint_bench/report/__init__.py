"""The benchmark report: Table 1, rank statistics with a CD diagram, the paper's figures and NC1.

Python API: :func:`build_report` (used by the Hydra ``mode=report``); console: ``imprint-bench-report``
(:func:`report_main`). Output folder layout::

    report.md  report.html  figures/*.png  tables/*.csv

Modules: ``builder`` (build_report), ``cli`` (report_main), ``context`` (what sections share), ``sections/``
(one module per group of sections), ``data`` (reading and labelling results), ``tables`` and ``stats`` (the
numbers), ``selection`` (choices on validation accuracy and the optimism gap), ``plots`` (the figures),
``render`` (Markdown and HTML), ``paper`` (the published values).
"""

from imprint_bench.report.builder import build_report
from imprint_bench.report.cli import report_main
from imprint_bench.report.data import load_results

__all__ = ["build_report", "load_results", "report_main"]
