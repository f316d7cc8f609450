"""On-disk layout of the warm store: hourly rollups in Parquet and the manifest that names them.

```
<WARM_DIR>/
  manifest.json              the only mutable file, replaced atomically
  counts/<id>.parquet        tenant, hour, event_type, count
  params/<id>.parquet        tenant, hour, event_type, key, value, count
  ids/<id>.parquet           event_id, hour: the recent-id ledger used for dedup
```

`hour` is the start of the UTC hour in Unix milliseconds. A file counts only
once the manifest lists it. The aggregator writes new files first, then
replaces the manifest, which also records the broker offsets those files
cover, per source topic (`events-clean` normally, `events-replay` while the
store is rebuilt from the archive). So the data, the ledger and the offsets
always change together.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl

__all__ = ["COUNTS_SCHEMA", "IDS_SCHEMA", "PARAMS_SCHEMA", "Manifest", "WarmStore"]

HOUR_MS = 3_600_000

COUNTS_SCHEMA = {"tenant": pl.String, "hour": pl.Int64, "event_type": pl.String, "count": pl.Int64}
PARAMS_SCHEMA = {
    "tenant": pl.String,
    "hour": pl.Int64,
    "event_type": pl.String,
    "key": pl.String,
    "value": pl.String,
    "count": pl.Int64,
}
IDS_SCHEMA = {"event_id": pl.String, "hour": pl.Int64}
KINDS = ("counts", "params", "ids")
# Manifests written before offsets were kept per topic covered only this topic.
LEGACY_OFFSETS_TOPIC = "events-clean"


@dataclass(slots=True)
class Manifest:
    """The files that make up the store, the broker offsets they cover, and how fresh they are.

    `offsets` maps a source topic to the last offset stored per partition of that topic.
    """

    version: int = 0
    files: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    data_through_ms: int | None = None
    batches_since_compaction: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": self.version,
                "files": self.files,
                "offsets": {
                    topic: {str(partition): offset for partition, offset in stored.items()}
                    for topic, stored in self.offsets.items()
                },
                "data_through_ms": self.data_through_ms,
                "batches_since_compaction": self.batches_since_compaction,
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = orjson.loads(data)
        files = {kind: list(raw["files"].get(kind, [])) for kind in KINDS}
        raw_offsets = raw["offsets"]
        if any(not isinstance(value, dict) for value in raw_offsets.values()):
            raw_offsets = {LEGACY_OFFSETS_TOPIC: raw_offsets}
        return cls(
            version=int(raw["version"]),
            files=files,
            offsets={
                topic: {int(partition): int(offset) for partition, offset in stored.items()}
                for topic, stored in raw_offsets.items()
            },
            data_through_ms=raw.get("data_through_ms"),
            batches_since_compaction=int(raw.get("batches_since_compaction", 0)),
        )


class WarmStore:
    """Reads and writes the files of one warm directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> Manifest:
        """Return the current manifest, or an empty one before the first write."""
        try:
            return Manifest.from_json(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return Manifest()

    def write_frame(self, kind: str, frame: pl.DataFrame) -> str:
        """Write one Parquet file durably and return its name relative to the root."""
        name = f"{kind}/{uuid.uuid4().hex}.parquet"
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="zstd", statistics=True)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        return name

    def replace_manifest(self, manifest: Manifest) -> None:
        """Write the manifest to a temporary file and rename it over the old one (atomic on POSIX)."""
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".manifest-{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.manifest_path)
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def scan(self, manifest: Manifest, kind: str) -> pl.LazyFrame:
        """Return a lazy scan over the files of one kind that the manifest lists."""
        schema = {"counts": COUNTS_SCHEMA, "params": PARAMS_SCHEMA, "ids": IDS_SCHEMA}[kind]
        paths = [str(self.root / name) for name in manifest.files[kind]]
        if not paths:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(paths)

    def remove(self, names: list[str]) -> None:
        """Delete files the manifest no longer lists; a file already gone is fine."""
        for name in names:
            (self.root / name).unlink(missing_ok=True)

    def remove_unlisted(self, manifest: Manifest) -> None:
        """Delete files a crash left behind before their manifest was written."""
        listed = {name for names in manifest.files.values() for name in names}
        for kind in KINDS:
            directory = self.root / kind
            if not directory.is_dir():
                continue
            for path in directory.glob("*.parquet"):
                if f"{kind}/{path.name}" not in listed:
                    path.unlink(missing_ok=True)
        for path in self.root.glob(".manifest-*.tmp"):
            path.unlink(missing_ok=True)
