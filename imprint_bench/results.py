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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imprint_bench.errors import ConfigError, check_writable_folder, storage_error
from imprint_bench.identity import canonical_json
from imprint_bench.imprint.registry import config_text
from imprint_bench.schema import COLUMN_NAMES, dedupe_runs, to_arrow


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; fsynced and renamed over ``path`` when the block ends,
    so there is never a half-written file. A failed write leaves no temporary file and raises StorageError."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise storage_error(path.name, path.parent, err) from err
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_table(table: pa.Table, path: Path, **options: Any) -> None:
    """Write a Parquet file atomically, with page checksums (collect verifies them: a flipped byte is caught);
    ``options`` go to ``pyarrow.parquet.write_table``."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True, **options)


#: Schema-metadata key of a part's row digest: the SHA-256 of its rows as canonical JSON. Page checksums
#: cover page data but not page headers; the digest covers every value, whatever byte was damaged.
ROWS_DIGEST = b"imprint_bench.rows_sha256"


def rows_digest(table: pa.Table) -> bytes:
    """SHA-256 (hex) of a table's rows as canonical JSON."""
    return hashlib.sha256(canonical_json(table.to_pylist()).encode()).hexdigest().encode()


#: A part is a few rows: plain pages (no compression, dictionary or statistics) write in two thirds of the time.
PART_OPTIONS = {"compression": "none", "use_dictionary": False, "write_statistics": False}


class _WrittenParts:
    """The parts this process wrote, kept in memory with the (size, mtime) they had once written: reading one back
    while the file still has that stamp returns the kept table (collect after a sweep, the skip-existing check of a
    cell) instead of reading, verifying and decoding it again. Up to ``max_rows`` rows in all."""

    def __init__(self, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self.rows = 0
        self._tables: dict[Path, tuple[list[int] | None, pa.Table]] = {}

    def keep(self, path: Path, table: pa.Table) -> None:
        if self.rows + table.num_rows <= self.max_rows:
            self._tables[path] = (_stamp(path), table)
            self.rows += table.num_rows

    def get(self, path: Path) -> pa.Table | None:
        kept = self._tables.get(path)
        if kept is None or kept[0] is None or _stamp(path) != kept[0]:
            return None
        return kept[1]


WRITTEN_PARTS = _WrittenParts()


def write_part(rows: list[dict[str, Any]], path: Path) -> None:
    """Result rows as one atomic Parquet part with the schema's types and the digest of its rows."""
    table = to_arrow(rows)
    atomic_write_table(table.replace_schema_metadata({ROWS_DIGEST: rows_digest(table)}), path, **PART_OPTIONS)
    WRITTEN_PARTS.keep(path, table)


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A part, verified: page checksums while reading, then the digest of its rows. A part without a digest was not
    written by imprint_bench (or had its metadata stripped): it is refused like a damaged one. Raises
    ``ValueError`` on either (pyarrow raises ``OSError`` for a page that fails its checksum). ``columns`` reads
    only those (the digest is then not checked: for quick looks). A part this process wrote and that is unchanged
    since comes from memory."""
    kept = WRITTEN_PARTS.get(path)
    if kept is not None:
        return kept.select(columns) if columns is not None else kept
    if columns is not None:
        return pq.ParquetFile(path, page_checksum_verification=True).read(columns=columns)
    table = pq.ParquetFile(path, page_checksum_verification=True).read()
    stored = (table.schema.metadata or {}).get(ROWS_DIGEST)
    if stored is None:
        raise ValueError(f"{path}: no rows digest (not a part written by imprint_bench, or its metadata was "
                         "stripped)")
    if rows_digest(table) != stored:
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
        check_writable_folder(self.runs_dir, f"the results folder {self.root} is not writable",
                              "set paths.results_dir (or paths.root) to a folder you can write")

    def cell_dir(self, cell_hash: str) -> Path:
        return self.runs_dir / cell_hash

    def done_hashes(self, cell_hash: str) -> set[str]:
        """Run hashes of this cell that already have an ok row in a verified part (a damaged or foreign part is
        ignored here: its runs run again; collect reports it)."""
        done: set[str] = set()
        for part in sorted(self.cell_dir(cell_hash).glob("*.parquet")):
            try:
                df = read_part(part).select(["run_hash", "status"]).to_pandas()
            except Exception:
                continue
            done.update(df.loc[df["status"] == "ok", "run_hash"].astype(str))
        return done

    def is_complete(self, cell_hash: str, plan_hash: str) -> bool:
        """Whether the cell's marker matches the plan and every part it recorded is still there, unchanged (size
        and modification time): a deleted or damaged part makes the cell run again (its missing runs only). A
        marker written before parts were recorded is checked against the run hashes the parts hold."""
        folder = self.cell_dir(cell_hash)
        try:
            marker = json.loads((folder / "complete.json").read_text())
        except (OSError, ValueError):
            return False
        if marker.get("plan_hash") != plan_hash:
            return False
        if "parts" not in marker:
            return len(self.done_hashes(cell_hash)) >= int(marker.get("n_runs", 0))  # marked only without failures
        return all(_stamp(folder / name) == stamp for name, stamp in marker["parts"].items())

    def mark_complete(self, cell_hash: str, plan_hash: str, n_runs: int) -> None:
        """Record the cell as complete: its plan, its number of runs and the parts that hold them."""
        folder = self.cell_dir(cell_hash)
        parts = {part.name: _stamp(part) for part in sorted(folder.glob("*.parquet"))}
        payload = {"plan_hash": plan_hash, "n_runs": n_runs, "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   "parts": parts}
        atomic_write_bytes(folder / "complete.json", json.dumps(payload).encode())

    def writer(self, cell_hash: str, flush_every: int = 50, flush_seconds: float = 5.0) -> RowWriter:
        return RowWriter(self.cell_dir(cell_hash), flush_every, flush_seconds)


def _stamp(path: Path) -> list[int] | None:
    """(size, mtime in ns) of a file, or None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


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
    """What collect merged, what it had to skip, what it kept from an earlier table and what is missing."""

    table: pd.DataFrame
    n_parts: int = 0
    corrupted: list[str] = field(default_factory=list)
    path: Path | None = None
    kept: int = 0  # rows of the existing results.parquet that no readable part holds (copied results, lost parts)
    missing: dict[str, tuple[int, int]] = field(default_factory=dict)  # cell hash -> (runs found, runs expected)

    def describe(self) -> str:
        t = self.table
        n_ok = int((t["status"] == "ok").sum()) if len(t) else 0
        n_failed = len(t) - n_ok
        lines = [f"collected {len(t)} runs ({n_ok} ok, {n_failed} failed) from {self.n_parts} part files"
                 + (f" -> {self.path}" if self.path else "")]
        lines += [f"  skipped corrupted file: {c}" for c in self.corrupted]
        if self.kept:
            lines.append(f"  kept {self.kept} rows of the existing results.parquet that no readable part file holds "
                         "(results copied from elsewhere, or parts deleted or damaged since)")
        if self.missing:
            n = sum(expected - found for found, expected in self.missing.values())
            cells = ", ".join(f"{cell[:12]} ({found} of {expected})" for cell, (found, expected)
                              in list(self.missing.items())[:10])
            lines.append(f"  {n} expected runs are missing from the part files of {len(self.missing)} cells marked "
                         f"complete (runs found of expected): {cells}{', ...' if len(self.missing) > 10 else ''}; "
                         "run the same command again to recompute them")
        if n_failed:
            failed = t[t["status"] != "ok"]
            for _, row in failed.head(20).iterrows():
                lines.append(f"  failed: {row.get('backbone')}/{row.get('dataset')}/{row.get('task')}/"
                             f"seed={row.get('seed')} {config_text(row)}: {str(row.get('error'))[:200]}")
            if n_failed > 20:
                lines.append(f"  ... and {n_failed - 20} more failures")
        return "\n".join(lines)


def check_experiment(root: str | Path) -> Path:
    """An experiment's results folder that exists (holds runs/ or a results.parquet); otherwise a ConfigError that
    lists the experiments that do exist. Nothing is created."""
    root = Path(root)
    if (root / "runs").is_dir() or (root / "results.parquet").is_file():
        return root
    found = sorted(p.name for p in root.parent.glob("*") if (p / "runs").is_dir() or (p / "results.parquet").is_file())
    where = f"experiments in {root.parent}: {', '.join(found)}" if found else f"{root.parent} holds no experiment yet"
    raise ConfigError(f"no results for experiment {root.name!r} (no {root}/runs or results.parquet); {where}")


def collect(root: str | Path, write: bool = True) -> CollectSummary:
    """Merge every part file under ``root/runs`` into ``root/results.parquet`` (+ ``results.csv``).

    Rows are de-duplicated by run_hash, keeping an ok row over a failed one and the newest among equals.
    Unreadable, damaged and foreign files (no valid rows digest) are reported and skipped, never merged. Rows of
    an existing results.parquet that no readable part holds are kept and counted (a collect never shrinks the
    table silently); without runs/ the existing table is read as it is. Cells marked complete whose runs are no
    longer all readable are reported with how many are missing.
    """
    root = check_experiment(root)
    out = root / "results.parquet"
    existing = _read_existing(out)
    if not (root / "runs").is_dir():
        return CollectSummary(existing if existing is not None else pd.DataFrame(columns=COLUMN_NAMES), path=out)
    parts = sorted((root / "runs").glob("*/*.parquet"))
    tables, corrupted = [], []
    for part in parts:
        try:
            tables.append(read_part(part))
        except Exception as err:
            corrupted.append(f"{part} ({type(err).__name__}: {str(err).removeprefix(f'{part}: ')[:120]})")
    if tables:  # one conversion to pandas for all parts (a part of failed rows has null-typed metric columns)
        table = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    else:
        table = pd.DataFrame(columns=COLUMN_NAMES)
    missing = _missing_runs(root, table)
    kept = 0
    if existing is not None and len(existing):
        hashes = set(table["run_hash"].astype(str)) if len(table) else set()
        old = existing[~existing["run_hash"].astype(str).isin(hashes)] if "run_hash" in existing else existing
        kept = len(old)
        if kept:
            table = pd.concat([table, old], ignore_index=True) if len(table) else old.reset_index(drop=True)
    if len(table):
        table = dedupe_runs(table).sort_values(["backbone", "dataset", "task", "seed", "created_at"], kind="stable")
        table = table.reset_index(drop=True)
    summary = CollectSummary(table, len(parts), corrupted, kept=kept, missing=missing)
    if write:
        atomic_write_parquet(table, out)
        csv = table.copy()
        if "per_class_f1" in csv:
            csv["per_class_f1"] = csv["per_class_f1"].map(lambda v: json.dumps(list(v)) if v is not None else "")
        atomic_write_bytes(root / "results.csv", csv.to_csv(index=False).encode())
        summary.path = out
    return summary


def _read_existing(path: Path) -> pd.DataFrame | None:
    """The results table a previous collect (or a copy) left, or None; an unreadable one is a ConfigError, so that
    it is never replaced unseen."""
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:
        raise ConfigError(f"cannot read the existing {path} ({type(err).__name__}: {err}); move it away to collect "
                          "the part files into a new one") from err


def _missing_runs(root: Path, table: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Cells whose completion marker promises more runs than their readable parts hold: (found, expected)."""
    found = table.groupby("cell_hash")["run_hash"].nunique() if len(table) and "cell_hash" in table else pd.Series()
    missing = {}
    for marker in sorted((root / "runs").glob("*/complete.json")):
        try:
            expected = int(json.loads(marker.read_text()).get("n_runs", 0))
        except (OSError, ValueError):
            continue
        cell = marker.parent.name
        have = int(found.get(cell, 0))
        if have < expected:
            missing[cell] = (have, expected)
    return missing


def collect_main(argv: list[str] | None = None) -> None:
    """``imprint-bench-collect RESULTS_DIR``: merge the part files of one experiment's results folder."""
    parser = argparse.ArgumentParser(description=collect_main.__doc__)
    parser.add_argument("root", type=Path, help="an experiment's results folder (holds runs/)")
    args = parser.parse_args(argv)
    try:
        print(collect(args.root).describe())
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None


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
