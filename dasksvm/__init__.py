"""dasksvm: exact, certified support vector machines on Dask."""

from .estimators.cascade import CascadeSVC
from .estimators.features import (
    MaxAbsScaler,
    Nystroem,
    OrthogonalRandomFeatures,
    RandomFourierFeatures,
)
from .estimators.linear import LinearSVC
from .estimators.path import C_path
from .exceptions import ConvergenceWarning
from .parallel.client import get_client, local_cluster
from .persist import load_model, save_model

__version__ = "0.1.0"

__all__ = [
    "C_path",
    "CascadeSVC",
    "ConvergenceWarning",
    "LinearSVC",
    "MaxAbsScaler",
    "MulticlassSVC",
    "Nystroem",
    "OrthogonalRandomFeatures",
    "RandomFourierFeatures",
    "__version__",
    "get_client",
    "load_model",
    "local_cluster",
    "save_model",
]


def __getattr__(name):
    # MulticlassSVC is imported on first use (its solvers pull in more kernels)
    if name == "MulticlassSVC":
        from .estimators.multiclass import MulticlassSVC

        return MulticlassSVC
    raise AttributeError(f"module 'dasksvm' has no attribute {name!r}")
