"""User-facing errors.

Every error a user can cause (a bad path, a corrupt model file, an unreadable audio file, an
unsupported option) is raised as a `VoxtralError` subclass whose message is one complete line.
The CLI prints that line and exits non-zero; the app shows it in a dialog. Anything that is not
a `VoxtralError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class VoxtralError(Exception):
    """Base class: `str(err)` is a one-line message meant for the user."""

    exit_code = 1


class ConfigError(VoxtralError):
    """An option or hyperparameter is out of range."""

    exit_code = 2


class ModelFileError(VoxtralError):
    """A model path is missing, not a model, truncated, corrupt or inconsistent."""


class TokenizerError(VoxtralError):
    """tekken.json is missing or malformed."""


class AudioError(VoxtralError):
    """An audio file is missing, empty, corrupt or not audio."""


class DeviceError(VoxtralError):
    """The requested compute device is not available."""
