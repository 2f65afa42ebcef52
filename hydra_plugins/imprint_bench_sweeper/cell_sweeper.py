"""The ``imprint`` sweeper: one job per feature set, planned and validated before anything is launched.

Hydra only instantiates sweepers defined under ``hydra_plugins``; the logic lives in ``imprint_bench.sweep``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

#: The launchers' loggers, whose INFO lines list every job's overrides.
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher._core",
                    "hydra_plugins.hydra_submitit_launcher.submitit_launcher")
log = logging.getLogger(__name__)


@contextmanager
def sweep_log(roots: list[Path]) -> Iterator[None]:
    """``<results>/<experiment>/sweep.log``: the sweep's plan, job lines, in-process jobs' lines and progress, and the
    end, appended for every sweep of the experiment (each job also keeps its own log in the sweep folder)."""
    handlers = []
    for root in roots:
        handler = logging.FileHandler(root / "sweep.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
        handlers.append(handler)
    loggers = [logging.getLogger(name) for name in ("imprint_bench", __name__)]
    for logger in loggers:
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            for handler in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            handler.close()


class ComposedOnce:
    """Hydra's config loader for the launcher, serving each job's config from the compositions made while planning
    (one per selection of config groups, the job's values applied to a copy, as Hydra applies them after composing):
    an in-process launch composes nothing again. A launcher that ships it to other processes (joblib, submitit)
    ships Hydra's own loader."""

    def __init__(self, loader: Any, composer: Any) -> None:
        self._loader, self._composer = loader, composer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_composer"):
            raise AttributeError(name)
        return getattr(self._loader, name)

    def __reduce__(self) -> tuple:
        return _loader_itself, (self._loader,)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        from hydra._internal.config_loader_impl import get_overrides_dirname

        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        if any(o.is_hydra_override() for o in parsed):
            return self._loader.load_sweep_config(master_config, sweep_overrides)
        cfg = self._composer(list(sweep_overrides), parsed)
        job = cfg.hydra.job
        cfg.hydra.overrides.task = [o.input_line for o in parsed]
        job.override_dirname = get_overrides_dirname(
            overrides=parsed, kv_sep=job.config.override_dirname.kv_sep,
            item_sep=job.config.override_dirname.item_sep, exclude_keys=job.config.override_dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg


def _loader_itself(loader: Any) -> Any:
    return loader


class CellSweeper(Sweeper):
    """Expands the sweep like Hydra's basic sweeper, then groups jobs that differ only in ``task``/``seed``
    into one job per feature set. ``mode=plan`` prints the plan and launches nothing."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 **foreign: Any) -> None:
        super().__init__()
        if foreign:  # settings of another sweeper, e.g. a preset written for Optuna: say how to select it
            print(f"error: hydra.sweeper has settings the imprint sweeper does not know ({', '.join(sorted(foreign))});"
                  " they belong to another sweeper: select it on the command line, e.g. hydra/sweeper=optuna for "
                  "hparams_search=imprint_optuna", file=sys.stderr)
            raise SystemExit(2)
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self._task_function: TaskFunction | None = None
        self._groups: dict[str, set[str]] = {}  # config groups under each parent, listed once
        self.composer: Any = None  # imprint_bench.sweep.Composer over Hydra's load_sweep_config, set by setup

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from imprint_bench.sweep import Composer

        self.hydra_context = hydra_context
        self.config = config
        self._task_function = task_function
        self.composer = Composer(self._compose_job, self._is_group, master=config)

    def _compose_job(self, overrides: list[str]) -> DictConfig:
        """A job's whole config (``hydra`` node included) as Hydra's launchers compose it."""
        assert self.config is not None and self.hydra_context is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _compose(self, overrides: list[str]) -> DictConfig:
        """A job's config as the job will see it, without the ``hydra`` node (what planning reads)."""
        assert self.composer is not None
        cfg = self.composer(overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def _compose_tasks(self, task_overrides: list[tuple[str, ...]]) -> list[DictConfig]:
        """Task nodes on their own, without the rest of the config, all in one composition: each set of task
        overrides at a package of its own (``task=even task.shots=5`` becomes ``+task@task_0=even task_0.shots=5``).
        """
        from hydra.types import RunMode

        assert self.hydra_context is not None
        overrides = []
        for i, split in enumerate(task_overrides):
            for override in split:
                body = override.lstrip("+~")
                key, _, value = body.partition("=")
                if key == "task":
                    overrides.append(f"+task@task_{i}={value}")
                else:  # task.<field>, with its + or ~
                    overrides.append(f"{override[:len(override) - len(body)]}task_{i}{key[len('task'):]}={value}")
        cfg = self.hydra_context.config_loader.load_configuration(config_name=None, overrides=overrides,
                                                                  run_mode=RunMode.RUN)
        return [cfg[f"task_{i}"] for i in range(len(task_overrides))]

    def _is_group(self, key: str) -> bool:
        """Whether an override key selects a config group (``dataset``, ``hydra/launcher``) or sets a value."""
        assert self.hydra_context is not None
        parent, _, name = key.rpartition("/")
        if parent not in self._groups:
            self._groups[parent] = set(self.hydra_context.config_loader.list_groups(parent))
        return "@" in key or name in self._groups[parent]

    def sweep(self, arguments: list[str]) -> Any:
        """Plan (and, unless ``mode=plan``, launch) the sweep; bad input ends it with one line (exit code 2)."""
        from imprint_bench.__main__ import INTERRUPTED
        from imprint_bench.errors import ConfigError

        try:
            return self._sweep(arguments)
        except ConfigError as err:  # Hydra would print a stack trace; one line is enough
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from err
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            raise SystemExit(130) from None

    def _sweep(self, arguments: list[str]) -> Any:
        from imprint_bench.results import ResultStore
        from imprint_bench.sweep import describe_plan, expand, group_jobs, plan_groups

        assert self.config is not None and self.hydra_context is not None
        args = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        groups = group_jobs(expand(parser.parse_overrides(args)))
        plan_groups(groups, self._compose, self._compose_tasks)
        if self.config.get("mode") == "plan":
            print(describe_plan(groups))
            return []
        roots = sorted({Path(g.config.paths.results_dir) / str(g.config.experiment_name) for g in groups})
        for root in roots:
            ResultStore(root).check_writable()
        with sweep_log(roots):
            return self._launch(groups)

    def _launch(self, groups: list[Any]) -> Any:
        from imprint_bench.cluster import is_slurm, launch_error, use_squeue_without_accounting

        log.info("%d jobs, %d cells, %d runs", len(groups), sum(len(g.planned) for g in groups),
                 sum(g.n_runs for g in groups))
        assert self.config is not None and self.hydra_context is not None
        context = HydraContext(config_loader=ComposedOnce(self.hydra_context.config_loader, self.composer),
                               callbacks=self.hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=self._task_function, config=self.config)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        jobs = [g.job_overrides() for g in groups]
        for name in LAUNCHER_LOGGERS:  # they print each job's whole override list (cells included): one line instead
            logging.getLogger(name).setLevel(logging.WARNING)
        log.info("launching %d jobs (%s), logs in %s", len(jobs), self.config.hydra.launcher._target_.split(".")[-1],
                 sweep_dir)
        for i, group in enumerate(groups):
            log.info("\t#%d %s", i, group.describe())
        size = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else len(jobs)
        launcher_cfg = self.config.hydra.launcher
        if is_slurm(launcher_cfg):
            use_squeue_without_accounting()
        returns = []
        for start in range(0, len(jobs), size):
            # on SLURM, submitit prints a failed sbatch's stderr: held back, so that it is said once, in our line
            held, said = io.StringIO(), False
            try:
                with contextlib.redirect_stderr(held) if is_slurm(launcher_cfg) else contextlib.nullcontext():
                    results = self.launcher.launch(jobs[start:start + size], initial_job_idx=start)
                for r in results:
                    _ = r.return_value  # re-raises a job's exception (a ConfigError: bad data found by a job)
            except Exception as err:  # submitit: sbatch refused the jobs, or a cluster job was stopped or died
                line = launch_error(err, launcher_cfg)
                if line is None:
                    raise
                log.debug("launch failed", exc_info=True)
                print(f"error: {line}", file=sys.stderr)
                said = True
                raise SystemExit(1) from None
            finally:
                if not said:
                    sys.stderr.write(held.getvalue())
            returns.append(results)
        return returns
