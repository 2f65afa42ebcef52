"""A synthetic results table with every variation the report can show (for demos, docs and tests).

The accuracies follow a simple made-up model (more proxies help more on less collapsed features); they are
*not* real measurements. Validation accuracies (``val_acc``) are the test accuracy plus a bias per configuration
and group and binomial noise of the validation split's size, drawn from their own random stream, so choosing on
them is honest but imperfect (a positive optimism gap). ``python -m imprint_bench.report.synthetic OUT_DIR``
renders a sample report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from imprint_bench.identity import stable_hash
from imprint_bench.imprint.spec import PRESETS, GenSpec, MethodSpec
from imprint_bench.report.data import CONFIG_COLS
from imprint_bench.schema import FAILED_METRICS, conform

_BASE = {
    ("resnet18", "MNIST"): 84.6,
    ("resnet18", "CIFAR-10"): 75.2,
    ("resnet18", "CombiDigits"): 35.4,
    ("vit_b_16", "MNIST"): 84.1,
    ("vit_b_16", "CIFAR-10"): 90.5,
    ("vit_b_16", "CombiDigits"): 36.6,
    ("resnet18", "ImageNet"): 93.0,
    ("vit_b_16", "ImageNet"): 97.0,
}
_NC1 = {
    ("resnet18", "MNIST"): 2.0,
    ("resnet18", "CIFAR-10"): 2.3,
    ("resnet18", "CombiDigits"): 14.0,
    ("vit_b_16", "MNIST"): 2.8,
    ("vit_b_16", "CIFAR-10"): 0.43,
    ("vit_b_16", "CombiDigits"): 10.7,
    ("resnet18", "ImageNet"): 0.38,
    ("vit_b_16", "ImageNet"): 0.14,
}
_TASK_BONUS = {"all": 0.0, "even": 3.0, "odd": 2.0, "short": 7.0}
#: Presets follow the same model as the sweeps: (GEN, k, offset).
_PRESET_MODEL = {
    "qi": ("mean", 1, 0.0),
    "hosoda": ("mean", 1, -4.0),
    "janson": ("mean", 1, -0.2),
    "ours": ("kmeans", 20, 0.0),
    "oracle": ("all", -1, 2.5),
}
_KEY = ("norm_pre", "gen", "k", "norm_post", "norm_inf", "agg", "m", "distance", "weighting")
VAL_FRACTION = 0.2  # of the training rows, as task.val_fraction=0.2 (full-data runs)
VAL_PER_CLASS = 5  # validation rows per class of a few-shot run, as task.val_per_class=5
VAL_BIAS_SD = 0.6  # spread (points) of a configuration's validation-vs-test bias within a group


def _row(cfg: dict, **kw: object) -> dict:
    row = {
        **MethodSpec(gen=GenSpec("kmeans", 1)).to_flat(),  # l2/l2/l2, max
        "lam": np.nan,
        "shots": -1,
        "mapping": "none",
        "method": "custom",
    }
    row.update(cfg)
    row.update(kw)
    for name, preset in PRESETS.items():  # label rows as the runner does (spec.preset_name)
        flat = preset.canonical().to_flat()
        if all(flat[c] == row[c] for c in _KEY):
            row["method"] = name
    return row


def _preset_cfg(name: str) -> dict:
    flat = PRESETS[name].canonical().to_flat()
    flat["lam"] = np.nan if flat["lam"] is None else flat["lam"]
    return _row({**flat, "method": name})


def _acc(
    rng: np.random.Generator,
    bb: str,
    ds: str,
    task: str,
    gen: str,
    k: int,
    nc1: float,
    d: int = 1,
    shots: int = -1,
) -> float:
    """Made-up accuracy: base + multi-proxy gain growing with log NC1 (and d), saturating in k."""
    base = _BASE[(bb, ds)] + _TASK_BONUS.get(task, 0.0) - (6.0 * (d - 1) if ds == "ImageNet" else 0.0)
    gain_max = max(0.5, 4.0 + 5.0 * np.log10(nc1) + (3.0 * (d - 1) if ds == "ImageNet" else 0.0))
    if shots > 0 and gen == "kmeans" and k >= shots:  # each sample its own cluster: the same as "all"
        gen = "all"
    kk = 40 if k == -1 else k
    if gen == "kmeans":
        base += gain_max * (1 - np.exp(-(kk - 1) / max(2.0, d)))
    elif gen == "kmedoids":
        base += 0.6 * gain_max * (1 - np.exp(-(kk - 1) / 6)) - 8
    elif gen == "all":
        base += gain_max * 0.85
    if shots > 0:  # fewer samples: lower accuracy, many proxies suffer most
        base -= (25 + 0.4 * min(kk, shots)) / np.sqrt(shots)
    return float(np.clip(base + rng.normal(0, 0.4 if gen in ("kmeans", "kmedoids") else 0.05), 1, 99.9))


def synthetic_results(
    seed: int = 0, n_seeds: int = 3, n_fail: int = 3, small: bool = False, validation: bool = True
) -> pd.DataFrame:
    """Build the table: presets, k sweeps, an AGG study, few-shot curves, d-in-1 tasks and NC1 values.

    ``small=True`` keeps one backbone and fewer settings (a few hundred rows, for tests); ``validation=False``
    leaves ``val_acc`` empty (runs without a validation split). The other columns do not depend on it.
    """
    rng = np.random.default_rng(seed)
    val_rng = np.random.default_rng([seed, 1])  # a stream of its own: the other numbers stay as they were
    backbones = ["resnet18"] if small else ["resnet18", "vit_b_16"]
    datasets = ["MNIST", "CIFAR-10"]
    tasks = ["all", "short"] if small else ["all", "even", "odd", "short"]
    seeds = [17121997, 123987, 12412312, 14057, 994348][:n_seeds]
    ks = [1, 5, 10] if small else [1, 2, 3, 5, 10, 20, 50]
    cells: list[tuple[dict, dict]] = []  # (config, context)
    for bb in backbones:
        for ds in [*datasets, "CombiDigits"]:
            for task in tasks if ds != "CombiDigits" else ["all"]:
                ctx = {"backbone": bb, "dataset": ds, "task": task, "experiment": "table1"}
                if ds != "CombiDigits":
                    cells += [(_preset_cfg(p), ctx) for p in PRESETS]
                cells += [
                    (_row({"gen": g, "k": k}), {**ctx, "experiment": "k_sweep"})
                    for g in ("kmeans", "kmedoids")
                    for k in ks
                ]
                cells += [
                    (_row({"gen": "mean", "k": 1}), {**ctx, "experiment": "k_sweep"}),
                    (_row({"gen": "all", "k": -1}), {**ctx, "experiment": "k_sweep"}),
                ]
                for m in [1, 5] if small else [1, 3, 5, 20, 50]:
                    for dist in ("euclidean", "cosine"):
                        for w in ["uniform"] if m == 1 else ["uniform", "distance"]:
                            cells.append(
                                (
                                    _row(
                                        {
                                            "gen": "kmeans",
                                            "k": 20,
                                            "agg": "mnn",
                                            "m": m,
                                            "distance": dist,
                                            "weighting": w,
                                        }
                                    ),
                                    {**ctx, "experiment": "agg"},
                                )
                            )
        for ds in datasets:
            for shots in [2, 10, 50] if small else [1, 2, 5, 10, 20, 50, 100, 400]:
                for g, k in [("mean", 1), ("kmeans", 5), ("kmeans", 20), ("all", -1)]:
                    kk = min(k, shots) if k > 0 else k
                    cells.append(
                        (
                            _row({"gen": g, "k": kk, "shots": shots}),
                            {"backbone": bb, "dataset": ds, "task": "all", "experiment": "few_shot"},
                        )
                    )
        for d in [1, 3] if small else [1, 2, 3, 5, 10]:
            for v in range(2 if small else 3):
                for k in range(1, (6 if small else 13)):
                    cells.append(
                        (
                            _row({"gen": "kmeans", "k": k, "mapping": f"map{d}-{v}"}),
                            {"backbone": bb, "dataset": "ImageNet", "task": "all", "experiment": "d_in_1"},
                        )
                    )
    seen: set[tuple] = set()
    unique = []
    for cfg, ctx in cells:  # one run per configuration and context, as the runner's hash dedup
        key = (*(cfg[c] for c in (*_KEY, "shots", "mapping")), ctx["backbone"], ctx["dataset"], ctx["task"])
        if key not in seen:
            seen.add(key)
            unique.append((cfg, ctx))
    rows = []
    n_seeds_few = min(5, max(n_seeds, 1))
    for cfg, ctx in unique:
        row_seeds = seeds if ctx["experiment"] != "few_shot" else [14057, 994348, 23092007, 123456, 98765][:n_seeds_few]
        for s in row_seeds:
            rows.append(_finish(rng, {**cfg, **ctx, "seed": s}))
    if validation:
        _add_validation(val_rng, rows)
    if n_fail:
        for i in rng.choice(len(rows), size=min(n_fail, len(rows)), replace=False):
            rows[i].update(FAILED_METRICS, status="failed",
                           error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (synthetic failure)")
    df = pd.DataFrame(rows)
    return conform(df)


def _finish(rng: np.random.Generator, row: dict) -> dict:
    bb, ds, task = row["backbone"], row["dataset"], row["task"]
    d = int(row["mapping"][3:].split("-")[0]) if row["mapping"].startswith("map") else 1
    nc_true = _NC1[(bb, ds)] * (d if ds == "ImageNet" else 1) * (1.0 if task == "all" else 0.8)
    gen, k, shots = row["gen"], int(row["k"]), int(row["shots"])
    if row["method"] in PRESETS:
        g, kk, offset = _PRESET_MODEL[row["method"]]
        acc = _acc(rng, bb, ds, task, g, min(kk, shots) if shots > 0 else kk, nc_true, shots=shots) + offset
    else:
        acc = _acc(rng, bb, ds, task, gen, k, nc_true, d, shots)
        if row["agg"] == "mnn":
            acc -= 0.08 * (row["m"] - 1) + (0.3 if row["distance"] == "cosine" else 0.0)
            acc += 0.2 if row["weighting"] == "distance" else 0.0
    n_classes = 10 if task == "all" else (3 if task == "short" else 5)
    n_train = n_classes * (shots if shots > 0 else 6000)
    flat = {c: row[c] for c in (*CONFIG_COLS, "backbone", "dataset", "mapping", "task", "seed")}
    run_hash = stable_hash(flat)
    acc = float(np.clip(acc, 0.5, 99.9))
    return {
        "run_hash": run_hash,
        "status": "ok",
        "error": "",
        **row,
        "acc": acc,
        "macro_f1": acc - abs(rng.normal(0.5, 0.2)),
        "balanced_acc": acc - abs(rng.normal(0.2, 0.1)),
        "per_class_f1": list(np.clip(acc + rng.normal(0, 3, n_classes), 0, 100).round(2)),
        "n_classes": n_classes,
        "n_train": n_train,
        "n_test": n_classes * 1000,
        "n_proxies": n_classes * (n_train // n_classes if k == -1 else k),
        "gen_s": 0.002 if gen == "mean" else 0.05 * max(k, 1),
        "infer_s": 0.01,
        "nc1": nc_true * 0.7,
        "nc1_ref": nc_true,
        "created_at": "2026-11-27T12:00:00",
        "versions": json.dumps({"torch": "2.14.1", "imprint_bench": "0.1.0"}),
    }


def _add_validation(rng: np.random.Generator, rows: list[dict]) -> None:
    """Give every row ``n_val`` and a ``val_acc``: test accuracy + a bias shared by the seeds of a configuration in
    a group + binomial noise of ``n_val`` rows (before failures are drawn, which blank it)."""
    bias: dict[str, float] = {}
    for row in rows:
        shots, n_classes = int(row["shots"]), int(row["n_classes"])
        n_val = n_classes * (VAL_PER_CLASS if shots > 0 else round(row["n_train"] * VAL_FRACTION / (1 - VAL_FRACTION)
                                                                 / n_classes))
        unit = stable_hash({c: row[c] for c in (*CONFIG_COLS, "backbone", "dataset", "mapping", "task")})
        if unit not in bias:
            bias[unit] = float(rng.normal(0, VAL_BIAS_SD))
        p = row["acc"] / 100
        noise = 100 * np.sqrt(p * (1 - p) / n_val) * rng.normal()
        row["n_val"] = n_val
        row["val_acc"] = float(np.clip(row["acc"] + bias[unit] + noise, 0.0, 100.0))


def main(argv: list[str] | None = None) -> None:
    """Render a sample report from synthetic data: ``python -m imprint_bench.report.synthetic OUT_DIR``."""
    from imprint_bench.report import build_report

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "report_sample")
    out.mkdir(parents=True, exist_ok=True)
    df = synthetic_results()
    df.to_parquet(out / "results.parquet", index=False)
    print(build_report(df, out / "report", title="imprint_bench report (synthetic sample data)"))


if __name__ == "__main__":
    main()
