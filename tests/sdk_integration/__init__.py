"""Tests of the Python SDK against a running `tracker serve`."""
