"""What every params section is built from: the error type and the field kinds whose values
are checked wherever params load (``config.py``). A module of its own so that the sections
of the embedded default (``synthetic/params.py``) use it without importing ``config``."""

from __future__ import annotations

from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A params file or override that does not match the dataclasses."""


def choice(default: str, options: tuple[str, ...]) -> Any:
    """A string field that must be one of ``options`` (checked wherever params are loaded)."""
    return field(default=default, metadata={"choices": tuple(options)})


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A number field (or each item of a tuple field) that must lie in ``[low, high]``."""
    return field(default=default, metadata={"low": low, "high": high})


def device_field(default: str = "auto") -> Any:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    return field(default=default, metadata={"pattern": r"auto|cpu|cuda(:\d+)?"})
