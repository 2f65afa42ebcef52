"""``imprint-bench-report``: the report from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.report import stats
from imprint_bench.report.builder import PAPER_CHOICES, build_report


def report_main(argv: Sequence[str] | None = None) -> int:
    """``imprint-bench-report RESULTS [--out DIR] [--methods qi,ours|all] [--paper auto|yes|no]``."""
    ap = argparse.ArgumentParser(
        prog="imprint-bench-report",
        description="Build the benchmark report (Markdown + HTML, PNG figures, CSV tables) from a results table.",
    )
    ap.add_argument("results", metavar="RESULTS", help="results.parquet, or a directory holding one")
    ap.add_argument("--out", metavar="DIR", default=None, help="output folder (default: report/ next to RESULTS)")
    ap.add_argument(
        "--methods",
        default="all",
        help=f"comma list of presets for Table 1 and the CD diagram ({','.join(PRESETS)}) or 'all'",
    )
    ap.add_argument(
        "--paper",
        choices=PAPER_CHOICES,
        default="auto",
        help="show the paper's numbers beside ours (auto: only in the paper's setting)",
    )
    ap.add_argument(
        "--best-custom",
        type=int,
        default=None,
        metavar="N",
        help="also show the N best non-preset configurations (default 0, or 5 with fewer than 2 presets)",
    )
    ap.add_argument("--alpha", type=float, default=stats.ALPHA, help="significance level (default 0.05)")
    ap.add_argument("--title", default=None, help="report title")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        md = build_report(
            Path(args.results),
            Path(args.out) if args.out else None,
            methods=args.methods,
            paper=args.paper,
            best_custom=args.best_custom,
            alpha=args.alpha,
            title=args.title,
        )
    except ConfigError as exc:
        print(f"imprint-bench-report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written: {md} (and {md.with_suffix('.html').name}, figures/, tables/)")
    return 0
