"""Warnings and errors specific to dasksvm."""

from sklearn.exceptions import ConvergenceWarning

__all__ = ["ConvergenceWarning", "DaskSVMWarning"]


class DaskSVMWarning(UserWarning):
    """Base class of the package's own warnings (errors in the test configuration)."""
