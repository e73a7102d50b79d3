"""Errors meant for people: one line that says what is wrong and what to do, plus an exit code."""

from __future__ import annotations


class SaijinError(Exception):
    """An error whose message is shown to the user as one line (exit code 1: a runtime failure)."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SaijinError):
    """A configuration file is missing or invalid (exit code 2)."""

    exit_code = 2


class UsageError(SaijinError):
    """The command line asks for something that cannot be done (exit code 2)."""

    exit_code = 2


class BadInputError(SaijinError):
    """Input data (a WAV file, a message) is unusable (exit code 2)."""

    exit_code = 2


class EngineUnavailable(SaijinError):
    """A language-model engine cannot be reached or refused the request."""


class ModelMissing(SaijinError):
    """A model could not be found or loaded; the message names it and how to get it."""


class MissingExtra(SaijinError):
    """An optional dependency for a configured backend is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed — "
            f"install it with `pip install 'saijin[{extra}]'` (or run `bash .ci/setup`)"
        )
