"""Dask plumbing with no SVM mathematics: clients, blocks, reductions, schedules."""

from .blocks import Block, BlockSet, to_csr
from .client import close_embedded_cluster, get_client, worker_addresses
from .reduce import (
    SparseRows,
    SparseVector,
    add_partials,
    allreduce,
    partial_nbytes,
    reduce_task_count,
    to_dense,
    tree_reduce,
)

__all__ = [
    "Block",
    "BlockSet",
    "SparseRows",
    "SparseVector",
    "add_partials",
    "allreduce",
    "close_embedded_cluster",
    "get_client",
    "partial_nbytes",
    "reduce_task_count",
    "to_csr",
    "to_dense",
    "tree_reduce",
    "worker_addresses",
]
