"""Reading, validating and labelling the results table (one row per evaluated configuration)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from imprint_bench.errors import ConfigError
from imprint_bench.imprint.registry import agg_label, config_text, gen_label, stage_label
from imprint_bench.imprint.spec import PRESETS
from imprint_bench.schema import REQUIRED_COLUMNS, STAGE_COLUMNS, conform, dedupe_runs, missing_required

#: A group / voter / block of the rank statistics.
GROUP_COLS = ["backbone", "dataset", "mapping", "task"]
#: The stage columns that identify one configuration (the schema's, plus the few-shot value).
CONFIG_COLS = [*STAGE_COLUMNS, "shots"]
PRESET_ORDER = list(PRESETS)  # qi, hosoda, janson, ours, oracle

_D_IN_1 = re.compile(r"^(?:map)?(\d+)(?:_in_1)?-(\d+)$")


def resolve_results_path(path: str | Path) -> Path:
    """A results.parquet file, or a directory holding one; ConfigError if neither exists."""
    p = Path(path).expanduser()
    if p.is_dir():
        cand = p / "results.parquet"
        if not cand.is_file():
            found = sorted(x.name for x in p.glob("*.parquet"))[:5]
            hint = f"; parquet files there: {', '.join(found)}" if found else ""
            raise ConfigError(
                f"no results.parquet in directory {p}{hint} (pass the file or run imprint-bench-collect first)"
            )
        return cand
    if not p.is_file():
        raise ConfigError(f"results file not found: {p} (expected a results.parquet or a directory holding one)")
    return p


def load_results(path: str | Path) -> pd.DataFrame:
    """Read and validate a results table from Parquet (or CSV, for hand-made tables)."""
    p = resolve_results_path(path)
    try:
        df = pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # unreadable file: say which and why
        raise ConfigError(f"cannot read results table {p}: {type(exc).__name__}: {exc}") from exc
    return validate_results(df, source=str(p))


def validate_results(df: pd.DataFrame, source: str = "<DataFrame>") -> pd.DataFrame:
    """Check required columns, fill the others with the schema's defaults, fix dtypes and drop duplicate runs
    (:func:`imprint_bench.schema.dedupe_runs`)."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"results must be a pandas DataFrame or a path, got {type(df).__name__}")
    if len(df) == 0:
        raise ConfigError(f"results table {source} has no rows: nothing to report (run a sweep and collect first)")
    missing = missing_required(list(df.columns))
    if missing:
        raise ConfigError(
            f"results table {source} lacks required column(s) {missing}; it has "
            f"{sorted(map(str, df.columns))}. Required: {REQUIRED_COLUMNS}"
        )
    return dedupe_runs(conform(df))


def separate_feature_sets(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Different feature sets, and different tasks, never share a report group. When several feature sets
    (``feature_key``) carry the same backbone / dataset / mapping labels, each one's dataset label gets its key's
    first characters; when one task name stands for different task contents (``task_key``: other classes, shots or
    validation split, e.g. ``task=all task.classes=[0,1]``), each content gets its own task label. Returns the table
    and one note per collision, for the reader."""
    out, notes = df, []
    if "feature_key" in df.columns and len(df):
        out, notes = _split_labels(out, ["backbone", "dataset", "mapping"], "feature_key", "dataset",
                                   lambda key: str(key).rsplit("-", 1)[-1][:8], "different feature sets",
                                   "set dataset.name to name them", ["backbone", "dataset"])
    if "task_key" in out.columns and len(out):
        out, task_notes = _split_labels(out, GROUP_COLS, "task_key", "task", lambda key: _task_tag(out, key),
                                        "different tasks", "set task.name to name them",
                                        ["backbone", "dataset", "task"])
        notes += task_notes
    return out, notes


def _task_tag(df: pd.DataFrame, key: str) -> str:
    """A short description of a task's content from its rows: classes, shots, validation rows."""
    rows = df[df["task_key"] == key].iloc[0]
    parts = [f"{int(rows['n_classes'])} classes" if np.isfinite(rows.get("n_classes", np.nan)) else str(key)[:8]]
    if int(rows.get("shots", -1)) > 0:
        parts.append(f"{int(rows['shots'])} shots")
    if rows.get("n_val", 0) and rows["n_val"] > 0:
        parts.append("validation split")
    return ", ".join(parts) + f", {str(key)[:6]}"


def _split_labels(df: pd.DataFrame, by: list[str], key_col: str, label_col: str, tag: Callable[[str], str],
                  what: str, advice: str, shown: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Relabel ``label_col`` where one ``by`` group holds several ``key_col`` values; one note per such group."""
    keyed = df[df[key_col].astype(str) != ""]
    sets = keyed.groupby(by, sort=False)[key_col].unique()
    collisions = sets[sets.map(len) > 1]
    if collisions.empty:
        return df, []
    out, notes = df.copy(), []
    for labels, keys in collisions.items():
        same = np.logical_and.reduce([out[c] == v for c, v in zip(by, labels, strict=True)])
        label = labels[by.index(label_col)]
        tags = {key: tag(key) for key in keys}
        for key, text in tags.items():
            out.loc[same & (out[key_col] == key), label_col] = f"{label} [{text}]"
        named = " / ".join(str(labels[by.index(c)]) for c in shown)
        notes.append(f"{len(keys)} {what} are labelled {named}: they are kept apart as "
                     f"{', '.join(f'{label} [{t}]' for t in tags.values())} ({advice})")
    return out, notes


def split_incremental(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of imprinting all classes at once, and apart from them the class-incremental rows (``step`` >= 0):
    every section but the class-incremental one reads only the former."""
    if "step" not in df:
        return df, df.iloc[:0]
    steps = df["step"].fillna(-1)
    return df[steps < 0].reset_index(drop=True), df[steps >= 0].reset_index(drop=True)


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Successful rows with a finite accuracy."""
    return df[(df["status"] == "ok") & np.isfinite(df["acc"])]


def d_in_1(mapping: str) -> tuple[int, int] | None:
    """(d, variant) of an ImageNet "d in 1" mapping name ``map{d}-{v}`` (or ``{d}_in_1-{v}``), else None."""
    match = _D_IN_1.match(str(mapping))
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_d_in_1(series: pd.Series) -> pd.Series:
    """Boolean mask of d-in-1 mapping names."""
    return series.astype(str).str.match(_D_IN_1.pattern)


# ----------------------------------------------------------------------------------------------- labels
def norm_label(value: str) -> str:
    """A NORM kind's display label (its registry entry's), e.g. ``L2``."""
    return stage_label("norm_pre", value)


def gen_name(gen: str) -> str:
    """The GEN method's display label (its registry entry's), e.g. ``k-means``; an external one's dotted name."""
    return stage_label("gen", gen)


def stage_columns(row: pd.Series | dict) -> dict[str, str]:
    """The Table-1 descriptive columns of a configuration."""
    return {
        "NORMpre": norm_label(row["norm_pre"]),
        "GEN": gen_label(row["gen"], int(row["k"]), str(row.get("gen_args") or ""), int(row.get("batch_size") or 0)),
        "NORMpost": norm_label(row["norm_post"]),
        "NORMinf": norm_label(row["norm_inf"]),
        "AGG": agg_label(row["agg"], int(row["m"]), row["distance"], row["weighting"]),
    }


def add_config_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``label``: the preset name where the rows say so, else :func:`config_label`; unique per config."""
    if df.empty:
        return df.assign(label=pd.Series(dtype=str))
    configs = df[[*CONFIG_COLS, "method"]].drop_duplicates(CONFIG_COLS)
    # The preset name of a config = its most frequent method value (the runner labels rows with it).
    method_mode = df.groupby(CONFIG_COLS, dropna=False)["method"].agg(
        lambda s: s.mode().iloc[0] if len(s.mode()) else "custom"
    )
    labels: dict[tuple, str] = {}
    used: dict[str, int] = {}
    for _, row in configs.iterrows():
        key = tuple(row[c] for c in CONFIG_COLS)
        method = method_mode.loc[key] if key in method_mode.index else "custom"
        base = method if method in PRESETS else config_text(row)
        if method in PRESETS and int(row["shots"]) > 0:
            base = f"{method}@n={int(row['shots'])}"
        used[base] = used.get(base, 0) + 1
        labels[key] = base if used[base] == 1 else f"{base}#{used[base]}"
    keys = list(zip(*(df[c] for c in CONFIG_COLS), strict=True))
    return df.assign(label=[labels[k] for k in keys])


def prefer_slice(df: pd.DataFrame, cols: list[str], preferred: tuple) -> tuple[pd.DataFrame, tuple]:
    """Rows whose ``cols`` equal ``preferred`` if any exist, else the most frequent combination."""
    if df.empty:
        return df, preferred
    mask = np.logical_and.reduce([df[c] == v for c, v in zip(cols, preferred, strict=True)])
    if mask.any():
        return df[mask], preferred
    combo = tuple(df.groupby(cols, dropna=False).size().idxmax())
    mask = np.logical_and.reduce([df[c] == v for c, v in zip(cols, combo, strict=True)])
    return df[mask], combo


def full_data_slice(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows trained on all data (shots = −1) if any, else those of the most frequent shots value."""
    if df.empty or (df["shots"] == -1).any():
        return df[df["shots"] == -1], -1
    shots = int(df["shots"].value_counts().idxmax())
    return df[df["shots"] == shots], shots
