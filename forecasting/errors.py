"""Errors a user can act on: the CLI prints them as one line and exits non-zero, the API maps them to 4xx/503."""


class ReplenishError(Exception):
    """Base for expected failures (bad input, unreachable source); never shown with a traceback."""

    exit_code = 2


class ConfigError(ReplenishError):
    """A configuration or scenario file is malformed; the message names the field."""


class SourceUnavailable(ReplenishError):
    """The source database cannot be reached; the message never contains credentials."""


class DataError(ReplenishError):
    """The source holds data the job cannot use (e.g. an existing history, too many bad rows)."""
