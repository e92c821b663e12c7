"""Helpers shared by the tests, importable as ``helpers.<module>`` (pyproject puts tests/ on the path)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
