"""Model selection on validation data: choose configurations on ``val_acc``, report their test accuracy.

The paper and its reference code pick their best configurations (k, m, NORM, λ) on the test accuracies they
report, which flatters them. Runs with ``task.val_fraction`` (or ``task.val_per_class``) also record
``val_acc``, the accuracy on a stratified validation split carved from the task's training rows (GEN never sees
it). Here a configuration is chosen per unit (a group, a backbone, a GEN family in a group, ...) on validation
accuracy alone, and its *test* accuracy is shown beside the test-selected optimum; the difference is the
optimism gap (test-selected test acc − validation-selected test acc, ≥ 0 on the same candidates).

:func:`choose_best` is the only chooser of configurations: it receives a frame of the unit columns, the candidates and
one score column, so a selection on validation cannot read a test accuracy. :func:`describe_search_choice` names the
run a tuning sweep selects on its validation metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from imprint_bench.imprint.registry import config_text
from imprint_bench.report.data import GROUP_COLS

VAL = "val_acc"
#: The override that gives runs a validation split.
HOW_TO_VALIDATE = "task.val_fraction=0.2"
#: The label of a choice made on test accuracies.
TEST_SELECTED = "selected on test data (optimistic)"


@dataclass(frozen=True)
class Coverage:
    """How many successful rows carry a validation accuracy."""

    n_rows: int = 0
    n_validated: int = 0

    @property
    def available(self) -> bool:
        return self.n_validated > 0

    @property
    def n_excluded(self) -> int:
        return self.n_rows - self.n_validated


def coverage(ok: pd.DataFrame) -> Coverage:
    """Rows of ``ok`` and those among them with a finite ``val_acc``."""
    return Coverage(len(ok), int(np.isfinite(ok[VAL].to_numpy(float)).sum()))


def validated_rows(ok: pd.DataFrame) -> pd.DataFrame:
    """The rows with a validation accuracy: the candidates of every selection on validation data."""
    return ok[np.isfinite(ok[VAL].to_numpy(float))]


def coverage_notes(cov: Coverage) -> list[str]:
    """One line when the results hold no validation accuracies, one when some rows lack them; else none."""
    if not cov.available:
        return [
            f"No validation accuracies in the results (`val_acc` is empty: the runs had no validation split), so "
            f"'best' configurations are {TEST_SELECTED}; rerun with `{HOW_TO_VALIDATE}` to select on validation data."
        ]
    if cov.n_excluded:
        return [
            f"{cov.n_excluded} of {cov.n_rows} successful rows have no validation accuracy (runs without "
            "`task.val_fraction`): they are left out of every selection on validation data and of its "
            "test-selected comparison."
        ]
    return []


def choose_best(scores: pd.DataFrame, by: list[str], candidate: str = "label") -> pd.DataFrame:
    """Per ``by`` unit, the ``candidate`` with the highest score (ties: the smallest candidate).

    ``scores`` holds the ``by`` columns, ``candidate`` and exactly one score column, so a chooser sees nothing
    else (in particular no test accuracy when it selects on validation). Rows with a NaN score are ignored.
    """
    score = [c for c in scores.columns if c not in (*by, candidate)]
    if len(score) != 1:
        raise ValueError(f"choose_best needs exactly one score column beside {[*by, candidate]}, got {score}")
    valid = scores.dropna(subset=score)
    ordered = valid.sort_values([*by, score[0], candidate], ascending=[*(True for _ in by), False, True])
    return ordered.groupby(by, sort=True, dropna=False).head(1).reset_index(drop=True)


def unit_scores(medians: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """``by`` + label + ``value``: the mean over each unit's groups of the seed medians of ``value``, among the
    labels that cover the most groups of the unit (one group per unit when ``by`` includes every group column)."""
    cols = list(dict.fromkeys([*GROUP_COLS, *by, "label"]))
    sub = medians[[*cols, value]].dropna(subset=[value])
    per = sub.groupby([*by, "label"], dropna=False, sort=False)[value].agg(["mean", "size"]).reset_index()
    widest = per.groupby(by, dropna=False)["size"].transform("max")
    return per[per["size"] == widest].rename(columns={"mean": value})[[*by, "label", value]]


def selection_table(medians: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` unit: the configuration chosen on validation (``val_selected``, its ``val_acc`` and
    ``test_acc``), the test-selected optimum (``test_selected``, ``test_selected_acc``) and the
    ``optimism_gap`` = test_selected_acc − test_acc. ``medians``: seed medians of rows with validation data."""
    test = unit_scores(medians, by, "acc")
    on_val = choose_best(unit_scores(medians, by, VAL), by).rename(columns={"label": "val_selected"})
    on_test = choose_best(test, by).rename(columns={"label": "test_selected", "acc": "test_selected_acc"})
    out = on_val.merge(test.rename(columns={"label": "val_selected", "acc": "test_acc"}), on=[*by, "val_selected"],
                       how="left")
    out = out.merge(on_test, on=by, how="left")
    out["optimism_gap"] = out["test_selected_acc"] - out["test_acc"]
    return out[[*by, "val_selected", VAL, "test_acc", "test_selected", "test_selected_acc", "optimism_gap"]]


def tuned_matrix(medians: pd.DataFrame, family: str) -> pd.DataFrame:
    """Blocks (groups) × values of ``family`` (e.g. ``gen``): the test accuracy of the configuration each family
    chooses on validation within each group (NaN where a family has no run in a group)."""
    sel = selection_table(medians, [*GROUP_COLS, family])
    mat = sel.pivot_table(index=GROUP_COLS, columns=family, values="test_acc", aggfunc="first")
    mat.columns.name = None
    return mat


def gap_summary(table: pd.DataFrame) -> dict[str, float]:
    """Mean and largest optimism gap, and the share of units where both selections agree."""
    gaps = table["optimism_gap"].to_numpy(float)
    same = (table["val_selected"] == table["test_selected"]).to_numpy()
    return {"n": len(table), "mean_gap": float(np.mean(gaps)) if len(gaps) else np.nan,
            "max_gap": float(np.max(gaps)) if len(gaps) else np.nan,
            "agree": float(np.mean(same)) if len(same) else np.nan}


def describe_search_choice(table: pd.DataFrame, metric: str) -> str:
    """The configuration a tuning sweep selects (highest ``metric``, a validation column; ties: the earliest run)
    with its test accuracy, which played no part in the choice."""
    ok = table[table["status"].eq("ok") & table[metric].notna()].sort_values("created_at", kind="stable")
    if ok.empty:
        return f"no run has {metric}: nothing to select"
    best = ok.loc[ok[metric].idxmax()]
    ties = int((ok[metric] == best[metric]).sum()) - 1
    spec = config_text(best)
    tie_note = f" ({ties} other runs tie on {metric}; the earliest is kept)" if ties else ""
    return (f"selected on {metric}: {spec} on {best['backbone']} / {best['dataset']} / {best['task']}: "
            f"{metric} {best[metric]:.2f} %, test acc {best['acc']:.2f} % (test data played no part in the "
            f"choice){tie_note}")
