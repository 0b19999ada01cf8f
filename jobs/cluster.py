"""Ray connection and actor sizing: a local Ray by default, a cluster by --address or RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)

def connect(address: str | None = None) -> None:
    """Join the cluster at `address` / RAY_ADDRESS (as under `ray job submit`), else start a local Ray."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    # A local Ray for one job needs no dashboard; its processes would take CPU from decoding.
    local = {} if address else {"include_dashboard": False}
    ray.init(address=address, logging_level=logging.WARNING, configure_logging=False, **local)
    logger.info("ray: %s", ray.cluster_resources())


def actor_resources(workers: int) -> dict:
    """Encoder actor sizing: one GPU each where the cluster has GPUs.

    On CPU-only clusters the actors hold no logical CPU: one that does keeps decode tasks from
    being scheduled (on 2 CPUs, two such actors hang the job; one halves decoding). Their torch
    `threads` share the node's cores with decoding instead, and the OS interleaves the two.
    """
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1, "threads": 4}
    return {"num_gpus": 0, "num_cpus": 0, "threads": max(1, int(resources.get("CPU", 1) // workers))}


def encoder_pool(workers: int) -> ray.data.ActorPoolStrategy:
    """A fixed pool of `workers` encoder actors, one batch in flight each: with more, the first
    actor up takes queued batches while the others are still loading their model."""
    return ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1)
