"""Numbers published for Westerhoff et al., "Robust Weight Imprinting" (TMLR 2025), in one place.

Every constant names its source. The tags follow ``shared/reference/paper_results.md`` §0:

- [R] README of github.com/DATEXIS/IMPRINT at HEAD 8f19bcd ("in line with TMLR publication");
- [N] stored outputs of the authors' ``analysis/analysis.ipynb``;
- [S] data parsed from the README figure ``var_num_proxies_vs_datasets_kmeans_Qi.svg`` (Fig. 11b), ±0.02 pp.

The report compares against these values only when the results are the paper's own setting
(see :func:`is_paper_setting`); they are never used in any computation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Table 1, "Avg. acc. %" (mean over 48 groups of the seed median). Source: [R], paper_results.md §2.1.
TABLE1_ACC: dict[str, float] = {
    "qi": 86.79,
    "hosoda": 82.90,
    "janson": 86.64,
    "ours": 91.06,
    "oracle": 94.54,
}

#: Display names of the Table-1 rows, as in the paper.
TABLE1_NAMES: dict[str, str] = {
    "qi": "Qi et al. (2018)",
    "hosoda": "Hosoda et al. (2024)",
    "janson": "Janson et al. (2022)",
    "ours": "Ours (k-means, k=20)",
    "oracle": "Oracle (least squares)",
}

#: Spread of "Ours" over the 48 groups as printed by the notebook. Source: [N], paper_results.md §2.1.
TABLE1_OURS_STD = 6.21
TABLE1_OURS_STDERR = 0.90
TABLE1_N_GROUPS = 48

#: CD-diagram average ranks among the five Table-1 methods (dense ties). Source: [N], spec §9.1.
TABLE1_CD_RANKS: dict[str, float] = {"oracle": 1.00, "ours": 2.00, "qi": 3.67, "janson": 3.92, "hosoda": 4.27}

#: The paper's Table-1 setting: 4 backbones × 3 datasets × 4 task splits, no label mapping. Source: [R][C].
PAPER_BACKBONES = ("resnet18", "resnet50", "vit_b_16", "swin_b")
PAPER_DATASETS = ("MNIST", "FashionMNIST", "CIFAR-10")
PAPER_TASKS = ("all", "even", "odd", "short")

#: AGG study, k-means k=20, L2/L2/L2, best distance/weighting per (agg, m). Source: [N], §2.2.
AGG_KMEANS20_ACC: dict[tuple[str, int], float] = {
    ("max", -1): 91.06,
    ("mnn", 1): 91.06,
    ("mnn", 3): 90.59,
    ("mnn", 5): 90.12,
    ("mnn", 20): 87.05,
    ("mnn", 50): 84.23,
}

#: k-means (L2/L2/L2, max), task ``all``, accuracy (%) for k = 1..15, median over 3 seeds.
#: Source: [S], paper_results.md §2.3 (Fig. 11b data), copied verbatim.
_KMEANS_K_TEXT = """
resnet18 MNIST        84.64 85.41 87.24 87.94 88.95 89.75 90.04 90.34 91.00 91.00 91.36 91.49 91.86 92.08 92.19
resnet18 FashionMNIST 77.93 78.61 79.81 80.76 81.18 81.44 81.91 81.84 82.27 82.38 82.52 82.87 82.87 83.32 83.45
resnet18 CIFAR-10     75.20 75.22 76.14 76.64 76.89 77.33 77.76 77.97 78.22 78.56 78.57 78.89 78.80 79.04 79.26
resnet18 CombiDigits  35.39 34.12 47.73 45.86 47.15 46.64 45.63 47.43 47.04 47.42 48.03 48.24 48.56 49.07 48.91
resnet50 MNIST        77.64 79.07 81.78 83.93 84.45 85.31 85.44 86.04 86.40 86.66 86.84 87.05 87.25 87.74 87.84
resnet50 FashionMNIST 75.75 77.21 78.99 79.42 80.00 80.35 81.28 81.36 81.84 82.03 82.27 82.71 82.57 82.71 82.63
resnet50 CIFAR-10     78.14 78.97 79.10 79.78 79.88 80.46 80.88 81.08 81.33 81.31 81.54 81.55 81.59 81.59 81.85
resnet50 CombiDigits  36.07 40.13 44.17 41.83 43.00 43.21 44.79 44.27 44.76 44.94 45.65 45.85 46.15 46.30 46.05
vit_b_16 MNIST        84.10 84.57 86.88 87.31 88.30 88.84 89.29 89.44 89.72 90.40 90.45 90.79 90.96 91.14 91.41
vit_b_16 FashionMNIST 78.65 79.90 80.71 80.80 81.68 82.04 82.68 83.06 83.21 83.15 83.49 83.50 83.77 84.04 84.07
vit_b_16 CIFAR-10     90.54 90.41 90.95 90.90 91.17 91.40 91.64 91.67 91.74 91.87 92.07 92.06 92.13 92.07 92.14
vit_b_16 CombiDigits  36.55 43.58 44.46 42.16 43.44 42.56 42.51 43.00 42.79 43.58 45.32 44.41 43.77 44.17 44.67
swin_b   MNIST        76.19 75.68 78.48 80.02 80.99 81.67 82.35 82.88 83.05 83.65 83.41 83.76 84.50 84.65 84.97
swin_b   FashionMNIST 77.02 79.19 80.45 81.36 81.27 81.41 81.85 82.17 82.60 82.56 82.56 82.82 82.96 82.80 83.11
swin_b   CIFAR-10     89.71 89.60 90.20 90.13 90.37 90.54 90.55 90.54 90.92 90.88 90.95 91.05 91.06 91.12 91.04
swin_b   CombiDigits  29.63 33.77 41.53 36.98 38.56 37.49 36.95 36.35 36.50 37.09 37.45 38.04 37.95 38.80 38.39
"""

#: ImageNet "d in 1" (k-means L2/L2/L2, max): backbone, d, acc at k=1, acc at k=d (mean over 10 remappings).
#: Source: [S], paper_results.md §2.6, copied verbatim.
_D_IN_1_TEXT = """
resnet18 1 93.50 93.50
resnet18 2 85.21 91.06
resnet18 3 78.35 88.96
resnet18 4 70.84 86.25
resnet18 5 66.00 84.08
resnet18 10 48.71 78.58
resnet50 1 96.20 96.20
resnet50 2 91.07 94.77
resnet50 5 74.88 90.02
resnet50 10 58.23 85.17
vit_b_16 1 97.04 97.04
vit_b_16 2 95.85 96.49
vit_b_16 5 91.86 94.17
vit_b_16 10 87.31 91.16
swin_b 1 98.20 98.20
swin_b 2 97.62 97.91
swin_b 5 94.41 96.28
swin_b 10 90.66 94.50
"""


def _parse_rows(text: str, n_keys: int) -> dict[tuple, tuple[float, ...]]:
    """Rows of whitespace-separated fields: the first ``n_keys`` form the key, the rest are floats."""
    out: dict[tuple, tuple[float, ...]] = {}
    for line in text.strip().splitlines():
        parts = line.split()
        key = tuple(int(p) if p.isdigit() else p for p in parts[:n_keys])
        out[key] = tuple(float(v) for v in parts[n_keys:])
    return out


#: (backbone, dataset) → accuracies for k = 1..15 (index i is k = i + 1).
KMEANS_K_CURVES: dict[tuple[str, str], tuple[float, ...]] = _parse_rows(_KMEANS_K_TEXT, 2)  # type: ignore[assignment]
#: (backbone, d) → (acc at k=1, acc at k=d).
D_IN_1_ACC: dict[tuple[str, int], tuple[float, float]] = _parse_rows(_D_IN_1_TEXT, 2)  # type: ignore[assignment]

#: NC1 with the reference's centring quirk, L2-normalised train features, task ``all``.
#: Source: [N], paper_results.md §2.8 / spec §7.3 (notebook prints "CIFAR10" for CIFAR-10).
NC1_REF: dict[tuple[str, str], float] = {
    ("vit_b_16", "FashionMNIST"): 1.954,
    ("vit_b_16", "CIFAR-10"): 0.4275,
    ("vit_b_16", "CombiDigits"): 10.668,
    ("swin_b", "MNIST"): 7.510,
    ("swin_b", "FashionMNIST"): 2.043,
    ("swin_b", "CIFAR-10"): 0.431,
    ("swin_b", "CombiDigits"): 36.963,
}

#: Fig. 12: Spearman ρ between log10 NC1 and the accuracy gain of k-means k=5 over k=1 (56 points).
#: Source: [N], paper_results.md §2.8.
FIG12_SPEARMAN_ALL = 0.818
FIG12_R2_ALL = 0.356

CITATION = (
    'Westerhoff et al., "Robust Weight Imprinting: Insights from Neural Collapse and Proxy-Based '
    'Aggregation", TMLR 2025 (arXiv 2503.14572); numbers from the DATEXIS/IMPRINT README and notebook'
)


def canon_name(name: object) -> str:
    """Lower-case alphanumerics only, so ``CIFAR-10``, ``cifar10`` and ``CIFAR_10`` compare equal."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _subset(values: Iterable[object], allowed: Iterable[str]) -> bool:
    allowed_c = {canon_name(a) for a in allowed}
    vals = {canon_name(v) for v in values}
    return bool(vals) and vals <= allowed_c


def is_paper_setting(
    backbones: Iterable[object],
    datasets: Iterable[object],
    tasks: Iterable[object] = ("all",),
    mappings: Iterable[object] = ("none",),
) -> bool:
    """True when backbones, datasets and tasks are subsets of Table 1's and no label mapping is used."""
    return (
        _subset(backbones, PAPER_BACKBONES)
        and _subset(datasets, PAPER_DATASETS)
        and _subset(tasks, PAPER_TASKS)
        and {canon_name(m) for m in mappings} <= {"none", ""}
    )


def lookup(table: dict, backbone: object, dataset: object):
    """Look up a (backbone, dataset)-keyed constant with name canonicalisation; None if absent."""
    key = (canon_name(backbone), canon_name(dataset))
    for (b, d), v in table.items():
        if (canon_name(b), canon_name(d)) == key:
            return v
    return None
