"""``imprint-bench``: the Hydra entry point. Modes: run (default), plan, extract, collect, report."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import multiprocessing
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from imprint_bench.config import CONFIG_MODULE
from imprint_bench.errors import ConfigError, PrunedError, check_choice

log = logging.getLogger("imprint_bench")

MODES = ("run", "plan", "extract", "collect", "report")
INTERRUPTED = ("interrupted: the runs finished so far are saved; run the same command again to resume "
               "(finished runs are skipped)")


def experiment_dir(cfg: DictConfig) -> Path:
    """``paths.results_dir/experiment_name``, the name checked (one folder name)."""
    from imprint_bench.plan import check_experiment_name

    return Path(cfg.paths.results_dir) / check_experiment_name(cfg.experiment_name)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _run(cfg: DictConfig) -> float | None:
    from imprint_bench.runner import run_job
    from imprint_bench.tracking import make_tracker

    tracker = make_tracker(cfg, "imprint")
    try:
        summary = run_job(cfg, tracker)
    finally:
        tracker.finish()
    log.info(summary.line())
    for failure in summary.failures[:10]:
        log.warning("failed: %s", failure)
    if HydraConfig.initialized():
        out = Path(HydraConfig.get().runtime.output_dir) / "job_summary.json"
        out.write_text(json.dumps(dataclasses.asdict(summary), indent=1))
    if not in_multirun():
        from imprint_bench.results import collect

        print(collect(experiment_dir(cfg)).describe())
    if summary.objective is not None:
        log.info("%s = %.4f (mean over the job's runs)", cfg.optimized_metric, summary.objective)
    return summary.objective


def _plan(cfg: DictConfig) -> None:
    """Print what this job would run (a multirun's plan is printed by the sweeper, which launches nothing)."""
    from imprint_bench.plan import plan_cells

    planned = plan_cells(cfg)
    for p in planned:
        print(f"  {p.cell.describe()}: {p.n_runs} runs")
    plan = planned[0].plan
    print(f"plan: 1 job, {len(planned)} cells, {sum(p.n_runs for p in planned)} runs "
          f"({plan.n_combinations} combinations, {plan.n_duplicates} duplicates, pruned {plan.pruned or 'none'})")


def _extract(cfg: DictConfig) -> None:
    """Fill the feature cache ahead of a sweep (features/synthetic datasets need no extraction)."""
    from imprint_bench.data import FEATURE_KINDS
    from imprint_bench.plan import plain

    if cfg.dataset.kind in FEATURE_KINDS:
        print(f"dataset kind {cfg.dataset.kind!r} is already features; nothing to extract")
        return
    dataset, backbone, extract = plain(cfg.dataset), plain(cfg.backbone), plain(cfg.extract)
    from imprint_bench.backbones import resolve_device
    from imprint_bench.features import fill_feature_cache

    key = fill_feature_cache(dataset, backbone, extract, Path(cfg.paths.cache_dir), Path(cfg.paths.data_root),
                             resolve_device(cfg.device))
    print(f"features cached (key {key}) under {Path(cfg.paths.cache_dir) / 'features'}")


def _collect(cfg: DictConfig) -> None:
    from imprint_bench.report.builder import log_collected
    from imprint_bench.results import collect

    summary = collect(experiment_dir(cfg))
    print(summary.describe())
    log_collected(cfg, summary.table, experiment_dir(cfg) / "report")


def _report(cfg: DictConfig) -> None:
    from imprint_bench.report import build_report
    from imprint_bench.results import collect
    from imprint_bench.tracking import make_tracker

    summary = collect(experiment_dir(cfg))
    tracker = make_tracker(cfg, "report", name=f"{cfg.experiment_name}-report")
    try:
        path = build_report(summary.path, experiment_dir(cfg) / "report", tracker=tracker)
    finally:
        tracker.finish()
    print(f"report written to {path}")


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Dispatch on ``mode``. Bad input ends a single run with a one-line error (exit code 2). A run with
    ``optimized_metric`` returns it (what a tuning sweeper such as Optuna maximises)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        check_choice("mode", cfg.mode, MODES)
        return {"run": _run, "plan": _plan, "extract": _extract, "collect": _collect, "report": _report}[cfg.mode](cfg)
    except ConfigError as err:
        if isinstance(err, PrunedError) and cfg.get("optimized_metric"):
            raise  # a trial that cannot run: the tuning sweeper records it as failed and the study goes on
        if in_multirun() and "CellSweeper" in str(HydraConfig.get().sweeper.get("_target_")):
            raise  # the imprint sweeper reports it in one line (other sweepers, e.g. Optuna, would print a trace)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    except KeyboardInterrupt:
        if multiprocessing.current_process().name == "MainProcess":  # a launcher's workers stop silently
            print(INTERRUPTED, file=sys.stderr)
        raise SystemExit(130) from None


HELP = """imprint-bench: weight imprinting on frozen backbones, as a Hydra experiment runner.
Builds classifier heads from embeddings (NORMpre -> GEN -> NORMpost -> NORMinf -> AGG), sweeps backbones x
datasets x methods, keeps one Parquet row per configuration, and reports Table 1, ranks and figures.

Usage: imprint-bench [-m] [group=option ...] [key=value ...]

Commands you will use most:
  imprint-bench experiment=quickstart                       the offline quickstart (make run)
  imprint-bench method=ours task=even seed=123987           one configuration on one task
  imprint-bench 'grid={gen.name:[kmeans,mean],gen.k:[1,5,20]}'   a method grid inside one job
  imprint-bench -m backbone=efficientnet_lite0,efficientnet_lite1 task=all,even seed=1,2   a multirun
  imprint-bench experiment=table1 mode=plan                 count jobs and runs, launch nothing
  imprint-bench mode=report experiment_name=quickstart      Markdown/HTML report of an experiment

Modes (mode=): run (default), plan, extract, collect, report.
Config groups (group=option):
{groups}
Everything else: imprint-bench --cfg job (the composed config), --hydra-help (Hydra's own options), README.md.
"""


def print_help() -> None:
    """The program's help, without composing a config (fast): usage, the commands used most, the config groups."""
    from imprint_bench.config import config_dir

    root = config_dir()
    lines = []
    for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("hydra", "local", "__pycache__")):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name:<15} {', '.join(options)}")
    lines.append(f"  {'hydra/launcher':<15} basic, joblib, local_parallel, submitit_local, submitit_slurm, slurm")
    print(HELP.replace("{groups}", "\n".join(lines)), end="")


def cli() -> None:
    """The ``imprint-bench`` command: :func:`main`, with Ctrl-C outside a job (in Hydra or a tuning sweeper, e.g.
    Optuna between trials) ending in one line and exit code 130 as well."""
    # After Ctrl-C under the joblib launcher, Python's resource tracker (a process of its own, started with these
    # warning options) cleans up the semaphores of the stopped workers and would warn about each: it is no leak.
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print_help()
        return
    if any(arg in ("-m", "--multirun") for arg in sys.argv[1:]):
        _multirun_without_mode_composition()
    if "torch" not in sys.modules:  # a command's own process: its imports live until exit (see runner.kept_for_good)
        gc.freeze()
    try:
        main()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        raise SystemExit(130) from None
    exit_without_teardown()


def _multirun_without_mode_composition() -> None:
    """With ``-m``, Hydra composes the whole config one extra time only to read ``hydra.mode``, which ``-m`` decides
    anyway (0.1–0.2 s): answer "not set", and Hydra runs the multirun as for any config without ``hydra.mode``."""
    from hydra._internal.hydra import Hydra

    Hydra.get_mode = lambda self, config_name, overrides: None


def exit_without_teardown() -> None:
    """After a command that succeeded, end the process without Python's teardown, which spends about 0.5 s here
    unregistering torch's operator libraries one by one (``torch.library`` finalizers): everything is written and
    closed by then. Only when nothing else needs the teardown: no other non-daemon thread, no child process, no
    tracker (W&B and MLflow finish their uploads at exit) and no process pool (joblib)."""
    import os
    import threading

    if (any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate())
            or multiprocessing.active_children()
            or any(name in sys.modules for name in ("wandb", "mlflow", "joblib", "submitit"))):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (| head): Python's own teardown would only report it
        return
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    cli()
