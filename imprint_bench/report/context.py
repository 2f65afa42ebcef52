"""What every report section shares: the :class:`ReportContext`, running a section, the plotting module."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from imprint_bench.report.render import Doc
from imprint_bench.report.selection import Coverage

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
MAX_PANELS = 24  # panels per figure; more make unreadable, slow figures


@dataclass
class ReportContext:
    """State shared by the report sections: the data, the document being written and what was produced."""

    out: Path
    doc: Doc
    df: pd.DataFrame  # all rows, validated
    ok: pd.DataFrame  # successful rows with labels
    paper: str
    alpha: float
    strict: bool
    figures: dict[str, Path] = field(default_factory=dict)
    csvs: dict[str, tuple[Path, pd.DataFrame]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    table1_med: pd.DataFrame | None = None  # seed medians of the Table-1 methods
    table1_paper: bool = False  # Table 1 shows the paper's values
    validation: Coverage = field(default_factory=Coverage)  # successful rows with a validation accuracy (val_acc)

    def csv(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``df`` as tables/<name>.csv (and hand it to the tracker later)."""
        path = self.out / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        self.csvs[name] = (path, df)
        return path

    def figure(self, name: str, fig: Figure, caption: str) -> Path:
        """Save ``fig`` as figures/<name>.png and show it in the report with ``caption``."""
        path = plots().save_figure(fig, self.out / "figures" / f"{name}.png")
        self.figures[name] = path
        self.doc.image(path, path.relative_to(self.out).as_posix(), caption)
        return path

    def show_paper(self, matches: bool) -> bool:
        """Whether to show the paper's numbers: always with paper=yes, with auto when the setting ``matches``."""
        return self.paper == "yes" or (self.paper == "auto" and matches)


def plots() -> ModuleType:
    """The plotting module, imported on first use (the report stays light to import)."""
    from imprint_bench.report import plots as plots_module

    return plots_module


def run_section(ctx: ReportContext, name: str, fn: Callable[[], Any]) -> Any:
    """Run one section; on an unexpected error note it in the report (or re-raise when strict)."""
    try:
        return fn()
    except Exception as exc:
        if ctx.strict:
            raise
        log.exception("report section %s failed", name)
        ctx.doc.note(f"Section '{name}' could not be produced: {type(exc).__name__}: {exc}")
        return None


def limit_panels(ctx: ReportContext, data: pd.DataFrame, limit: int = MAX_PANELS) -> pd.DataFrame:
    """Keep the first ``limit`` (backbone, dataset) panels of a figure, with a note when some are dropped."""
    keys = sorted({(b, d) for b, d in zip(data["backbone"], data["dataset"], strict=True)})
    if len(keys) <= limit:
        return data
    ctx.doc.note(f"The figure shows {limit} of {len(keys)} backbone × dataset panels; the CSV has them all.")
    keep = set(keys[:limit])
    return data[[(b, d) in keep for b, d in zip(data["backbone"], data["dataset"], strict=True)]]
