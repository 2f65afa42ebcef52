"""scripts/beyond_ours.py: candidates choose on validation, are compared with ours on test, and the verdict
says whether any clears +1 point with Wilcoxon–Holm significance."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import beyond_ours

CONFIG = {"norm_post": "l2", "agg": "max", "m": -1, "distance": "inner_product", "weighting": "uniform",
          "method": "custom", "seed": 1, "backbone": "b", "dataset": "d", "status": "ok"}


def _rows(gain: float, n_groups: int = 8) -> pd.DataFrame:
    rows = []
    for g in range(n_groups):
        base = 80.0 + g
        for pre, k, acc, val in (("l2", 20, base, base), ("cl2n", 20, base + gain, base + gain),
                                 ("cl2n", 5, base + 9, base - 5)):  # k=5: best on test, worst on validation
            rows.append({**CONFIG, "task": f"t{g}", "norm_pre": pre, "norm_inf": pre, "gen": "kmeans", "k": k,
                         "acc": acc, "val_acc": val, "run_hash": f"{g}-{pre}-{k}"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("gain", "verdict"), [(2.0, "**Yes:** CL2N (k=20)"), (0.5, "**No:**")])
def test_verdict_follows_validation_choices(tmp_path, capsys, gain, verdict):
    _rows(gain).to_parquet(tmp_path / "results.parquet")
    assert beyond_ours.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert verdict in out and (tmp_path / "beyond_ours_cd.png").is_file()
    table = pd.read_csv(tmp_path / "beyond_ours.csv").set_index("candidate")
    # CL2N, k on val picks k=20 on validation (k=5 would have won on test: +9)
    assert table.loc["CL2N, k on val", "Δ vs ours"] == pytest.approx(gain)


def test_no_results_is_one_line(tmp_path, capsys):
    assert beyond_ours.main([str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
