"""Reliability round 3: no results lost or merged wrongly, strict values, clean failures on full or read-only disks.

Most cases run in-process (``run_job`` on a composed config, ``collect``); the CLI's one-line handling of a
ConfigError is covered in test_reliability.py and test_registry.py.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from imprint_bench.errors import ConfigError, StorageError
from imprint_bench.plan import plan_job
from imprint_bench.results import collect, read_part, write_part
from imprint_bench.runner import run_job

SMALL = ("dataset=synthetic", "dataset.n_classes=4", "dataset.dim=8", "dataset.n_train_per_class=40",
         "dataset.n_test_per_class=20", "nc1=false")


@pytest.fixture
def sweep(compose_cfg, tmp_path):
    """Run a small job (2 configurations × 2 seeds in 2 cells) in-process; returns (run, experiment folder)."""

    def run(*overrides: str, seeds=(1, 2)):
        for seed in seeds:
            cfg = compose_cfg(*SMALL, f"paths.root={tmp_path}", "experiment_name=safety", f"seed={seed}",
                              "grid={method:[qi,ours]}", *overrides)
            run_job(cfg)
        return tmp_path / "outputs/results/safety"

    return run


def _parts(root: Path) -> list[Path]:
    return sorted((root / "runs").glob("*/*.parquet"))


# 1. collect and report never shrink a table silently; a missing experiment creates nothing ---------------------
def test_collect_keeps_a_finished_table_without_parts_and_names_the_experiments_there(sweep, tmp_path):
    root = sweep()
    assert len(collect(root).table) == 4
    copied = root.parent / "copied"
    copied.mkdir()
    shutil.copy(root / "results.parquet", copied)  # results from another machine: no runs/
    summary = collect(copied)
    assert len(summary.table) == 4 and len(pd.read_parquet(copied / "results.parquet")) == 4
    with pytest.raises(ConfigError, match=r"no results for experiment 'safty' .*experiments in .*: copied, safety"):
        collect(root.parent / "safty")
    assert not (root.parent / "safty").exists()


# 2. completion is checked against the parts; a rerun recomputes exactly what is missing ---------------------------
def test_a_deleted_part_of_a_complete_cell_is_recomputed_and_counted(sweep):
    root = sweep()
    before = collect(root).table.set_index("run_hash")["acc"]
    victim = _parts(root)[0]
    lost = set(pd.read_parquet(victim)["run_hash"])
    victim.unlink()
    (root / "results.parquet").unlink()  # no earlier table to keep rows from
    summary = collect(root)
    assert len(summary.table) == 4 - len(lost)
    assert sum(expected - found for found, expected in summary.missing.values()) == len(lost)
    assert "expected runs are missing from the part files of 1 cells marked complete" in summary.describe()
    sweep()  # the same command again
    after = collect(root)
    assert len(after.table) == 4 and not after.missing
    assert after.table.set_index("run_hash")["acc"].sort_index().equals(before.sort_index())


# 3. only parts carrying a valid digest are merged ----------------------------------------------------------------
def test_parts_without_a_valid_digest_are_listed_and_skipped(sweep):
    root = sweep()
    victim = _parts(root)[0]
    table = pq.read_table(victim)
    df = table.to_pandas()
    df["acc"] = 100.0  # an edited accuracy, its digest stripped
    pq.write_table(table.from_pandas(df, preserve_index=False).replace_schema_metadata(None), victim)
    foreign = victim.parent / "foreign.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign)
    summary = collect(root, write=False)
    assert len(summary.table) == 4 - len(df) and (summary.table["acc"] < 100).all()
    assert any("no rows digest" in c and str(victim) in c for c in summary.corrupted)
    assert any(str(foreign) in c for c in summary.corrupted)


# 4. work computed, then lost -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("seed=9223372036854775808", r"seed must be an integer, got 9223372036854775808 .*-2\^63 <= seed < 2\^63"),
    ("gen.k=true", "gen.k must be a positive integer"),
])
def test_values_that_cannot_be_written_are_refused_while_planning(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        plan_job(compose_cfg(*SMALL, override))


def test_a_full_results_disk_is_one_error_that_keeps_what_was_written(sweep, monkeypatch, tmp_path):
    import imprint_bench.results as results

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.pq, "write_table", full)
    with pytest.raises(StorageError, match="cannot write .* No space left on device; what was written before is kept"):
        sweep(seeds=(1,))
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_full_cache_disk_keeps_the_extracted_features_for_the_run(tmp_path, monkeypatch, caplog):
    from imprint_bench import features

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features, "_write_entry", full)
    digits = {"kind": "digits", "name": "digits", "subset": {"train": 50, "test": 20}}
    pixels = {"name": "pixels", "source": "pixels", "pretrained": False, "init_seed": 0}
    with caplog.at_level("WARNING"):
        got = features.extract_feature_set(digits, pixels, {}, tmp_path / "cache", tmp_path, "cpu")
    assert got.x_train.shape == (50, 64)
    assert any("kept in memory for this run only" in r.getMessage() for r in caplog.records)


def test_save_head_at_a_folder_or_unwritable_place_fails_before_any_work(compose_cfg, tmp_path):
    folder = tmp_path / "heads"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder; give a file path"):
        plan_job(compose_cfg(*SMALL, f"save_head={folder}"))
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be: unwritable even for root
    with pytest.raises(ConfigError, match="cannot write into"):
        plan_job(compose_cfg(*SMALL, f"save_head={blocked}/sub/head.safetensors"))
    assert not list(tmp_path.rglob("*.tmp"))


# 5. one task name, different contents: kept apart ----------------------------------------------------------------
def test_the_report_keeps_tasks_of_one_name_but_different_content_apart(sweep):
    from imprint_bench.report.data import separate_feature_sets

    root = sweep(seeds=(1,))
    sweep("task.classes=[0,1]", seeds=(1,))
    table = collect(root).table
    assert table["task"].unique().tolist() == ["all"] and table["task_key"].nunique() == 2
    out, notes = separate_feature_sets(table)
    assert sorted(out["task"].unique()) == sorted(f"all [{n} classes, {k}]" for n, k in
                                                  ((2, _key(table, 2)), (4, _key(table, 4))))
    assert len(notes) == 1 and "2 different tasks are labelled synthetic / synthetic / all" in notes[0]


def _key(table: pd.DataFrame, n_classes: int) -> str:
    return table.loc[table["n_classes"] == n_classes, "task_key"].iloc[0][:6]


# 6. loose values --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("overwrite=no", "overwrite must be true or false, got 'no'"),
    ("nc1=maybe", "nc1 must be true or false"),
    ("flush_every=0", "flush_every must be an integer >= 1"),
    ("flush_every=-1", "flush_every must be an integer >= 1"),
    ("+foo=bar", r"unknown config key\(s\) \['foo'\]"),
    ("++unknown=1", r"unknown config key\(s\) \['unknown'\]"),
    ("gen.lam=nan", "gen.lam must be a finite number"),
    ("gen.lam=inf", "gen.lam must be a finite number"),
    ("device=gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("experiment_name=null", "experiment_name must be a name"),
])
def test_loose_values_are_refused(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        plan_job(compose_cfg(*SMALL, "gen=ls", override))


def test_a_value_that_does_nothing_is_one_note(compose_cfg, caplog):
    with caplog.at_level("WARNING"):
        plan_job(compose_cfg(*SMALL, "agg=max", "agg.m=5", "gen=mean", "gen.k=3"))
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note:")]
    assert len(notes) == 1
    assert "gen.k=3 does nothing with gen.name=mean" in notes[0] and "agg.m/agg.weighting do nothing" in notes[0]


def test_more_shots_than_a_class_has_is_said_and_rows_record_what_was_used(compose_cfg, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        run_job(compose_cfg(*SMALL, f"paths.root={tmp_path}", "task.shots=60", "gen=mean"))
    assert any("shots=60, but 4 of 4 classes have fewer training rows (fewest: 40)" in r.getMessage()
               for r in caplog.records)
    row = collect(tmp_path / "outputs/results/adhoc").table.iloc[0]
    assert row.shots == 60 and row.n_train == 160


# 9. tracebacks instead of one line --------------------------------------------------------------------------
def test_an_unwritable_cache_and_a_planted_lock_symlink_are_one_line(tmp_path):
    from imprint_bench import features

    digits = {"kind": "digits", "name": "digits", "subset": {"train": 20, "test": 10}}
    pixels = {"name": "pixels", "source": "pixels", "pretrained": False, "init_seed": 0}
    blocked = tmp_path / "blocked"
    blocked.write_text("")  # a file where the cache folder should be
    with pytest.raises(ConfigError, match="the feature cache .* is not writable"):
        features.extract_feature_set(digits, pixels, {}, blocked / "cache", tmp_path, "cpu")
    cache = tmp_path / "cache"
    key = features.plan_features(digits, pixels, {}, tmp_path, features.torch.device("cpu")).extraction_key
    (cache / "features").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    (cache / "features" / f"{key}.lock").symlink_to(target)
    with pytest.raises(ConfigError, match="refusing to use the feature-cache lock .* symbolic link"):
        features.extract_feature_set(digits, pixels, {}, cache, tmp_path, "cpu")
    assert not target.exists()


def test_a_completion_marker_records_its_parts(sweep):
    root = sweep(seeds=(1,))
    marker = json.loads(next((root / "runs").glob("*/complete.json")).read_text())
    assert marker["n_runs"] == 2 and len(marker["parts"]) == 1


# 7. what a head file holds: printed escaped, loaded within bounds; 12. errors name the file and the field -------
@pytest.fixture
def head_file(tmp_path, mixture):
    from imprint_bench.imprint.head import ImprintedHead

    names = [f"c{i}" for i in range(9)] + ["\x1b[31mred\nline"]
    return ImprintedHead.fit(mixture.x_train, mixture.y_train, "qi", class_names=names).save(tmp_path / "h.safetensors")


def test_printed_names_are_escaped_and_absurd_names_refused(tmp_path, head_file):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from imprint_bench.errors import printable
    from imprint_bench.imprint.head import ImprintedHead

    assert printable("\x1b[31mred\nline") == "\\x1b[31mred\\nline" and printable("café 猫") == "café 猫"
    assert ImprintedHead.load(head_file).class_names[-1] == "\x1b[31mred\nline"  # kept as data, escaped on print
    with safe_open(str(head_file), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118
    for field, value, message in [
        ("class_names", json.dumps([f"c{i}" for i in range(9)] + ["x" * 5000]), "longest of 5000 characters"),
        ("norm_inf", "l3", "metadata field 'norm_inf': unknown NORM kind 'l3'"),
        ("agg", json.dumps({"name": "mnn", "m": 0, "distance": "cosine", "weighting": "uniform"}),
         "metadata field 'agg': agg.m must be an integer >= 1"),
        ("method", json.dumps({"gen": {"name": "mean", "kk": 1}}), "metadata field 'method': unknown gen keys"),
        ("class_names", "[not json", "metadata field 'class_names' is not valid JSON"),
    ]:
        bad = tmp_path / f"bad-{field}.safetensors"
        save_file(tensors, str(bad), metadata={**meta, field: value})
        with pytest.raises(ConfigError) as err:
            ImprintedHead.load(bad)
        assert str(bad) in str(err.value) and message in str(err.value), str(err.value)


# 8. images: size checked before decoding; an undecodable file is named --------------------------------------------
def test_a_huge_or_undecodable_image_is_one_line_naming_the_file(tmp_path):
    import numpy as np
    from PIL import Image

    from imprint_bench.data.containers import ImageFileDataset, ImageFiles, open_image
    from imprint_bench.data.transforms import Preprocess

    big = tmp_path / "big.png"
    Image.new("1", (12000, 12000)).save(big)  # 144 M pixels, a few KB on disk
    with pytest.raises(ConfigError, match=r"big.png is 12000×12000 = 144 M pixels, above the limit of 89 M"):
        open_image(big)
    broken = tmp_path / "broken.png"
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good)
    broken.write_bytes(good.read_bytes()[:400])  # a truncated PNG: the header reads, the pixels do not
    files = ImageFiles(tmp_path, ["good.png", "broken.png"], np.array([0, 1]))
    dataset = ImageFileDataset(files, Preprocess(8, 8, "bilinear", (0.5,) * 3, (0.5,) * 3, True))
    assert dataset[0].shape == (3, 8, 8)  # resized to 8×8
    with pytest.raises(ConfigError, match=r"(cannot decode|cannot read) image .*broken.png"):
        dataset[1]


def test_predict_refuses_a_missing_cuda_and_a_huge_image_in_one_line(tmp_path, head_file, capsys):
    from PIL import Image

    from imprint_bench.model import predict_main

    image = tmp_path / "big.png"
    Image.new("1", (12000, 12000)).save(image)
    with pytest.raises(SystemExit) as stop:
        predict_main([str(head_file), str(image), "--device", "gpu"])
    assert str(stop.value) == "error: --device: device must be auto, cpu, cuda or cuda:N, got 'gpu'"
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SystemExit) as stop:
            predict_main([str(head_file), str(image), "--device", "cuda"])
        assert "CUDA is not available here" in str(stop.value) and "head" not in str(stop.value)


# 9. a read-only root: one line before Hydra's traceback --------------------------------------------------------
@pytest.mark.slow
def test_an_unwritable_root_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    blocked = tmp_path / "file"
    blocked.write_text("")
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(blocked)}
    out = subprocess.run([sys.executable, "-m", "imprint_bench", "dataset=synthetic"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: cannot write the log folder") and len(out.stderr.splitlines()) == 1


# 12. a truncated .npz member is not called an object array -------------------------------------------------------
def test_a_truncated_npz_member_is_reported_as_truncated(tmp_path):
    import io
    import zipfile

    import numpy as np

    from imprint_bench.data.npz import load_npz_features

    def npy(array) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()

    path = tmp_path / "trunc.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X_train.npy", npy(np.zeros((100, 4), np.float32))[:200])
        archive.writestr("y_train.npy", npy(np.zeros(100, np.int64)))
        archive.writestr("X_test.npy", npy(np.zeros((10, 4), np.float32)))
        archive.writestr("y_test.npy", npy(np.zeros(10, np.int64)))
    with pytest.raises(ConfigError, match="X_train cannot be read .*truncated or damaged") as err:
        load_npz_features(path)
    assert "object array" not in str(err.value)


def test_a_job_without_a_terminal_logs_its_progress(caplog):
    from imprint_bench.runner import Progress

    class NoBar:
        disable = True

        def update(self, n: int) -> None:
            pass

    progress = Progress(NoBar(), total=10, every_s=0.0)
    with caplog.at_level("INFO"):
        for _ in range(3):
            progress(1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("progress: 3 of 10 runs done, 7 left")


def test_a_part_this_process_wrote_is_served_from_memory_until_the_file_changes(tmp_path, monkeypatch):
    from imprint_bench.schema import to_arrow

    rows = [{"run_hash": "a" * 16, "status": "ok", "acc": 91.5, "method": "qi"},
            {"run_hash": "b" * 16, "status": "ok", "acc": 88.0, "method": "ours"}]
    path = tmp_path / "runs" / "cell" / "part.parquet"
    write_part(rows, path)
    with monkeypatch.context() as patched:  # an unchanged part is not read again
        patched.setattr(pq, "ParquetFile", lambda *a, **k: pytest.fail("the part was read from disk"))
        assert read_part(path).equals(to_arrow(rows))
        assert read_part(path, columns=["acc"]).column("acc").to_pylist() == [91.5, 88.0]
    data = bytearray(path.read_bytes())
    at = data.index(b"qi")
    data[at:at + 2] = b"QI"  # a changed file (same size, new mtime) is read, and the damage is caught
    path.write_bytes(bytes(data))
    with pytest.raises((ValueError, OSError), match="digest|[Cc]hecksum|[Cc]orrupt"):
        read_part(path)
