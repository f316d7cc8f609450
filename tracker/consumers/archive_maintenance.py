"""Scheduled upkeep of an archive table: compaction, checkpoints, vacuum, log cleanup.

Commits every few seconds leave many small Parquet files and JSON log entries,
and reads slow down with their number. Compaction rewrites the files of recent
`date` partitions, because older days were compacted while they were recent. A
checkpoint lets readers skip the JSON log. Vacuum deletes files that no version
within the retention period uses, and log cleanup drops expired log entries.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from tracker.consumers.archive_table import ArchiveTable

__all__ = ["MaintenancePolicy", "run_maintenance"]

logger = logging.getLogger(__name__)

DEFAULT_TARGET_FILE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """How far back to compact and how long replaced files stay for older readers."""

    compact_days: int = 2
    vacuum_retention_hours: float = 168.0
    target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES


def run_maintenance(
    table: ArchiveTable, policy: MaintenancePolicy, *, now: float | None = None
) -> dict[str, Any]:
    """Compact, checkpoint, vacuum and clean up the log; return what each step did."""
    started = time.perf_counter()
    delta = table.refresh()
    today = dt.datetime.fromtimestamp(now if now is not None else time.time(), dt.UTC).date()
    first_day = (today - dt.timedelta(days=policy.compact_days - 1)).isoformat()

    compaction = delta.optimize.compact(
        partition_filters=[("date", ">=", first_day)], target_size=policy.target_file_bytes
    )
    delta.update_incremental()
    delta.create_checkpoint()
    # Vacuum below Delta's 7-day default needs the check off; the retention is the operator's choice.
    removed = delta.vacuum(
        retention_hours=int(policy.vacuum_retention_hours),
        dry_run=False,
        enforce_retention_duration=False,
    )
    delta.cleanup_metadata()

    result = {
        "files_added": compaction.get("numFilesAdded", 0),
        "files_removed": compaction.get("numFilesRemoved", 0),
        "files_vacuumed": len(removed),
        "version": delta.version(),
    }
    logger.info(
        "Archive maintenance finished.",
        extra={
            **result,
            "seconds": round(time.perf_counter() - started, 3),
            "table_uri": table.uri,
        },
    )
    return result
