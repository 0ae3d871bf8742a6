"""A node's ``compute:`` section: where its heavy work runs (8.5-2).

Default (no section, or ``compute: {}``): in the party's own process, as
before. With ``compute: {ray: {...}}`` the party hands bucketed PSI, sharded
statistics, histograms and Paillier randomisers to a Ray cluster *of its
own*::

    compute:
      ray:
        address: auto            # auto (ray start on this host), ray://head:10001, or local
        workers: 4               # Ray actors / tasks in flight for this party
        cpus_per_worker: 1
        memory_per_worker_mb: 4096
        listen_host: 10.0.0.5    # where workers accept the peer's workers (mTLS)
        bucket_rows: 1048576     # PSI rows per bucket: the per-worker memory budget
        shard_rows: 262144       # rows per shard: statistics, histograms, batch scoring

The cluster belongs to one party: its workers hold that party's rows and its
certificate's private key (each PSI lane serves the party-to-party transport
under the party's own identity), so it must never be shared with another
organisation.

Pure data, no Ray import: the core package reads a node config without the
``ray`` extra installed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Default PSI bucket: one million ids per KKRT instance (about 350 MB per lane).
DEFAULT_BUCKET_ROWS = 1 << 20
#: Default row shard of a job's in-memory table (statistics, histograms, scoring).
DEFAULT_SHARD_ROWS = 1 << 18


class RayConfig(BaseModel):
    """How this party uses its Ray cluster; every limit is per party."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(
        "auto",
        description="'auto' (a cluster started by 'ray start' on this host), "
        "'ray://host:port' (Ray client), or 'local' (start one in this process)",
    )
    workers: int = Field(2, ge=1, le=4096, description="actors / tasks in flight")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=1024.0)
    memory_per_worker_mb: int | None = Field(
        None, ge=64, description="memory Ray reserves per worker (its scheduler enforces it)"
    )
    listen_host: str = Field(
        "127.0.0.1", description="address the peer's workers reach this party's workers at"
    )
    bucket_rows: int = Field(DEFAULT_BUCKET_ROWS, ge=16, le=1 << 31)
    shard_rows: int = Field(DEFAULT_SHARD_ROWS, ge=16, le=1 << 31,
                            description="rows per Ray task for statistics, histograms, scoring")
    max_retries: int = Field(2, ge=0, le=10, description="Ray retries of a lost task")
    namespace: str = "sharedml"


class ComputeConfig(BaseModel):
    """The node's ``compute:`` section; ``ray`` absent means: in this process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ray: RayConfig | None = None

    @property
    def local(self) -> bool:
        return self.ray is None
