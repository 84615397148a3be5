"""What can go wrong in a way the user can fix, as the CLI maps it to exit codes."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad configuration: the message is one line naming the key (exit code 2)."""


class DataError(ValueError):
    """Bad data: the message is one line naming the file, column or row (exit code 2)."""


class ModelNotFound(LookupError):
    """A model, version or alias the registry does not hold (exit code 1)."""


class SearchInterrupted(KeyboardInterrupt):
    """The search stopped before every trial ended; `kiln run --resume` continues it (exit code 130)."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line, for messages that quote a library's error."""
    return " ".join(str(err).split())
