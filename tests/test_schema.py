"""The one results schema: rows the CLI writes (ok and failed) conform to it and feed the report as they are;
parts carry a digest that catches any changed value; the docs list its columns."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_cli import run_cli

from imprint_bench.identity import canonical_json
from imprint_bench.results import read_part, write_part
from imprint_bench.schema import ARROW_SCHEMA, COLUMN_NAMES, REQUIRED_COLUMNS, conform, dedupe_runs, to_arrow

ROOT = Path(__file__).resolve().parent.parent


def test_cli_rows_ok_and_failed_feed_the_report_without_an_adapter(tmp_path, npz_file):
    features = ("dataset=features", f"dataset.path={npz_file}", "experiment_name=contract")
    assert run_cli(tmp_path, *features, "method=qi", "task=even").returncode == 0
    failing = run_cli(tmp_path, *features, "task.name=one", "task.classes=[3]", "gen=mean", "norm=none", "agg=mnn",
                      "agg.distance=mahalanobis")  # one proxy in all: a failed row
    assert failing.returncode == 0, failing.stderr
    folder = tmp_path / "outputs" / "results" / "contract"
    for part in (folder / "runs").glob("*/*.parquet"):
        assert pq.read_schema(part).remove_metadata() == ARROW_SCHEMA  # ok and failed parts alike
    table = pd.read_parquet(folder / "results.parquet")
    assert list(table.columns) == COLUMN_NAMES and sorted(table["status"]) == ["failed", "ok"]
    report = run_cli(tmp_path, "mode=report", "experiment_name=contract")
    assert report.returncode == 0, report.stderr
    text = (folder / "report" / "report.md").read_text()
    assert "failed" in text and "at least 2 proxies" in text


def test_unknown_row_keys_are_refused():
    with pytest.raises(ValueError, match="does not define: \\['accuracy'\\]"):
        to_arrow([{"backbone": "b", "accuracy": 1.0}])


def test_conform_fills_defaults_and_types():
    out = conform(pd.DataFrame({c: ["x"] for c in REQUIRED_COLUMNS}).assign(seed=["3"], k=[None], m=[2],
                                                                             acc=["91.5"], status=[""]))
    assert out.loc[0, "seed"] == 3 and out.loc[0, "k"] == -1 and out.loc[0, "acc"] == 91.5
    assert out.loc[0, "status"] == "ok" and out.loc[0, "mapping"] == "none" and out.loc[0, "lam"] == -1.0
    assert set(COLUMN_NAMES) <= set(out.columns)


def test_dedupe_keeps_the_ok_row_then_the_newest_and_rows_without_hash():
    df = pd.DataFrame({"run_hash": ["a", "a", "b", "b", "", ""], "status": ["ok", "failed", "ok", "ok", "ok", "ok"],
                       "created_at": ["1", "2", "1", "2", "1", "1"], "acc": [1, 2, 3, 4, 5, 6]})
    assert dedupe_runs(df)["acc"].tolist() == [1, 4, 5, 6]


def test_every_changed_value_of_a_part_is_caught(tmp_path):
    """Page checksums do not cover page headers; the rows digest covers every value, wherever the flip."""
    rows = [{"backbone": "b", "dataset": "d", "task": "all", "seed": 1, "acc": 90.0 + i, "run_hash": f"h{i}",
             "per_class_f1": [1.0, 2.0], "status": "ok"} for i in range(3)]
    part = tmp_path / "part.parquet"
    write_part(rows, part)
    data = part.read_bytes()
    original = canonical_json(pq.read_table(part).to_pylist())
    changed = 0
    for offset in range(0, len(data), 5):  # every 5th byte: headers, pages, footer all get hit
        flipped = bytearray(data)
        flipped[offset] ^= 0x10
        part.write_bytes(bytes(flipped))
        try:
            silently_changed = canonical_json(pq.read_table(part).to_pylist()) != original
        except Exception:
            continue  # the reader notices by itself
        if silently_changed:
            changed += 1
            with pytest.raises(Exception):  # noqa: B017 (checksum or digest: any read error is a catch)
                read_part(part)
    assert changed > 0


def test_architecture_lists_the_schema_columns():
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = re.search(r"Result columns \(.*?\): `([^`]+)`", text).group(1)
    assert listed.split(", ") == COLUMN_NAMES


def test_the_schema_prints_as_a_markdown_table():
    from imprint_bench.schema import columns_markdown

    lines = columns_markdown().splitlines()
    assert len(lines) == 2 + len(COLUMN_NAMES) and "| `acc` | float (required) | test accuracy, % |" in lines
