"""ResultStore: one Parquet part file per flush, written atomically; skip-existing by run hash; collect.

Layout under ``<results_dir>/<experiment>/``::

    runs/<cell_hash>/<part>.parquet   rows of one cell (backbone, dataset, task, seed), appended in parts
    runs/<cell_hash>/complete.json    written when every planned run of the cell has an ok row
    results.parquet, results.csv      the merged table (collect), de-duplicated by run_hash
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imprint_bench.errors import ConfigError
from imprint_bench.identity import canonical_json
from imprint_bench.imprint.registry import config_text
from imprint_bench.schema import COLUMN_NAMES, dedupe_runs, to_arrow


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file via a temporary file in the same folder, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, write_page_checksum=True)  # collect verifies them: a flipped byte is caught
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: Schema-metadata key of a part's row digest: the SHA-256 of its rows as canonical JSON. Page checksums
#: cover page data but not page headers; the digest covers every value, whatever byte was damaged.
ROWS_DIGEST = b"imprint_bench.rows_sha256"


def rows_digest(table: pa.Table) -> bytes:
    """SHA-256 (hex) of a table's rows as canonical JSON."""
    return hashlib.sha256(canonical_json(table.to_pylist()).encode()).hexdigest().encode()


def write_part(rows: list[dict[str, Any]], path: Path) -> None:
    """Result rows as one atomic Parquet part with the schema's types and the digest of its rows."""
    table = to_arrow(rows)
    atomic_write_table(table.replace_schema_metadata({ROWS_DIGEST: rows_digest(table)}), path)


def read_part(path: Path) -> pa.Table:
    """A part, verified: page checksums while reading, then the digest of its rows (parts written before
    digests existed have page checksums only). Raises ``ValueError`` on damage."""
    table = pq.read_table(path, page_checksum_verification=True)
    stored = (table.schema.metadata or {}).get(ROWS_DIGEST)
    if stored is not None and rows_digest(table) != stored:
        raise ValueError(f"{path}: its rows do not match their digest (the file was changed or damaged)")
    return table.replace_schema_metadata(None)


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    atomic_write_table(pa.Table.from_pandas(df, preserve_index=False), path)


class ResultStore:
    """Results of one experiment: per-cell part files, completion markers and the merged table."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def check_writable(self) -> None:
        """Fail before any work when the results cannot be written (read-only or unusable folder)."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.runs_dir / f".write-test-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise ConfigError(f"the results folder {self.root} is not writable ({err.strerror or err}); "
                              "set paths.results_dir (or paths.root) to a folder you can write") from err

    def cell_dir(self, cell_hash: str) -> Path:
        return self.runs_dir / cell_hash

    def done_hashes(self, cell_hash: str) -> set[str]:
        """Run hashes of this cell that already have an ok row (unreadable parts are ignored here)."""
        done: set[str] = set()
        for part in sorted(self.cell_dir(cell_hash).glob("*.parquet")):
            try:
                df = pd.read_parquet(part, columns=["run_hash", "status"])
            except Exception:  # a corrupted part: its runs simply run again; collect reports it
                continue
            done.update(df.loc[df["status"] == "ok", "run_hash"].astype(str))
        return done

    def is_complete(self, cell_hash: str, plan_hash: str) -> bool:
        marker = self.cell_dir(cell_hash) / "complete.json"
        try:
            return json.loads(marker.read_text()).get("plan_hash") == plan_hash
        except (OSError, ValueError):
            return False

    def mark_complete(self, cell_hash: str, plan_hash: str, n_runs: int) -> None:
        payload = {"plan_hash": plan_hash, "n_runs": n_runs, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_bytes(self.cell_dir(cell_hash) / "complete.json", json.dumps(payload).encode())

    def writer(self, cell_hash: str, flush_every: int = 50, flush_seconds: float = 5.0) -> RowWriter:
        return RowWriter(self.cell_dir(cell_hash), flush_every, flush_seconds)


HOST = socket.gethostname().replace("-", "_").replace(".", "_")  # part names carry host and pid


def remove_orphaned_temporaries(folder: Path) -> int:
    """Delete the temporary files of part writes that a killed process of this host left behind (its pid is
    gone); writes of live processes, or of other hosts sharing the folder, are left alone."""
    removed = 0
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
        fields = tmp.name[1:].split("-")
        if len(fields) < 4 or fields[1] != HOST or not fields[2].isdigit() or _alive(int(fields[2])):
            continue
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RowWriter:
    """Buffers rows and writes them as new atomic part files, so a kill loses only unflushed rows."""

    def __init__(self, folder: Path, flush_every: int, flush_seconds: float) -> None:
        self.folder = folder
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._rows: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self.written = 0
        remove_orphaned_temporaries(folder)

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.flush_every or time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        name = f"{time.time_ns()}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        write_part(self._rows, self.folder / name)  # 3× faster than via pandas
        self.written += len(self._rows)
        self._rows = []
        self._last = time.monotonic()


@dataclass
class CollectSummary:
    """What collect merged and what it had to skip."""

    table: pd.DataFrame
    n_parts: int = 0
    corrupted: list[str] = field(default_factory=list)
    path: Path | None = None

    def describe(self) -> str:
        t = self.table
        n_ok = int((t["status"] == "ok").sum()) if len(t) else 0
        n_failed = len(t) - n_ok
        lines = [f"collected {len(t)} runs ({n_ok} ok, {n_failed} failed) from {self.n_parts} part files"
                 + (f" -> {self.path}" if self.path else "")]
        lines += [f"  skipped corrupted file: {c}" for c in self.corrupted]
        if n_failed:
            failed = t[t["status"] != "ok"]
            for _, row in failed.head(20).iterrows():
                lines.append(f"  failed: {row.get('backbone')}/{row.get('dataset')}/{row.get('task')}/"
                             f"seed={row.get('seed')} {config_text(row)}: {str(row.get('error'))[:200]}")
            if n_failed > 20:
                lines.append(f"  ... and {n_failed - 20} more failures")
        return "\n".join(lines)


def collect(root: str | Path, write: bool = True) -> CollectSummary:
    """Merge every part file under ``root/runs`` into ``root/results.parquet`` (+ ``results.csv``).

    Rows are de-duplicated by run_hash, keeping an ok row over a failed one and the newest among
    equals. Unreadable files are reported and skipped, never merged.
    """
    root = Path(root)
    parts = sorted((root / "runs").glob("*/*.parquet"))
    tables, corrupted = [], []
    for part in parts:
        try:
            tables.append(read_part(part))
        except Exception as err:
            corrupted.append(f"{part} ({type(err).__name__})")
    if tables:  # one conversion to pandas for all parts (a part of failed rows has null-typed metric columns)
        table = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    else:
        table = pd.DataFrame(columns=COLUMN_NAMES)
    if len(table):
        table = dedupe_runs(table).sort_values(["backbone", "dataset", "task", "seed", "created_at"], kind="stable")
        table = table.reset_index(drop=True)
    summary = CollectSummary(table, len(parts), corrupted)
    if write:
        out = root / "results.parquet"
        atomic_write_parquet(table, out)
        csv = table.copy()
        if "per_class_f1" in csv:
            csv["per_class_f1"] = csv["per_class_f1"].map(lambda v: json.dumps(list(v)) if v is not None else "")
        atomic_write_bytes(root / "results.csv", csv.to_csv(index=False).encode())
        summary.path = out
    return summary


def collect_main(argv: list[str] | None = None) -> None:
    """``imprint-bench-collect RESULTS_DIR``: merge the part files of one experiment's results folder."""
    parser = argparse.ArgumentParser(description=collect_main.__doc__)
    parser.add_argument("root", type=Path, help="an experiment's results folder (holds runs/)")
    args = parser.parse_args(argv)
    if not (args.root / "runs").is_dir():
        raise SystemExit(f"error: {args.root} has no runs/ folder; pass <paths.results_dir>/<experiment_name>")
    print(collect(args.root).describe())


@dataclass
class CellOutcome:
    """What evaluating one cell did: runs planned, ok, failed, skipped (done before), pruned (m-NN with m above the
    task's proxies), seconds in the imprinting itself, and the failures' messages."""

    planned: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    pruned_mnn: int = 0
    engine_s: float = 0.0
    failures: list[str] = field(default_factory=list)
