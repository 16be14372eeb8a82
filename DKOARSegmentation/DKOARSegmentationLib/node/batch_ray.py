"""``dkoar batch --ray``: one Ray task per series, on an existing Ray cluster or a local instance.

``auto`` joins the cluster named by RAY_ADDRESS or started on this machine by ``ray start``, and
starts a local instance when there is none; ``local`` always starts a private local instance
(``--workers`` CPUs); anything else is a cluster address (``HOST:6379``, ``ray://HOST:10001``).
A task asks for one GPU when the cluster has GPUs, so each series has a GPU of its own. On a
cluster of several machines, the input and output folders must be on a file system every node
sees at the same path, and DKOARSegmentation must be installed on every node.
"""

from __future__ import annotations

import logging

from ..errors import DKOARError
from .batch import BatchJob, run_job, summary_row

RETRIES = 2  # a task whose worker process died (a node lost, out of memory) runs again elsewhere


def _connect(ray, address: str, workers: int) -> None:
    try:
        if address == "local":
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        elif address == "auto":
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise DKOARError(f"--ray {address}: cannot start or join Ray ({str(exc).splitlines()[0]})") from None


def run_on_ray(jobs: list[BatchJob], model: str, device: str, workers: int, address: str, finished) -> None:
    try:
        import ray
    except ImportError:
        raise DKOARError("--ray needs the ray package: pip install ray==2.60.0") from None
    _connect(ray, address, workers)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=RETRIES)(run_job)
        refs = {task.remote(job, model, device, None): job for job in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                finished(ray.get(done[0]))
            except ray.exceptions.RayError as exc:  # the task could not run even after its retries
                finished(summary_row(refs[done[0]], 0.0, None, f"failed: Ray task: {str(exc).splitlines()[0]}"))
    finally:
        ray.shutdown()
