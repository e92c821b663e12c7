"""Errors that reach the user as one clear line (the CLI and the adapters print them without a traceback)."""


class NlflowError(Exception):
    """A user-facing problem: bad input data, bad configuration, a failed download."""


class ConfigError(NlflowError):
    """The configuration is invalid or inconsistent."""
