"""Dask plumbing with no SVM mathematics: clients, blocks, reductions, schedules."""

from .blocks import Block, BlockSet, to_csr
from .client import close_embedded_cluster, get_client, local_cluster, worker_addresses
from .reduce import (
    Least,
    SparseRows,
    SparseVector,
    add_into,
    add_partials,
    sq_norm,
    to_dense,
    tree_reduce,
    wire_nbytes,
)

__all__ = [
    "Block",
    "BlockSet",
    "Least",
    "SparseRows",
    "SparseVector",
    "add_into",
    "add_partials",
    "close_embedded_cluster",
    "get_client",
    "local_cluster",
    "sq_norm",
    "to_csr",
    "to_dense",
    "tree_reduce",
    "wire_nbytes",
    "worker_addresses",
]
