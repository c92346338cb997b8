"""Errors a user can cause. The CLI and the service turn each into one clear message, never a traceback."""

from __future__ import annotations


class FakelensError(Exception):
    """Base class for every error caused by input (files, names, options), as opposed to a bug."""


class ImageError(FakelensError):
    """An image could not be read: not an image, truncated, too large, unsupported mode."""


class CheckpointError(FakelensError):
    """A checkpoint file is missing, corrupt, or does not match the architecture its config names."""


class UnknownNameError(FakelensError, KeyError):
    """A name (method, model, layer, recipe) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(FakelensError):
    """A model's output is unusable: a score that is NaN or infinite (broken weights, or an overflow). Raised,
    never turned into a verdict: ``NaN >= threshold`` is false, so it read as "real"."""


class ConfigError(FakelensError, ValueError):
    """An option or configuration value is invalid."""


class ExplanationError(FakelensError):
    """A method's map came out unusable: non-finite values (e.g. a model with NaN weights, or an overflow).
    Reported for that method, never scored: a metric would read it as empty or flat."""


class ForgeryError(FakelensError):
    """A recipe cannot make a fake that differs from its real (e.g. a flat image): label noise, refused."""
