"""Data onto the workers: the svmlight loader, named datasets, synthetic data."""

from .fetch import fetch, load_demo
from .svmlight import load_svmlight
from .synthetic import make_classification

__all__ = ["fetch", "load_demo", "load_svmlight", "make_classification"]
