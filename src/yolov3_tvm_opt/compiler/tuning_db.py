"""A tuning directory's files: MetaSchedule's JSON database plus our ``summary.json``, and the copies we cut from it.

Kept apart from the tuner so that compile can apply a database without importing MetaSchedule's
search, and the tuning curve can cut one long run into budgets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.files import write_json

SUMMARY_FILE = "summary.json"


def load_summary(tuning_dir: Path) -> dict[str, Any]:
    """The summary of a tuning directory (what was tuned, for which target, how long)."""
    path = Path(tuning_dir) / SUMMARY_FILE
    if not path.is_file():
        raise UserError(f"{tuning_dir} is not a tuning directory (no {SUMMARY_FILE}); tune with `yolov3-tvm compile --tune` or the pipeline's tune stage first")
    return json.loads(path.read_text())


RECORDS_FILE = "database_tuning_record.json"
WORKLOADS_FILE = "database_workload.json"


def _database_lines(tuning_dir: Path) -> tuple[int, list[str]]:
    """(number of seed records, every record line) of a tuning directory, in commit order."""
    seeds = load_summary(tuning_dir).get("seed_records", 0)
    return seeds, (Path(tuning_dir) / RECORDS_FILE).read_text().splitlines(keepends=True)


def _write_database(tuning_dir: Path, out_dir: Path, lines: list[str]) -> Path:
    """A database directory with ``tuning_dir``'s workloads and the given record lines."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WORKLOADS_FILE).write_text((Path(tuning_dir) / WORKLOADS_FILE).read_text())
    (out_dir / RECORDS_FILE).write_text("".join(lines))
    return out_dir


def truncated_database(tuning_dir: Path, trials: int, out_dir: Path) -> Path:
    """A copy of ``tuning_dir`` holding its seed records and its first ``trials`` measured ones.

    MetaSchedule's JSON database appends one line per measured candidate, in measurement order,
    after the seeds of our default schedules, so the first seeds + N lines are exactly the
    database as it stood after N trials: one long tuning run gives the whole latency-vs-trials
    curve.
    """
    summary = load_summary(tuning_dir)
    seeds, lines = _database_lines(tuning_dir)
    out_dir = _write_database(tuning_dir, out_dir, lines[: seeds + trials])
    write_json(out_dir / SUMMARY_FILE, {**summary, "trials": min(trials, len(lines) - seeds), "truncated_from": summary["trials"]})
    return out_dir


def improving_records(tuning_dir: Path, out_dir: Path) -> int:
    """Copy into ``out_dir`` the records of the tasks where the search beat our seed; return how many.

    A seed only stands for ``cpu_schedule``, which compile applies anyway to every function
    without a record, and is the schedule of the time of tuning: applying seeds would pin an old
    default and call it "tuned". So a tuned build takes MetaSchedule's records exactly where they
    were measured faster than our schedule, and our current default everywhere else.
    """
    seeds, lines = _database_lines(tuning_dir)

    def seconds(line: str) -> tuple[int, float]:
        workload, (_, run_secs, *_) = json.loads(line)
        return workload, sum(run_secs) / len(run_secs) if run_secs else float("inf")

    seed_time = dict(seconds(line) for line in lines[:seeds])
    best: dict[int, float] = {}
    for line in lines[seeds:]:
        workload, secs = seconds(line)
        best[workload] = min(secs, best.get(workload, float("inf")))
    improved = {w for w, secs in best.items() if secs < seed_time.get(w, float("inf"))}
    _write_database(tuning_dir, out_dir, [line for line in lines[seeds:] if seconds(line)[0] in improved])
    return len(improved)
