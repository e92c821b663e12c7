"""Errors that reach the user as one clear line (the CLI and the adapters print them without a traceback)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


class NlflowError(Exception):
    """A user-facing problem: bad input data, bad configuration, a failed download."""


class ConfigError(NlflowError):
    """The configuration is invalid or inconsistent."""


class TrainingError(NlflowError):
    """Training cannot start or went wrong (diverged, inconsistent inputs, out of memory)."""


def check_known_fields(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls`` (a typo must not be ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
