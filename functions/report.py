"""`report.generate`: a workspace's delivery report, as a CSV file.

One row per function that did anything in the period: jobs processed,
succeeded, failed (attempts), retried, dead, expired, held back by the rate
limits, handler calls with their average and p95 time (from the call-time
buckets of the metrics hash: the bucket's upper bound). The period runs from
the workspace's previous report to now; the first report covers everything
since its metrics began (or were last reset). The file is
`<SLUICE_REPORTS_DIR>/<workspace>/report-<end, UTC>.csv`, written whole under
another name first and then renamed, its path in the job's result; beside it,
`baseline.json` keeps the totals read, which the next report subtracts.

Publish it on demand, or daily with a schedule: `sluice schedules add
report.generate daily --workspace acme --cron "0 6 * * *" --zone
Europe/Berlin --data '{}'`. Keep one report job at a time per workspace (a
schedule, or a `key`): two at once would share a baseline.

Failures: a directory that cannot be written rejects the job (with the
error); Redis unavailable retries it (3 attempts).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from sluice.runtime import (
    Job,
    Reject,
    ReportLine,
    Reports,
    Usage,
    current_client,
    current_settings,
    function,
    period,
)


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """No fields: the job's workspace is the report's."""


class Baseline(msgspec.Struct, frozen=True):
    """The totals a report read, and when: the start of the next one's period."""

    at: datetime
    functions: dict[str, Usage]


class Written(msgspec.Struct, frozen=True):
    """The job's result: the file, its period and its rows."""

    path: str
    start: datetime | None
    end: datetime
    rows: int


COLUMNS = ("workspace", "function", "period_start", "period_end", *ReportLine.__struct_fields__[1:])


def folder(workspace: str) -> Path:
    configured = current_settings().reports_dir
    root = Path(configured) if configured else Path(tempfile.gettempdir()) / "sluice-reports"
    return root / workspace


@function("report.generate", input=Report, example=Report(), timeout_s=120, attempts=3)
async def generate_report(job: Job[Report]) -> Written:
    client = current_client()
    now = await Reports(client.redis, client.registry).usage(job.workspace)
    end = datetime.now(UTC).replace(microsecond=0)
    where = folder(job.workspace)
    baseline_path = where / "baseline.json"
    try:
        before = msgspec.json.decode(baseline_path.read_bytes(), type=Baseline)
    except (FileNotFoundError, msgspec.DecodeError):
        before = None  # the first report, or a baseline no longer readable: from the start
    except OSError as exc:
        raise Reject(f"cannot read the report's baseline in {where}: {exc}") from None
    lines = [
        period(name, totals, None if before is None else before.functions.get(name))
        for name, totals in now.items()
    ]
    rows = [line for line in lines if line.processed or line.calls or line.rate_limited]
    start = None if before is None else before.at
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(COLUMNS)
    for line in rows:
        shown = start.isoformat() if start else ""
        out.writerow([job.workspace, *msgspec.structs.astuple(line)[:1], shown, end.isoformat(),
                      *msgspec.structs.astuple(line)[1:]])  # fmt: skip
    path = where / f"report-{end.strftime('%Y%m%dT%H%M%SZ')}.csv"
    try:
        where.mkdir(parents=True, exist_ok=True)
        _replace(path, text.getvalue().encode())
        _replace(baseline_path, msgspec.json.encode(Baseline(end, now)))
    except OSError as exc:
        raise Reject(f"cannot write the report in {where}: {exc}") from None
    return Written(str(path), start, end, len(rows))


def _replace(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)
