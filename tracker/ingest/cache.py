"""In-memory copies of the tenant and tracking-URL registry, refreshed in the background.

Handlers read plain dicts without locks: each refresh builds new dicts and
swaps them in with one assignment. A refresh loads only rows whose
`updated_at` is at or after the newest one seen (minus one second, because
timestamps are whole seconds), and reloads everything when the row count
shows that rows were deleted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from tracker.errors import RegistryError
from tracker.registry.tenants import TenantSecrets, load_tenant_secrets
from tracker.registry.tracking_urls import TrackingUrl, load_tracking_urls

__all__ = ["RegistryCache"]

logger = logging.getLogger(__name__)


class RegistryCache:
    """Tenants and tracking URLs of the registry, kept fresh by a background thread."""

    def __init__(self, registry: Any, *, refresh_seconds: float) -> None:
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self.tenants: dict[str, TenantSecrets] = {}
        self.links: dict[str, TrackingUrl] = {}
        self.active_tenants: frozenset[str] = frozenset()
        # Bumped whenever the set of active tenants changes, so dependants can rebuild.
        self.tenant_version = 0
        self.loaded_at = 0.0
        self.refresh_count = 0
        self._tenants_since: int | None = None
        self._links_since: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Load changes since the last refresh; reload all when rows were deleted."""
        tenant_rows = load_tenant_secrets(self.registry, changed_since=self._tenants_since)
        tenants = dict(self.tenants) if self._tenants_since is not None else {}
        for row in tenant_rows:
            tenants[row.key_prefix] = row
        if self._tenants_since is not None and len(tenants) != self._count("tenants"):
            tenants = {row.key_prefix: row for row in load_tenant_secrets(self.registry)}

        link_rows = load_tracking_urls(self.registry, changed_since=self._links_since)
        links = dict(self.links) if self._links_since is not None else {}
        for link in link_rows:
            links[link.tu_id] = link
        if self._links_since is not None and len(links) != self._count("tracking_urls"):
            links = {link.tu_id: link for link in load_tracking_urls(self.registry)}

        active = frozenset(prefix for prefix, tenant in tenants.items() if tenant.active)
        self.tenants = tenants
        self.links = links
        if active != self.active_tenants:
            self.active_tenants = active
            self.tenant_version += 1
        self._tenants_since = _next_since(tenants.values(), self._tenants_since)
        self._links_since = _next_since(links.values(), self._links_since)
        self.loaded_at = time.time()
        self.refresh_count += 1

    def age_seconds(self) -> float:
        """Return the seconds since the last successful refresh."""
        return max(0.0, time.time() - self.loaded_at) if self.loaded_at else float("inf")

    def start(self) -> None:
        """Load once now (errors propagate), then refresh every `refresh_seconds` in a thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="registry-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except (RegistryError, sqlite3.Error) as error:
                logger.error(
                    "Refreshing the registry cache failed; serving the previous copy.",
                    extra={"error": str(error), "age_seconds": round(self.age_seconds(), 1)},
                )

    def _count(self, table: str) -> int:
        # `table` is one of two names fixed in this module.
        (count,) = self.registry.connection().execute(f"SELECT count(*) FROM {table}").fetchone()
        return count


def _next_since(rows: Any, previous: int | None) -> int:
    newest = max((row.updated_at for row in rows), default=previous or 0)
    return max(0, newest - 1)
