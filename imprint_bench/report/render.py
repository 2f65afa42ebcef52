"""A tiny document model rendered to Markdown and to a self-contained HTML page (PNGs embedded).

The report is built from blocks (headings, paragraphs, bullet lists, tables, images) rather than parsed from
Markdown, so both outputs come from the same content with no extra dependency.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


def fmt_value(value: object, digits: int = 2) -> str:
    """Cell text: floats with ``digits`` decimals (p-values in 3 significant digits), NaN as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.{digits}f}"
    try:
        if pd.isna(value):
            return "–"
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):  # numpy scalar
        return fmt_value(value.item(), digits)
    return str(value)


def fmt_p(p: float) -> str:
    """p-value text: 3 significant digits, scientific below 1e-3."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def p_phrase(p: float) -> str:
    """p-value for figure text: ``p = 0.034``, ``p < 0.001`` (never ``p = 0``), or ``no p-value``."""
    if p is None or not math.isfinite(p):
        return "no p-value"
    return "p < 0.001" if p < 1e-3 else f"p = {p:.3f}"


def format_table(
    df: pd.DataFrame,
    digits: int | dict[str, int] = 2,
    pcols: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
) -> pd.DataFrame:
    """All cells as strings: floats rounded (per-column ``digits``), ``pcols`` as p-values."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        if col in pcols:
            out[col] = [fmt_p(float(v)) for v in df[col]]
        else:
            d = digits.get(col, 2) if isinstance(digits, dict) else digits
            out[col] = [fmt_value(v, d) for v in df[col]]
    return out.rename(columns=rename or {})


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITAL = re.compile(r"(?<![*\w])\*([^*]+)\*(?![*\w])")


def inline_html(text: str) -> str:
    """Escape, then turn `code`, **bold** and *italic* into HTML."""
    out = html.escape(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return _ITAL.sub(r"<em>\1</em>", out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


@dataclass
class Doc:
    """Ordered report content; ``to_markdown`` / ``to_html`` render it."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def note(self, text: str) -> None:
        """A one-line remark, e.g. why a figure was skipped."""
        self.blocks.append(("note", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, df: pd.DataFrame, caption: str = "", max_rows: int = 80) -> None:
        """Add a table whose cells are already text (see :func:`format_table`); long ones are cut."""
        self.blocks.append(("table", (df.head(max_rows).reset_index(drop=True), caption)))
        if len(df) > max_rows:
            self.note(f"… {len(df) - max_rows} more rows (the CSV under tables/ has them all).")

    def image(self, path: Path, rel: str, caption: str) -> None:
        self.blocks.append(("img", (Path(path), rel, caption)))

    # ---------------------------------------------------------------------------------------- markdown
    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "h":
                level, text = val
                lines += [f"{'#' * level} {text}", ""]
            elif kind == "p":
                lines += [val, ""]
            elif kind == "note":
                lines += [f"> {val}", ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in val] + [""]
            elif kind == "table":
                df, caption = val
                if caption:
                    lines += [f"*{caption}*", ""]
                lines += [*_md_table(df), ""]
            elif kind == "img":
                _, rel, caption = val
                lines += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    # ---------------------------------------------------------------------------------------- html
    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, val in self.blocks:
            if kind == "h":
                level, text = val
                body.append(f"<h{level}>{inline_html(text)}</h{level}>")
            elif kind == "p":
                body.append(f"<p>{inline_html(val)}</p>")
            elif kind == "note":
                body.append(f'<p class="note">{inline_html(val)}</p>')
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in val) + "</ul>")
            elif kind == "table":
                df, caption = val
                body.append(_html_table(df, caption))
            elif kind == "img":
                path, rel, caption = val
                body.append(_html_image(path, rel, caption))
        return _HTML_PAGE.format(title=html.escape(self.title), body="\n".join(body))


def _md_table(df: pd.DataFrame) -> list[str]:
    cols = [_md_cell(c) for c in df.columns]
    numeric = [_looks_numeric(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return lines


def _looks_numeric(col: pd.Series) -> bool:
    vals = [str(v) for v in col if str(v) not in ("–", "")]
    return bool(vals) and all(re.fullmatch(r"[-+−]?[\d.]+(e[-+]\d+)?%?|∞", v) for v in vals)


def _html_table(df: pd.DataFrame, caption: str) -> str:
    numeric = [_looks_numeric(df[c]) for c in df.columns]
    head = "".join(f"<th>{inline_html(str(c))}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cells = "".join(
            f'<td class="{"num" if n else ""}">{inline_html(str(v))}</td>' for v, n in zip(row, numeric, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{inline_html(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "</div>")


def _html_image(path: Path, rel: str, caption: str) -> str:
    try:
        src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        src = rel
    return (
        f'<figure><img src="{src}" alt="{html.escape(caption)}">'
        f"<figcaption>{inline_html(caption)}</figcaption></figure>"
    )


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }}
h1, h2, h3 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; }}
div.scroll {{ overflow-x: auto; max-width: 100%; }}  /* a wide table scrolls inside the page */
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
td {{ overflow-wrap: anywhere; }}  /* long configuration names wrap */
caption {{ caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; }}
th {{ background: #f3f3f3; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr:nth-child(even) td {{ background: #fafafa; }}
code {{ background: #f3f3f3; padding: 0 3px; border-radius: 3px; }}
p.note {{ color: #555; border-left: 3px solid #ccc; padding-left: .7em; }}
figure {{ margin: 1em 0; }} figure img {{ max-width: 100%; }}
figcaption {{ font-style: italic; color: #555; }}
</style></head>
<body>
{body}
</body></html>
"""
