"""Growing a saved head (``imprint-bench-extend``): classes B added after A equal imprinting A∪B at once, and every
bad input is one line with exit code 2, before any work and without writing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imprint_bench.imprint.head import GrowthState, ImprintedHead
from imprint_bench.imprint.incremental import extend_head
from imprint_bench.imprint.spec import AggSpec, GenSpec, MethodSpec

ROOT = Path(__file__).resolve().parent.parent
NAMES = [f"c{i}" for i in range(8)]
PER_CLASS = ["qi", "ours", "hosoda", "janson",
             MethodSpec("l2", GenSpec("fps", 4), "l2", "l2", AggSpec("mnn", m=3, distance="cosine")),
             MethodSpec("none", GenSpec("all", -1), "none", "none", AggSpec("max"))]
JOINT = ["oracle", MethodSpec("l2", GenSpec("kls", 3), "l2", "l2", AggSpec("max"))]


@pytest.fixture(scope="module")
def rows() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.repeat_interleave(torch.arange(8), 40)
    x = torch.randn(320, 16, generator=gen) + 3 * torch.randn(8, 16, generator=gen)[y]
    return x, y


def grown_and_joint(rows, method) -> tuple[ImprintedHead, ImprintedHead, object]:
    x, y = rows
    joint = ImprintedHead.fit(x, y, method, class_names=NAMES, seed=5)
    first = ImprintedHead.fit(x[y < 5], y[y < 5], method, class_names=NAMES[:5], seed=5)
    ext = extend_head(first, [x[y == c] for c in range(5, 8)], NAMES[5:])
    return ext.head, joint, ext


@pytest.mark.parametrize("method", PER_CLASS, ids=str)
def test_per_class_methods_grow_bit_identically(rows, method):
    grown, joint, ext = grown_and_joint(rows, method)
    assert torch.equal(grown.proxies, joint.proxies) and torch.equal(grown.owner, joint.owner)
    assert grown.class_names == NAMES and ext.exact and not ext.notes
    assert torch.equal(grown.predict(rows[0]), joint.predict(rows[0]))


@pytest.mark.parametrize("method", JOINT, ids=str)
def test_least_squares_heads_grow_from_their_statistics(rows, method):
    grown, joint, ext = grown_and_joint(rows, method)
    assert torch.allclose(grown.proxies, joint.proxies, rtol=1e-5, atol=1e-7)
    assert ext.exact and "re-solved from the LS statistics" in ext.notes[0]


def test_a_moving_cl2n_centre_is_said_and_not_called_exact(rows):
    method = MethodSpec("cl2n", GenSpec("mean", 1), "l2", "cl2n", AggSpec("max"))
    grown, joint, ext = grown_and_joint(rows, method)
    assert not ext.exact and "the centre moved" in ext.notes[0] and "NORMinf cl2n" in ext.notes[1]
    assert torch.allclose(grown.center, joint.center, atol=1e-6)  # the running mean is the joint mean


def write_npz(path: Path, x: torch.Tensor, y: torch.Tensor, names: list[str]) -> Path:
    np.savez(path, X_train=x.numpy(), y_train=y.numpy(), X_test=x[:5].numpy(), y_test=y[:5].numpy(),
             class_names=np.array(names))
    return path


def extend(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from imprint_bench.model import extend_main; extend_main()", *args],
                          cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=300)


def test_the_command_grows_a_saved_head_like_imprinting_all_classes(tmp_path, rows):
    x, y = rows
    ImprintedHead.fit(x[y < 5], y[y < 5], "ours", class_names=NAMES[:5], seed=5).save(tmp_path / "a.safetensors")
    b = write_npz(tmp_path / "b.npz", x[y >= 5], y[y >= 5], NAMES)  # labels 5..7 name c5..c7
    out = extend(str(tmp_path / "a.safetensors"), str(b), "--out", str(tmp_path / "ab.safetensors"))
    assert out.returncode == 0, out.stderr
    assert "added 3 classes, replaced 0 (120 rows): 8 classes" in out.stdout and "equals imprinting" in out.stdout
    grown = ImprintedHead.load(tmp_path / "ab.safetensors")
    joint = ImprintedHead.fit(x, y, "ours", class_names=NAMES, seed=5)
    assert torch.equal(grown.proxies, joint.proxies) and grown.class_names == NAMES
    again = extend(str(tmp_path / "ab.safetensors"), str(b), "--out", str(tmp_path / "abb.safetensors"), "--replace")
    assert again.returncode == 0 and "replaced 3" in again.stdout  # a saved, grown head grows again


def test_bad_inputs_are_one_line_before_any_work_and_write_nothing(tmp_path, rows):
    x, y = rows
    a = tmp_path / "a.safetensors"
    ImprintedHead.fit(x[y < 5], y[y < 5], "ours", class_names=NAMES[:5], seed=5).save(a)
    oracle = tmp_path / "oracle.safetensors"
    ImprintedHead.fit(x[y < 5], y[y < 5], "oracle", class_names=NAMES[:5], seed=5).save(oracle)
    old = ImprintedHead.fit(x[y < 5], y[y < 5], "ours", class_names=NAMES[:5], seed=5)
    old.growth = GrowthState()  # a head saved before heads kept what growing needs
    old.save(tmp_path / "old.safetensors")
    same = write_npz(tmp_path / "same.npz", x[y < 2], y[y < 2], NAMES)
    new = write_npz(tmp_path / "new.npz", x[y >= 5], y[y >= 5], NAMES)
    wide = write_npz(tmp_path / "wide.npz", torch.cat([x, x], 1)[y >= 5], y[y >= 5], NAMES)
    (tmp_path / "folder").mkdir()
    labelled = tmp_path / "labelled.safetensors"
    ImprintedHead.fit(x[y < 5], y[y < 5], "ours", class_names=NAMES[:5], seed=5).save(
        labelled, {"backbone_label": "resnet18"})
    other = tmp_path / "other.npz"
    np.savez(other, X_train=x[y >= 5].numpy(), y_train=y[y >= 5].numpy(), X_test=x[:5].numpy(), y_test=y[:5].numpy(),
             backbone=np.array("vit_b_16"))
    cases = {
        (labelled, other, ()): "holds features of backbone 'vit_b_16' but the head was imprinted on 'resnet18'",
        (a, same, ()): "classes ['c0', 'c1'] are already in the head (2 in all): pass --replace",
        (a, wide, ()): "the new rows have 32 features but the head's proxies have 16",
        (tmp_path / "old.safetensors", new, ()): "the head lacks the run seed, each class's seeding label",
        (oracle, same, ("--replace",)): "--replace cannot take classes out of a ls head",
        (a, tmp_path / "nowhere.npz", ()): "does not exist",
        (same, new, ()): "is not a head file saved by imprint-bench",
    }
    for (head, data, extra), message in cases.items():
        out = extend(str(head), str(data), "--out", str(tmp_path / "out.safetensors"), *extra)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and message in lines[0], (message, out.stderr)
        assert not (tmp_path / "out.safetensors").exists()
    out = extend(str(a), str(new), "--out", str(tmp_path / "folder"))
    assert out.returncode == 2 and "is a folder" in out.stderr
    out = extend(str(a), str(new), "--out", str(a))
    assert out.returncode == 2 and "--out must differ from HEAD" in out.stderr


# --- the class-incremental protocol in the sweep (task=incremental) ---

PROTOCOL = ("dataset=synthetic", "dataset.noise=3", "dataset.dim=16", "task=incremental", "task.steps=4", "nc1=false",
            "grid=[{method:[qi,ours,oracle,hosoda,janson]},{norm.pre:[cl2n],norm.inf:[cl2n],gen.name:[mean]}]")


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMPRINT_BENCH_ROOT": str(root), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "imprint_bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def results(root: Path, experiment: str = "adhoc"):
    import pandas as pd

    return pd.read_parquet(root / "outputs" / "results" / experiment / "results.parquet")


@pytest.mark.slow
def test_the_protocol_records_each_step_and_finds_the_exactly_incremental_methods(tmp_path):
    out = cli(tmp_path, *PROTOCOL)
    assert out.returncode == 0, out.stderr
    df = results(tmp_path)
    assert len(df) == 6 * 4 and df.run_hash.is_unique and set(df.status) == {"ok"}
    assert sorted(set(df.n_seen_classes)) == [3, 6, 8, 10] and sorted(set(df.step)) == [0, 1, 2, 3]
    presets = df[df.method != "custom"]
    assert (presets.acc == presets.joint_acc).all()  # the Table-1 methods are exactly incremental
    cl2n = df[df.norm_pre == "cl2n"].sort_values("step")
    assert cl2n.acc.iloc[0] == cl2n.joint_acc.iloc[0] and (cl2n.acc != cl2n.joint_acc).any()  # its centre moves
    again = cli(tmp_path, *PROTOCOL, "mode=report")
    report = (tmp_path / "outputs" / "results" / "adhoc" / "report" / "report.md").read_text()
    assert again.returncode == 0 and "## Class-incremental imprinting" in report
    assert "could not be produced" not in report and (tmp_path / "outputs/results/adhoc/report/figures/incremental.png"
                                                      ).is_file()
    ordered = cli(tmp_path, *PROTOCOL[:5], "task.order=[9,8,7,6,5,4,3,2,1,0]", "method=qi", "experiment_name=ordered")
    first = results(tmp_path, "ordered").query("step == 0")
    assert ordered.returncode == 0 and int(first.n_seen_classes.iloc[0]) == 3


@pytest.mark.slow
def test_protocol_rows_resume_after_sigkill(tmp_path):
    from conftest import kill_after_parts

    args = (*PROTOCOL[:5], "nc1=false", "flush_every=2", "experiment_name=killed",
            f"grid={{gen.name:[kmeans],gen.k:[{','.join(map(str, range(1, 25)))}]}}")
    written = kill_after_parts(tmp_path, args, "killed")
    assert 0 < written < 24 * 4
    out = cli(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert f"{written} skipped" in out.stdout + out.stderr
    df = results(tmp_path, "killed")
    assert len(df) == 24 * 4 and df.run_hash.is_unique and set(df.status) == {"ok"}


@pytest.mark.parametrize(("override", "message"), [
    (("task.steps=0",), "task.steps must be an integer >= 1"),
    (("task.steps=11",), "task.steps=11 exceeds the task's 10 classes"),
    (("task.order=[0,1]",), "task.order [0, 1] must list exactly the task's classes"),
    (("task.shots=5",), "task.steps > 1 (class-incremental) uses every training row"),
    (("save_head=h.safetensors",), "save_head saves one head: not with task.steps > 1"),
])
def test_bad_protocol_settings_are_one_line(tmp_path, override, message):
    out = cli(tmp_path, *PROTOCOL[:5], "method=qi", *override)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_streaming_head_grows_from_a_stream_of_batches_like_from_held_rows(rows):
    from imprint_bench.imprint.incremental import extend_head_streamed

    x, y = rows
    spec = MethodSpec("l2", GenSpec("kmeans", 4, streaming=True, batch_size=16), "l2", "l2", AggSpec("max"))
    joint = ImprintedHead.fit(x, y, spec, class_names=NAMES, seed=5)
    first = ImprintedHead.fit(x[y < 5], y[y < 5], spec, class_names=NAMES[:5], seed=5)
    streams = [lambda c=c: iter(x[y == c].split(7)) for c in range(5, 8)]  # batches of another size: re-batched
    grown = extend_head_streamed(first, streams, NAMES[5:]).head
    assert torch.equal(grown.proxies, joint.proxies) and grown.growth.rows == [40] * 8
    with pytest.raises(Exception, match="gen.streaming=true"):
        extend_head_streamed(ImprintedHead.fit(x[y < 5], y[y < 5], "ours", seed=5), streams, NAMES[5:])
