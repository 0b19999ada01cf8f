"""Ray connection and actor sizing: a local Ray by default, a cluster by --address or RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)

# CPUs kept free for decode tasks on a CPU-only cluster: with none, the actor pool takes every
# CPU and the read/decode tasks that feed it never get scheduled (the job hangs without error).
DECODE_CPUS = 1.0


def connect(address: str | None = None) -> None:
    """Join the cluster at `address` / RAY_ADDRESS (as under `ray job submit`), else start a local Ray."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
    logger.info("ray: %s", ray.cluster_resources())


def actor_resources(workers: int) -> dict:
    """One GPU per encoder actor where the cluster has GPUs; else a share of the CPUs that
    leaves DECODE_CPUS for decoding."""
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    cpus = resources.get("CPU", 1)
    return {"num_gpus": 0, "num_cpus": max(0.25, min(4.0, (cpus - DECODE_CPUS) / workers))}
