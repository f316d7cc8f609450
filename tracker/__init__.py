"""Multi-tenant event tracking: ingestion, stream consumers and tiered analytics."""

from tracker._core import __version__

__all__ = ["__version__"]
