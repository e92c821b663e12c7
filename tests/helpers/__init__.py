"""Helpers shared by the tests: importable as ``helpers.<module>`` (pytest puts tests/ on the path)."""
