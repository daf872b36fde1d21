"""Errors a plugin raises (or returns for one item of a batch) to tell the platform what happened."""

from __future__ import annotations

import sys
from typing import Any

from pydantic_core import PydanticCustomError


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


def input_error(code: str, message: str, **context: Any) -> PydanticCustomError:
    """What a validator of a plugin's input or params model raises where it would raise ``ValueError(message)``,
    with a stable ``code`` and the values in its message as ``context``::

        raise input_error("chatbot.stop_string_length", "each stop string must be {min_length} to {max_length} "
                          "characters long", min_length=1, max_length=32)

    The REST API shows the message as pydantic shows a ``ValueError``'s ("Value error, ..."), ``{name}``
    replaced from ``context``; the dashboard knows the error by its type, ``code`` (namespace it with the
    plugin's id), and shows its own translation where it has one, built from ``context``, else this English.
    """
    return PydanticCustomError(code, "Value error, " + message, context or None)


class JobCancelled(Exception):
    """Raised inside ``generate`` by ``RunContext.raise_if_cancelled`` when the job was cancelled."""


class InvalidPlugin(Exception):
    """A plugin class that breaks the contract; the registry reports it and skips it."""


#: How running out of memory reads where no dedicated exception exists: CUDA and MPS say "out of memory";
#: PyTorch's CPU allocator says "DefaultCPUAllocator: can't allocate memory" (errno 12).
_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device or the host running out of memory: torch's ``OutOfMemoryError``,
    Python's ``MemoryError`` (numpy's "Unable to allocate ..." too), or a ``RuntimeError`` that says so.
    One reading for the worker runtime (which splits a batch that ran out) and for plugins that split
    their own calls; torch is not imported here, only consulted when a plugin has loaded it."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return True
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(words in str(error).lower() for words in _OUT_OF_MEMORY_MESSAGES)
