"""Multi-host start-up: `jax.distributed.initialize` from config, flags or environment.

Must run before anything touches a JAX device. Cases:
  * a coordinator address is given (config / `RLP_JAX_COORDINATOR`): GPU clusters and
    local multi-process tests — `num_processes` and `process_id` come with it
    (config or `RLP_JAX_NUM_PROCESSES` / `RLP_JAX_PROCESS_ID`);
  * a Cloud TPU pod (several `TPU_WORKER_HOSTNAMES`) or a SLURM job with several tasks:
    `jax.distributed.initialize()` discovers everything itself;
  * otherwise a single process: nothing to do.
On CPU the cross-process collectives need gloo.
"""

from __future__ import annotations

import os

from rlp_jax.errors import UserError, one_line


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name} must be an integer, got {value!r}") from None


def detected_cluster() -> str | None:
    """'tpu-pod' or 'slurm' when the environment describes a multi-host job, else None."""
    hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if len(hosts) > 1 or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu-pod"
    if _env_int("SLURM_NTASKS", 1) > 1 and os.environ.get("SLURM_PROCID") is not None:
        return "slurm"
    return None


def plan(dcfg) -> dict | None:
    """The keyword arguments for `jax.distributed.initialize`, or None for one process."""
    if dcfg.initialize == "never":
        return None
    address = dcfg.coordinator_address or os.environ.get("RLP_JAX_COORDINATOR", "")
    if address:
        count = dcfg.num_processes or _env_int("RLP_JAX_NUM_PROCESSES", 0)
        index = dcfg.process_id if dcfg.process_id >= 0 else _env_int("RLP_JAX_PROCESS_ID", -1)
        if count < 1 or not 0 <= index < count:
            raise UserError(f"distributed.coordinator_address {address} needs distributed.num_processes "
                            f"(>= 1) and distributed.process_id in [0, num_processes); got {count} and {index}")
        return {"coordinator_address": address, "num_processes": count, "process_id": index}
    if dcfg.initialize == "always" or detected_cluster():
        return {}
    return None


def initialize(dcfg) -> bool:
    """Join the multi-host job if there is one; True when `jax.distributed` was initialized."""
    import jax

    kwargs = plan(dcfg)
    if kwargs is None:
        return False
    if jax.distributed.is_initialized():
        return True
    # Only affects the CPU backend (harmless on GPU/TPU hosts, whose CPU client is unused).
    jax.config.update("jax_cpu_collectives_implementation", dcfg.cpu_collectives)
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as err:  # timeouts, refused connections, bad topology
        raise UserError(f"jax.distributed.initialize failed ({kwargs or 'auto-detect'}): {one_line(err)}") from None
    return True


def is_main_process() -> bool:
    import jax

    return jax.process_index() == 0


def all_agree(ok: bool) -> bool:
    """True only if every process says `ok` (a collective: every process must call it)."""
    import jax

    if jax.process_count() == 1:
        return ok
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.array(ok))))
