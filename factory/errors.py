"""The one error type users see, and its few kinds.

Every error a user should read as one line derives from `FactoryError`; the CLI catches it in one
place, prints `error: <message>` and exits with the error's `exit_code`:

    0 done · 1 a run failed (more requests failed than build.max_failure_rate, a refresh error)
    2 an error with its one-line reason (bad config or input, a refused publish, a missing model…)
    3 nothing new (refresh) · 4 quality gates failed (refresh) · 5 busy (the store or the project is
    held by another process) · 130 interrupted

A message names the file, row and field (or the key) it is about. Anything else that escapes is a
bug and keeps its traceback.
"""

from __future__ import annotations


class FactoryError(Exception):
    """A user-facing error: one line, and the exit code the CLI ends with."""

    exit_code = 2


class ConfigError(FactoryError, ValueError):
    """The config file or a `--set` is wrong: names the key."""


class SourceError(FactoryError, ValueError):
    """A source as a whole cannot be read (missing file, unknown format, no seeds, missing column)."""


class PromptError(FactoryError, ValueError):
    """A template cannot be loaded or rendered: names template, line and variable."""


class StoreError(FactoryError, RuntimeError):
    """The store cannot be opened (not a DuckDB file, a folder, no permission)."""


class StoreBusy(StoreError):
    """Another process holds the store or the project: names the holder."""

    exit_code = 5


class TeacherError(FactoryError, RuntimeError):
    """A teacher cannot start (missing key, model, package)."""


class ModelError(FactoryError, RuntimeError):
    """The embedded model cannot be found or converted."""


class FilterError(FactoryError, RuntimeError):
    """The filter stage cannot run (no plan yet, a benchmark file missing, no safe sandbox)."""


class VersionError(FactoryError, LookupError):
    """There is no such version (or none yet)."""


class TrainError(FactoryError, RuntimeError):
    """Training cannot start or finish (no data, a model that does not load, a bad setting)."""


class EvalError(FactoryError, RuntimeError):
    """An evaluation cannot run."""


class HubError(FactoryError, RuntimeError):
    """Publishing to the Hugging Face Hub failed, or was refused (empty, shrinking)."""
