"""What a resumed run may change, checked before anything in the run directory is written.

A run directory holds one run: its checkpoints were made by one model from one data
stream under one objective and seed, so those keys must match the saved config (the
latest readable checkpoint's, else `config.yaml` where checkpoints exist but none can be
read). Everything else (steps, eval, checkpoint and log cadence, learning rate and
schedule, rollout and loss settings, EMA decay, mesh) may change between starts;
`config.yaml` then records the new values. A run directory without checkpoints holds
nothing to protect (a start that crashed before its first save: its metrics are truncated
to step 0 when the new start opens them), so any config may start there.
"""

from __future__ import annotations

import os

from rlp_jax.errors import UserError

FIXED = ("model", "init_from", "data", "run.objective", "run.seed")
# Within FIXED, what only changes how the same numbers are computed or read.
FREE = ("model.dtype", "model.remat", "model.head_chunk", "model.attention", "model.attention_block",
        "data.read_threads", "data.prefetch", "data.worker_count")
RULE = ("a resume keeps model.* (but dtype, remat, head_chunk, attention), init_from, data.* (but read_threads, prefetch, "
        "worker_count), run.objective and run.seed; steps, cadence, learning rate, rollout and loss settings may "
        "change")


def _flat(tree: dict) -> dict:
    """`{"section.key": value}` one level deep (a section's values are compared whole)."""
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def _fixed(key: str) -> bool:
    return key not in FREE and any(key == f or key.startswith(f + ".") for f in FIXED)


def _switches(flat: dict) -> dict:
    """On/off settings that change what the saved state holds (its tree of arrays)."""
    out = {}
    if isinstance(flat.get("optimizer.grad_clip"), (int, float)):
        out["optimizer.grad_clip"] = (flat["optimizer.grad_clip"] > 0, "clipping on or off changes the "
                                      "saved optimizer state")
    beta = f"{flat.get('run.objective')}.kl_beta"
    if isinstance(flat.get(beta), (int, float)):
        out[beta] = (flat[beta] > 0, "a KL term on or off changes whether the state keeps θ_0")
    return out


def conflict(saved: dict, cfg) -> tuple[str, object, object, str] | None:
    """The first key that may not change, as `(key, saved value, new value, why)`, or None."""
    old, new = _flat(saved), _flat(cfg.to_dict())
    for key in sorted(set(old) & set(new)):
        if _fixed(key) and old[key] != new[key]:
            return key, old[key], new[key], RULE
    old_on, new_on = _switches(old), _switches(new)
    for key in sorted(set(old_on) & set(new_on)):
        if old_on[key][0] != new_on[key][0]:
            return key, old[key], new[key], new_on[key][1]
    return None


def check(saved: dict, cfg, where: str) -> None:
    """A one-line UserError if `cfg` may not resume the run whose config is `saved`."""
    found = conflict(saved, cfg)
    if found:
        key, old, new, why = found
        raise UserError(f"{where} holds a run with {key}={old!r}, which cannot become {new!r} on resume; "
                        f"use another run.run_dir ({why})")


def _latest_meta(directory: str) -> tuple[bool, dict | None]:
    """`(holds checkpoints, the config saved with the newest one whose meta can be read)`.

    A directory Orbax cannot open counts as holding checkpoints: restoring will say what is
    wrong with it, and until then it is protected like one."""
    if "://" not in directory and not os.path.isdir(directory):
        return False, None
    from rlp_jax.train import checkpoint

    try:
        manager = checkpoint.make_manager(directory, read_only=True)
    except Exception:
        return True, None
    try:
        metas = checkpoint.read_metas(manager)  # a damaged step: its reason, left to the restore
    finally:
        manager.close()
    configs = (metas[s].get("config") for s in sorted(metas, reverse=True) if isinstance(metas[s], dict))
    return bool(metas), next((c for c in configs if isinstance(c, dict)), None)


def saved_config(cfg) -> tuple[dict, str] | None:
    """`(config, where it was read)` of the run `cfg.run.run_dir` holds, or None if it holds
    no checkpoint (then there is nothing a new config could be inconsistent with)."""
    from rlp_jax.train import config as config_lib

    directory = cfg.run.checkpoint_dir or os.path.join(cfg.run.run_dir, "checkpoints")
    held, config = _latest_meta(directory)
    if config is not None:
        return config_lib.upgrade(config), directory
    path = os.path.join(cfg.run.run_dir, "config.yaml")
    if held and os.path.isfile(path):
        return config_lib.upgrade(config_lib.read_yaml(path)), path
    return None
