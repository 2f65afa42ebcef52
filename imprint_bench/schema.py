"""The results schema: every column of the results table, its type, its default and its meaning, in one place.

One row per evaluated configuration. The runner writes rows through :func:`to_arrow` (ok and failed rows get
the same column types), collect and the report de-duplicate with :func:`dedupe_runs`, the report reads any
table through :func:`conform`, and ``docs/architecture.md`` lists :data:`COLUMN_NAMES` (a test keeps it true).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

Kind = Literal["str", "int", "float", "count", "list", "int_list"]
#: What a column is: part of the cell (what was imprinted on), a stage option of the configuration, the preset
#: label, a metric of the run, a property of the task's data, or identity and provenance.
Role = Literal["cell", "stage", "label", "metric", "task", "provenance"]

_ARROW = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "count": pa.int64(),
          "list": pa.list_(pa.float64()), "int_list": pa.list_(pa.int64())}


@dataclass(frozen=True)
class Column:
    """One result column. ``default`` fills a table that lacks the column (or holds nulls in it); a
    ``required`` column has none: without it no report can be made. ``count`` columns are integers on disk
    and floats in memory (NaN where a hand-made table has no value)."""

    name: str
    kind: Kind
    role: Role
    doc: str
    required: bool = False
    default: Any = None


COLUMNS: tuple[Column, ...] = (
    # the cell: one (backbone, dataset, task, seed)
    Column("experiment", "str", "cell", "experiment_name of the sweep", default=""),
    Column("backbone", "str", "cell", "backbone name (or a feature file's backbone label)", required=True),
    Column("dataset", "str", "cell", "dataset name", required=True),
    Column("mapping", "str", "cell", "label remapping of the dataset (none = its own labels)", default="none"),
    Column("task", "str", "cell", "class split: all, even, odd, short, or a custom name", required=True),
    Column("seed", "int", "cell", "run seed (k-means starts, few-shot samples)", required=True),
    Column("shots", "int", "cell", "training samples per class; -1 = all", default=-1),
    Column("task_key", "str", "cell", "hash of the task's content (classes, shots, validation split, unseen_test): "
           "the report keeps tasks of one name but different content apart", default=""),
    # the configuration: its stages
    Column("method", "str", "label", "Table-1 preset the configuration equals, else custom", required=True),
    Column("norm_pre", "str", "stage", "NORMpre", required=True),
    Column("gen", "str", "stage", "GEN: a registered method (mean, kmeans, ...) or an external function's dotted name",
           required=True),
    Column("gen_args", "str", "stage", "an external GEN function's keyword arguments (JSON; empty for built-ins)",
           default=""),
    Column("k", "int", "stage", "proxies per class (-1 = all samples)", required=True),
    Column("norm_post", "str", "stage", "NORMpost", required=True),
    Column("norm_inf", "str", "stage", "NORMinf", required=True),
    Column("agg", "str", "stage", "AGG: max or mnn", required=True),
    Column("m", "int", "stage", "neighbours voting in mnn (-1 for max)", required=True),
    Column("distance", "str", "stage", "mnn distance (inner_product for max)", required=True),
    Column("weighting", "str", "stage", "mnn vote weighting: uniform or distance", required=True),
    Column("kmeans_backend", "str", "stage", "k-means backend requested (faiss placeholder for other GEN)", default=""),
    Column("kmeans_iters", "int", "stage", "Lloyd iteration cap", default=-1),
    Column("seeding", "str", "stage", "k-means seeds: derived per class, or reference (the run seed, sklearn)",
           default="derived"),
    Column("lam", "float", "stage", "ridge λ of ls/kls (-1 = none)", default=-1.0),
    Column("batch_size", "int", "stage", "rows per batch of a streamed GEN (gen.streaming); 0 = all rows at once",
           default=0),
    Column("step", "int", "cell", "class-incremental step (0 = the first; -1 = all classes at once)", default=-1),
    Column("n_seen_classes", "int", "cell", "classes imprinted so far (class-incremental; -1 otherwise)", default=-1),
    # the metrics
    Column("acc", "float", "metric", "test accuracy, %", required=True),
    Column("joint_acc", "float", "metric", "class-incremental: test accuracy of imprinting the same seen classes at "
           "once, % (NaN otherwise)", default=np.nan),
    Column("first_step_acc", "float", "metric", "class-incremental: accuracy on the test rows of the first step's "
           "classes, % (its fall over the steps is the forgetting; NaN otherwise)", default=np.nan),
    Column("val_acc", "float", "metric", "accuracy on the validation split carved from the training rows, % (NaN: no "
           "split, task.val_fraction = 0)", default=np.nan),
    Column("macro_f1", "float", "metric", "macro-F1 over classes present in the test set, %", default=np.nan),
    Column("balanced_acc", "float", "metric", "mean per-class recall, %", default=np.nan),
    Column("per_class_f1", "list", "metric", "F1 per class, %", default=None),
    Column("gen_s", "float", "metric", "seconds GEN took (also when served from cache)", default=np.nan),
    Column("infer_s", "float", "metric", "seconds of inference on the test set", default=np.nan),
    Column("n_proxies", "count", "metric", "proxies in the head", default=np.nan),
    Column("proxies_per_class", "int_list", "metric", "proxies of each class (with gen.k=auto: the k chosen per class)",
           default=None),
    Column("n_classes", "count", "task", "classes of the task", default=np.nan),
    Column("n_train", "count", "task", "training rows the task imprinted from", default=np.nan),
    Column("n_val", "count", "task", "validation rows held out of the training rows", default=0),
    Column("n_test", "count", "task", "test rows evaluated", default=np.nan),
    Column("n_test_excluded", "count", "task", "test rows excluded (task.unseen_test=exclude)", default=0),
    Column("nc1", "float", "task", "NC1 of the task's L2-normalised train features (textbook)", default=np.nan),
    Column("nc1_ref", "float", "task", "NC1 with the reference implementation's centring", default=np.nan),
    # identity and provenance
    Column("run_hash", "str", "provenance", "hash of the cell and the canonical method (resume key)", default=""),
    Column("cell_hash", "str", "provenance", "hash of the cell", default=""),
    Column("feature_key", "str", "provenance", "feature-cache key of the feature set", default=""),
    Column("status", "str", "provenance", "ok or failed", default="ok"),
    Column("error", "str", "provenance", "the error of a failed run", default=""),
    Column("device", "str", "provenance", "device the run used", default=""),
    Column("created_at", "str", "provenance", "UTC time the row was made (ISO 8601)", default=""),
    Column("versions", "str", "provenance", "library versions (JSON)", default=""),
)

BY_NAME = {c.name: c for c in COLUMNS}
COLUMN_NAMES = [c.name for c in COLUMNS]
REQUIRED_COLUMNS = [c.name for c in COLUMNS if c.required]
#: The columns of each role, in table order.
CELL_COLUMNS = [c.name for c in COLUMNS if c.role == "cell"]
STAGE_COLUMNS = [c.name for c in COLUMNS if c.role == "stage"]
#: The metric columns (a failed run's are NaN, no proxies, so its part file has the same columns).
METRIC_COLUMNS = [c.name for c in COLUMNS if c.role == "metric"]
#: The scalar numbers of a run that trackers log as metrics (its metrics and its task's sizes and NC1).
SCALAR_METRICS = [c.name for c in COLUMNS if c.role in ("metric", "task") and not c.kind.endswith("list")]
FAILED_METRICS: dict[str, Any] = {**{c: float("nan") for c in METRIC_COLUMNS}, "per_class_f1": [], "n_proxies": 0,
                                  "proxies_per_class": []}
NO_NC1 = {"nc1": float("nan"), "nc1_ref": float("nan")}
ARROW_SCHEMA = pa.schema([(c.name, _ARROW[c.kind]) for c in COLUMNS])


def to_arrow(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table with the schema's types and order; a key the schema does not know is a bug
    (it would be dropped silently), so it raises."""
    unknown = {key for row in rows for key in row} - BY_NAME.keys()
    if unknown:
        raise ValueError(f"result rows carry columns the schema does not define: {sorted(unknown)} "
                         "(add them to imprint_bench/schema.py)")
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def dedupe_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run_hash: an ok row over a failed one, then the newest (``created_at``); rows without a
    hash (hand-made tables) are all kept. The order of the remaining rows is kept."""
    df = df.reset_index(drop=True)
    if "run_hash" not in df.columns:
        return df
    hashes = df["run_hash"].astype(object).where(df["run_hash"].notna(), "").astype(str)
    has = hashes != ""
    if not hashes[has].duplicated().any():
        return df
    rank = pd.DataFrame({"ok": df["status"].eq("ok") if "status" in df else True,
                         "at": df["created_at"].astype(str) if "created_at" in df else "", "hash": hashes})
    keep = rank[has].sort_values(["ok", "at"], kind="stable").drop_duplicates("hash", keep="last").index
    return df.loc[df.index.isin(keep) | ~has].reset_index(drop=True)


def missing_required(columns: list[str]) -> list[str]:
    """Required columns a table lacks."""
    return [c for c in REQUIRED_COLUMNS if c not in columns]


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every schema column present (defaults where missing or null) and in-memory dtypes:
    str → str ("" for null; mapping ``none``, status ``ok`` when empty), int → int (-1 for null),
    float/count → float. Unknown extra columns are kept as they are."""
    out = df.copy()
    for column in COLUMNS:
        if column.name not in out.columns:
            out[column.name] = [column.default] * len(out) if column.kind.endswith("list") else column.default
        values = out[column.name]
        if column.kind == "str":
            text = values.astype(object).where(values.notna(), "").astype(str)
            out[column.name] = text.where(text != "", column.default) if column.default else text
        elif column.kind == "int":
            out[column.name] = pd.to_numeric(values, errors="coerce").fillna(-1).astype(int)
        elif column.kind in ("float", "count"):
            out[column.name] = pd.to_numeric(values, errors="coerce").astype(float).fillna(column.default)
    return out


def columns_markdown() -> str:
    """The schema as a Markdown table (name, type, meaning)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.kind}{' (required)' if c.required else ''} | {c.doc} |" for c in COLUMNS]
    return "\n".join(lines)
