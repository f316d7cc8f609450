"""The ingestion service: HTTP endpoints that turn requests into events on the broker."""
