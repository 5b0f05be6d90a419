"""Benchmark Flowyard's garbage collection at scale: time and peak memory of one collection over
100,000 jobs and 1,000,000 blobs, against the collection a user would otherwise write (load
every snapshot's manifest, gather the digests they hold, and take the stored blobs that are
not among them).

A SQLite workspace database is filled straight through SQL: 100,000 ended jobs over 20,000
snapshots of 50 blobs each (1,000,000 references), plus 200,000 blobs no snapshot holds and
4,000 snapshots no job ran, all unused for longer than the grace period. Each measurement runs
in a process of its own, which reports its time and the peak resident memory it added (Linux's
VmHWM, reset after the imports); Flowyard's and
the peer's alternate round by round. Both only count (Flowyard's is its dry run: the same
queries as a real collection, which deletes the rows it counts); a last real collection shows
that deleting costs about the same. Blob files are not created: removing a file is the same for
both sides and would measure the disk.

    python bench/gc.py                  # full: 100,000 jobs, 1,000,000 blobs, 3 rounds
    python bench/gc.py --quick          # 10,000 jobs, 100,000 blobs, 2 rounds
    python bench/gc.py --json results.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from common import bench_parser, comparison_table, make_console, write_json

BLOBS_PER_SNAPSHOT = 50
JOBS_PER_SNAPSHOT = 5
GARBAGE_SHARE = 0.2  # unreferenced blobs, beyond the referenced ones
# Memory a collection may take at most, whatever the workspace's size.
MEMORY_GOAL_MB = 300.0


@dataclass(frozen=True)
class Counts:
    jobs: int
    blobs: int
    rounds: int


def _digest(i: int) -> str:
    return f"{i:064x}"


def fill(db: Path, counts: Counts) -> None:
    """A workspace database with ``counts.jobs`` jobs and ``counts.blobs`` blobs."""
    from flowyard.server.db.engine import make_engine, migrate, parse_db_url

    engine = make_engine(parse_db_url(f"sqlite:///{db}"))
    migrate(engine)
    old = datetime.now(UTC) - timedelta(days=30)
    snapshots = counts.jobs // JOBS_PER_SNAPSHOT
    referenced = int(counts.blobs * (1 - GARBAGE_SHARE))
    unused = snapshots // 5
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO flowyard_blobs (digest, size, created_at, used_at) "
                "VALUES (:d, 1000, :at, :at)"
            ),
            [{"d": _digest(i), "at": old} for i in range(counts.blobs)],
        )
        for first in range(0, snapshots + unused, 1000):
            rows, refs = [], []
            for s in range(first, min(first + 1000, snapshots + unused)):
                digests = [
                    _digest((s * BLOBS_PER_SNAPSHOT + k) % referenced)
                    for k in range(BLOBS_PER_SNAPSHOT)
                ]
                manifest = [
                    {"path": f"f{k}.py", "digest": d, "size": 1000, "executable": False}
                    for k, d in enumerate(digests)
                ]
                rows.append({"id": f"s{s:063d}", "m": json.dumps(manifest), "at": old})
                refs += [{"s": f"s{s:063d}", "d": d} for d in digests]
            conn.execute(
                sa.text(
                    "INSERT INTO flowyard_snapshots (id, file_count, total_bytes, manifest, "
                    f"created_at, used_at) VALUES (:id, {BLOBS_PER_SNAPSHOT}, 0, :m, :at, :at)"
                ),
                rows,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO flowyard_snapshot_blobs (snapshot_id, digest) VALUES (:s, :d)"
                ),
                refs,
            )
        job = (
            "INSERT INTO flowyard_jobs (id, experiment_id, snapshot_id, project_uri, entry_point, "
            "parameters, environment, options, compute, status, priority, cancel_requested, "
            '"user", attempt, submitted_at, ended_at, log_size, secret_env) VALUES '
            "(:id, '0', :s, '.', 'main', '{}', '{}', '{}', 'local', 'completed', 0, 0, 'u', 1, "
            ":at, :at, 0, '{}')"
        )
        for first in range(0, counts.jobs, 10_000):
            conn.execute(
                sa.text(job),
                [
                    {"id": f"{j:032x}", "s": f"s{j // JOBS_PER_SNAPSHOT:063d}", "at": old}
                    for j in range(first, min(first + 10_000, counts.jobs))
                ],
            )
    engine.dispose()


def measure(side: str, db: Path, dry_run: bool) -> dict[str, float]:
    """One collection in this process: its seconds, peak resident memory and what it found."""
    from flowyard.server.db.engine import make_engine, parse_db_url
    from flowyard.server.services import gc
    from flowyard.server.settings import ServerSettings

    engine = make_engine(parse_db_url(f"sqlite:///{db}"))
    before = _reset_peak()
    started = time.perf_counter()
    if side == "flowyard":
        settings = ServerSettings("bench", f"sqlite:///{db}", str(db.parent / "artifacts"))
        done = gc.collect(engine, settings, dry_run=dry_run)
        found = {"snapshots": done.snapshots, "blobs": done.blobs}
    else:
        found = _peer(engine)
    took = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    engine.dispose()
    return {"seconds": took, "peak_mb": peak / 1024, "added_mb": (peak - before) / 1024, **found}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Start counting the peak resident memory from now (Linux: clear_refs 5), past the
    imports' own peak; returns the resident memory now, in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def _peer(engine: sa.Engine) -> dict[str, float]:
    """The collection written by hand: every manifest read, the held digests in a set."""
    with engine.connect() as conn:
        used = set(
            conn.execute(sa.text("SELECT DISTINCT snapshot_id FROM flowyard_jobs")).scalars()
        )
        held: set[str] = set()
        unused = 0
        for sid, manifest in conn.execute(sa.text("SELECT id, manifest FROM flowyard_snapshots")):
            if sid not in used:
                unused += 1
                continue
            held.update(f["digest"] for f in json.loads(manifest))
        garbage = sum(
            1
            for d in conn.execute(sa.text("SELECT digest FROM flowyard_blobs")).scalars()
            if d not in held
        )
    return {"snapshots": unused, "blobs": garbage}


def _child(side: str, db: Path, dry_run: bool) -> dict[str, float]:
    env = {**os.environ, "XDG_CACHE_HOME": str(db.parent / "cache")}
    out = subprocess.run(
        [sys.executable, __file__, "--measure", side, "--db", str(db)]
        + ([] if dry_run else ["--for-real"]),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = bench_parser(__doc__, "10,000 jobs and 100,000 blobs, 2 rounds")
    parser.add_argument("--measure", choices=["flowyard", "peer"], help=argparse_hidden())
    parser.add_argument("--db", type=Path, help=argparse_hidden())
    parser.add_argument("--for-real", action="store_true", help=argparse_hidden())
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.db, not args.for_real)))
        return
    counts = (
        Counts(jobs=10_000, blobs=100_000, rounds=2)
        if args.quick
        else Counts(jobs=100_000, blobs=1_000_000, rounds=3)
    )
    console = make_console()
    with tempfile.TemporaryDirectory(prefix="flowyard-bench-gc-") as tmp:
        db = Path(tmp) / "flowyard.db"
        started = time.perf_counter()
        fill(db, counts)
        console.print(
            f"{counts.jobs:,} jobs, {counts.blobs:,} blobs filled in "
            f"{time.perf_counter() - started:.1f} s ({db.stat().st_size / 1e6:,.0f} MB)"
        )
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for _ in range(counts.rounds):  # interleaved: each side meets the same machine state
            ours.append(_child("flowyard", db, dry_run=True))
            theirs.append(_child("peer", db, dry_run=True))
        assert ours[0]["blobs"] == theirs[0]["blobs"], (ours[0], theirs[0])
        assert ours[0]["snapshots"] == theirs[0]["snapshots"], (ours[0], theirs[0])
        real = _child("flowyard", db, dry_run=False)
    console.print(
        comparison_table(
            "one collection, seconds",
            "side",
            (
                ("flowyard", [r["seconds"] for r in ours]),
                ("by hand", [r["seconds"] for r in theirs]),
            ),
            "flowyard / by hand",
            "flowyard - by hand",
        )
    )
    console.print(
        comparison_table(
            "one collection, peak memory added (MB)",
            "side",
            (
                ("flowyard", [r["added_mb"] for r in ours]),
                ("by hand", [r["added_mb"] for r in theirs]),
            ),
            "flowyard / by hand",
            "flowyard - by hand",
        )
    )
    console.print(
        f"found {ours[0]['snapshots']:,.0f} snapshots and {ours[0]['blobs']:,.0f} blobs to free; "
        f"the real collection freed {real['snapshots']:,.0f} and {real['blobs']:,.0f} in "
        f"{real['seconds']:.1f} s, {real['added_mb']:.0f} MB added"
    )
    met = max(r["added_mb"] for r in [*ours, real]) <= MEMORY_GOAL_MB
    console.print(
        f"[bold]goal[/]: memory bounded ({MEMORY_GOAL_MB:.0f} MB at most): "
        f"{'[green]MET[/]' if met else '[red]MISSED[/]'}"
    )
    if args.json:
        write_json(args.json, args.quick, counts, console, flowyard=ours, peer=theirs, real=real)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
