"""SLURM through Hydra's submitit launcher, on the submitting side: job states without accounting, and the ways a
cluster refuses or stops a job said in one line.

- **States.** submitit polls ``sacct``. A cluster without accounting storage answers with an error, so every job stays
  "UNKNOWN": a job that died without writing its result (killed at its hard time limit, ``scancel``) is waited for
  forever, and every poll logs a warning. The watcher installed here asks ``squeue`` instead once ``sacct`` has said
  so (once, in one line); a job that ``squeue`` no longer knows has ended.
- **Refusals.** An ``sbatch`` error (no GPUs on the cluster, too much memory, an unknown partition) names the
  launcher field to change.
- **Stopped jobs.** A job that submitit did not requeue again (``max_num_timeout`` reached) or that SLURM killed
  ends the sweep with one line: its finished runs are kept, and the same command resumes.

The job side needs one thing: :func:`imprint_bench.errors.stops_the_job` lets submitit's stop through the
per-configuration error handler.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
import time
from typing import Any

log = logging.getLogger("imprint_bench")

#: sbatch's words for a refused resource -> the launcher fields that ask for it.
REFUSALS = {
    "gres": ("gpus_per_node", "GPUs"),
    "generic resource": ("gpus_per_node", "GPUs"),
    "memory specification": ("mem_gb", "memory"),
    "more processors requested": ("cpus_per_task", "CPUs"),
    "node configuration is not available": ("cpus_per_task, mem_gb, gpus_per_node", "a node with these resources"),
    "invalid partition": ("partition", "the partition"),
    "invalid account": ("additional_parameters.account", "the account"),
    "time limit": ("timeout_min", "the time limit"),
}
LAUNCHER_FIELDS = ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min")


def is_slurm(launcher: Any) -> bool:
    """Whether the launcher config is Hydra's submitit SLURM launcher (the ``slurm`` preset or ``submitit_slurm``)."""
    return str(launcher.get("_target_", "")).endswith("SlurmLauncher")


def use_squeue_without_accounting() -> None:
    """Make submitit's SLURM jobs read their states through the squeue-capable watcher (in the submitting process;
    submitit is imported only here)."""
    from submitit.slurm.slurm import SlurmJob

    if not getattr(SlurmJob.watcher, "reads_squeue", False):
        SlurmJob.watcher = _squeue_watcher_class()(delay_s=SlurmJob.watcher._delay_s)


@functools.cache
def _squeue_watcher_class() -> type:
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        """submitit's sacct watcher, with ``squeue`` once sacct says there is no accounting storage. ``squeue -t all``
        lists jobs until the controller forgets them (``MinJobAge``); a registered job it no longer lists has ended
        (state ``ENDED``); submitit then reads its result, or says it left none."""

        reads_squeue = True
        accounting = True

        def _make_command(self) -> list[str] | None:
            command = super()._make_command()
            if command is None or self.accounting:
                return command
            ids = sorted({x.split("_")[0] for x in self._registered - self._finished})
            return ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(ids)]

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                log.warning("cannot read job states (%s): retrying at the next poll", err)
                return
            if output.returncode != 0:
                if self.accounting and "accounting storage is disabled" in output.stderr.lower():
                    self.accounting = False
                    log.info("this cluster has no SLURM accounting: job states come from squeue")
                    self.update()
                else:
                    log.warning("%s failed (%s): retrying at the next poll", command[0],
                                output.stderr.strip().splitlines()[-1:] or output.returncode)
                return
            if self.accounting:
                self._info_dict.update(self.read_info(output.stdout))
            else:
                self._read_squeue(output.stdout)
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def _read_squeue(self, text: str) -> None:
            listed = {}
            for line in text.splitlines():
                job_id, _, state = line.strip().partition("|")
                if job_id:
                    listed[job_id] = state
            for job_id in self._registered - self._finished:
                state = listed.get(job_id) or listed.get(job_id.split("_")[0])
                self._info_dict[job_id] = {"JobID": job_id, "State": state or "ENDED"}

    return SqueueWatcher


def launch_error(err: BaseException, launcher: Any) -> str | None:
    """One line for a submitit error met while launching or waiting (None: not submitit's)."""
    kind = type(err).__name__
    if not type(err).__module__.startswith("submitit") or kind not in ("FailedJobError", "UncompletedJobError"):
        return None
    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    sbatch = next((line for line in lines if line.startswith("sbatch: error:")), None)
    if sbatch:
        reason = sbatch.removeprefix("sbatch: error:").strip()
        asked = ", ".join(f"{f}={launcher.get(f)}" for f in LAUNCHER_FIELDS if launcher.get(f) is not None)
        hint = next(((fields, what) for words, (fields, what) in REFUSALS.items() if words in reason.lower()), None)
        fix = (f"the cluster has no {hint[1]} as asked: change hydra.launcher.{hint[0].split(', ')[0]}"
               + (" (e.g. hydra.launcher.gpus_per_node=0 on a cluster without GPUs)" if "gpus" in hint[0] else "")
               if hint else "change the launcher's fields (hydra.launcher.<field>=...)")
        return f"SLURM refused the jobs: {reason}. The launcher asked for {asked}; {fix}"
    stopped = next((line for line in lines if "not requeued because" in line.lower()), None)
    if stopped:
        reason = stopped.split("because:", 1)[-1].strip().rstrip(".")
        return (f"a cluster job ended without finishing ({reason}; hydra.launcher.max_num_timeout="
                f"{launcher.get('max_num_timeout')}): its finished runs are saved; raise hydra.launcher.timeout_min "
                "(or max_num_timeout) and run the same command again to resume")
    died = re.search(r"Job (\S+) .*?has not produced any output \(state: ([^)]*)\)", text, re.S)
    if died:
        return (f"a cluster job ended without a result (SLURM job {died[1]}, state {died[2]}): its finished runs are "
                "saved; see its log in the sweep folder's .submitit/, then run the same command again to resume")
    last = lines[-1] if lines else kind
    return f"a cluster job failed: {last}; see its log in the sweep folder's .submitit/"
