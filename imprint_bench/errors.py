"""The one exception type users see for bad input: it always says what was wrong and what is valid."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path


class ConfigError(ValueError):
    """Raised for invalid configuration or input data, with a message naming the problem and valid options."""


def check_choice(what: str, value: object, valid: list | tuple | set | dict) -> None:
    """Raise ConfigError unless ``value`` is one of ``valid``."""
    if value not in valid:
        choices = ", ".join(sorted(str(v) for v in valid))
        raise ConfigError(f"unknown {what} {value!r}; valid choices: {choices}")


class PrunedError(ConfigError):
    """Every configuration of a job is pruned for its task (e.g. m-NN with m above the task's proxies): a tuning
    sweeper's trial that cannot be run, reported to it as failed while the study goes on."""


class StorageError(ConfigError):
    """A folder or disk cannot take what must be written (full, read-only, failing): said in one line, with what was
    kept and how to go on."""


def storage_error(what: str, path: object, err: OSError) -> StorageError:
    """A StorageError for an OSError raised while writing ``what`` to ``path``."""
    return StorageError(f"cannot write {what} to {path}: {err.strerror or err}; what was written before is kept: "
                        "free space (or choose another folder) and run the same command again to resume")


def check_writable_folder(folder: Path, what: str, advice: str, create: bool = True) -> None:
    """Write a probe file into ``folder`` (created if needed; with ``create=False`` into its nearest existing
    ancestor, creating nothing); a ConfigError ``what (reason); advice`` if that fails (read-only, a file in the way,
    a full disk). Works for root too, where permission bits say nothing."""
    if not create:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    probe = folder / f".write-test-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{what} ({err.strerror or err}); {advice}") from err


def printable(text: str) -> str:
    """``text`` safe to print to a terminal: control characters (escape sequences, newlines) shown escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def stops_the_job(err: BaseException) -> bool:
    """Whether ``err`` is submitit's stop of a cluster job (its ``UncompletedJobError``, raised by its signal handler
    inside whatever code runs when SLURM's time-limit signal comes and the job may not be requeued again): it ends the
    job, it is no failure of the configuration being evaluated."""
    utils = sys.modules.get("submitit.core.utils")
    return utils is not None and isinstance(err, utils.UncompletedJobError)
