"""Errors a plugin raises (or returns for one item of a batch) to tell the platform what happened."""

from __future__ import annotations


class PluginError(Exception):
    """The job cannot succeed as asked: it fails with this message, and is not retried.

    ``code`` is a short machine-readable word (``invalid_input``, ``model_error``, ...);
    ``message`` is shown to the person who submitted the job, so say what to change.
    """

    transient = False

    def __init__(self, message: str, *, code: str = "plugin_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransientPluginError(PluginError):
    """A passing condition (a resource busy, a remote file not yet there): retried with backoff."""

    transient = True

    def __init__(self, message: str, *, code: str = "transient_error") -> None:
        super().__init__(message, code=code)


class JobCancelled(Exception):
    """Raised inside ``generate`` by ``RunContext.raise_if_cancelled`` when the job was cancelled."""


class InvalidPlugin(Exception):
    """A plugin class that breaks the contract; the registry reports it and skips it."""
