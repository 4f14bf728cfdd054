"""Where the heavy stages run: in this process (``engine: local``, the default) or on a Dask cluster.

Why one helper: the feature build, the statsforecast baselines and the LightGBM forecasts all take a Dask
``Client``; opening it here (a real scheduler from ``cluster.scheduler_address``, else a LocalCluster sized by
``n_workers`` x ``threads_per_worker``) keeps cluster set-up out of the jobs, and a client handed in by the caller
(tests, benchmarks, a notebook) is reused and left open. Dask is imported lazily so the local path never pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from forecasting.config import ClusterConfig
from forecasting.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

ENGINES = ("local", "dask")


def resolve_engine(option: str | None, cfg: ClusterConfig) -> str:
    """The ``--engine`` option if given, else ``cluster.engine``; ConfigError for anything else."""
    engine = (option or cfg.engine).lower()
    if engine not in ENGINES:
        raise ConfigError(f"--engine: expected one of {', '.join(ENGINES)}, got {option!r}")
    return engine


@contextmanager
def dask_client(cfg: ClusterConfig | None = None, client: Client | None = None) -> Iterator[Client]:
    """A distributed ``Client``: ``client`` as is, the scheduler at ``cfg.scheduler_address``, or a LocalCluster.

    Only what this function opened is closed on exit. Dashboards are off (shared machines: no port clashes).
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    cfg = cfg or ClusterConfig()
    if cfg.scheduler_address:
        try:
            own = Client(cfg.scheduler_address, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"cluster.scheduler_address {cfg.scheduler_address}: cannot connect ({exc})") from None
        try:
            yield own
        finally:
            own.close()
        return
    cluster = LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                           processes=cfg.processes, memory_limit=cfg.memory_limit, dashboard_address=None,
                           silence_logs=logging.ERROR)
    own = Client(cluster)
    try:
        yield own
    finally:
        own.close()
        cluster.close()


def worker_count(client: Client) -> int:
    """Workers currently connected (at least 1): sizes partitions so every worker gets work."""
    return max(1, len(client.nthreads()))
