"""The Ray wiring the runs share: the connection, the checks a cluster must pass before any work, the
embedder actor pool and its sizing, and Arrow tables as Ray Data blocks.

A local Ray by default, a cluster by --address or RAY_ADDRESS (as under `ray job submit`).
"""

from __future__ import annotations

import logging
import os

import pyarrow as pa
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from errors import UserError
from storage.table.files import is_local


logger = logging.getLogger(__name__)

# The GPU probe waits for a sliver of each GPU; other jobs may hold them all.
GPU_PROBE_SECONDS = 120
# Captions (or a corpus' texts) per block: the text tower encodes thousands per second; blocks spread
# them over the actors.
CAPTIONS_PER_BLOCK = 1024
# Captions per embedder call.
CAPTIONS_PER_BATCH = 256


class ClusterError(UserError):
    """The cluster cannot run this job as asked; one line that says what to change."""


def cluster_address(address: str | None = None) -> str | None:
    """The cluster a run joins: --address, else RAY_ADDRESS (as under `ray job submit`); None for a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None) -> None:
    """Join the cluster at `address` (see cluster_address), else start a local Ray. "local" is
    explicit: Ray would otherwise join a cluster that `ray start` left on this machine."""
    if ray.is_initialized():
        return
    address = cluster_address(address)
    # A local Ray for one job needs no dashboard; its processes would take CPU from decoding.
    local = {} if address else {"include_dashboard": False}
    ray.init(address=address or "local", logging_level=logging.WARNING, configure_logging=False, **local)
    logger.info("ray: %s", ray.cluster_resources())


def _alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


def _under(path: str, directories: list[str]) -> bool:
    path = os.path.abspath(path.removeprefix("file://"))
    return any(os.path.commonpath([path, os.path.abspath(d)]) == os.path.abspath(d) for d in directories)


def check_paths_reach_every_node(output: str, uris: list[str], shared_dirs: list[str]) -> None:
    """On more than one node, local paths must be on storage every node mounts (`shared_dirs`):
    otherwise each node writes its parts to its own disk, and reads only its own videos."""
    nodes = len(_alive_nodes())
    if nodes < 2:
        return
    advice = "use object storage (s3://...) or declare a directory every node mounts with --shared-dir DIR"
    if is_local(output) and not _under(output, shared_dirs):
        raise ClusterError(f"--output {output} is a local path and this Ray cluster has {nodes} nodes: each would "
                           f"keep the parts it writes on its own disk; {advice}")
    unshared = [u for u in uris if is_local(u) and not _under(u, shared_dirs)]
    if unshared:
        raise ClusterError(f"{len(unshared)} manifest videos are local paths (such as {unshared[0]}) and this Ray "
                           f"cluster has {nodes} nodes: the others cannot read them; {advice}")


@ray.remote(num_cpus=0)
def _cuda_devices() -> int:
    import torch  # noqa: PLC0415 (only this probe, on GPU nodes, needs it)

    return torch.cuda.device_count()


def check_gpus_visible(device: str) -> None:
    """Every node that declares GPUs to Ray must have torch see them, or its embedder actors would
    silently run fp32 on CPU. --device cpu says that is intended (see docs/clusters.md, "GPU nodes")."""
    if device == "cpu":
        return
    gpu_nodes = [n for n in _alive_nodes() if n["Resources"].get("GPU", 0) > 0]
    probes = [_cuda_devices.options(num_gpus=0.01, scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote() for n in gpu_nodes]
    try:
        seen_by_node = ray.get(probes, timeout=GPU_PROBE_SECONDS)
    except ray.exceptions.GetTimeoutError:  # every GPU busy with other work: the actors will tell
        logger.warning("could not check the GPU nodes within %d s (their GPUs are busy)", GPU_PROBE_SECONDS)
        return
    for node, seen in zip(gpu_nodes, seen_by_node):
        if seen == 0:
            raise ClusterError(
                f"node {node['NodeManagerAddress']} ({node['NodeID'][:12]}) declares "
                f"{node['Resources']['GPU']:g} GPU(s) to Ray, but torch there sees no CUDA device; fix its driver or "
                "CUDA_VISIBLE_DEVICES, or pass --device cpu to encode on CPU")


def embedder_resources(workers: int) -> dict:
    """Embedder actor sizing: one GPU each where the cluster has GPUs.

    On CPU-only clusters the actors hold no logical CPU: one that does keeps decode tasks from
    being scheduled (on 2 CPUs two such actors hang the job, and one slows decoding:
    docs/benchmarks.md, "Why the constants are what they are"). Their torch `threads` share the
    node's cores with decoding instead, and the OS interleaves the two.
    """
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1, "threads": 4}
    return {"num_gpus": 0, "num_cpus": 0, "threads": max(1, int(resources.get("CPU", 1) // workers))}


def embedder_pool(workers: int) -> ray.data.ActorPoolStrategy:
    """A fixed pool of `workers` embedder actors, one batch in flight each: with more, the first
    actor up takes queued batches while the others are still loading their model."""
    return ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1)


def embedder_options(spec: dict, workers: int, device: str | None) -> dict:
    """map_batches options of a pool of `workers` embedder actors, each with the model of `spec`."""
    resources = embedder_resources(workers)
    return {"fn_constructor_kwargs": {"spec": spec, "threads": resources["threads"], "device": device},
            # Ray Data restarts a lost actor (OOM killer, node gone) and redoes its batches.
            "compute": embedder_pool(workers), "num_cpus": resources["num_cpus"], "num_gpus": resources["num_gpus"]}


def blocks(table: pa.Table, rows: int) -> ray.data.Dataset:
    """One Ray Data block per `rows` rows (one task each), straight from Arrow."""
    return ray.data.from_arrow([table.slice(start, rows) for start in range(0, table.num_rows, rows)])
