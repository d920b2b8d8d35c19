"""Device mesh, logical-to-mesh axis rules, and the jit helper used everywhere.

Parallelism is configuration: the mesh has axes `data`, `fsdp`, `tensor`; parameters and
activations carry logical axis names; `DEFAULT_RULES` maps one to the other. A logical
axis whose size does not divide by its mesh axes is replicated instead (so a model with 3
KV heads still runs on tensor=2), and `describe_layout` reports what was chosen.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlp_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axis (or tuple of mesh axes, or None for replicated).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("length", None),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes; exactly one may be -1 ("all remaining devices")."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    def resolve(self, device_count: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        for name, size in zip(MESH_AXES, sizes):
            if not isinstance(size, int) or (size < 1 and size != -1):
                raise UserError(f"mesh.{name} must be a positive integer or -1, got {size!r}")
        if sizes.count(-1) > 1:
            raise UserError("mesh: at most one axis may be -1")
        known = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if device_count % known:
                raise UserError(f"mesh: {device_count} devices do not divide by {known}")
            sizes[sizes.index(-1)] = device_count // known
        if math.prod(sizes) != device_count:
            raise UserError(
                f"mesh data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]} needs "
                f"{math.prod(sizes)} devices, but {device_count} are available")
        return tuple(sizes)


def make_mesh(config: MeshConfig = MeshConfig(), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `Mesh` over `devices` (default: all) with axes (data, fsdp, tensor)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = config.resolve(len(devices))
    try:
        array = jax.experimental.mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # non-TPU topologies: a plain reshape is what we want anyway
        array = np.asarray(devices).reshape(shape)
    return Mesh(array, MESH_AXES)


def _mesh_axes_size(mesh: Mesh, axes) -> int:
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def logical_to_mesh_spec(logical: PartitionSpec, shape: Sequence[int], mesh: Mesh,
                         rules=DEFAULT_RULES) -> PartitionSpec:
    """Map one logical spec to a mesh spec, replicating dimensions that do not divide."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for dim, name in zip(shape, tuple(logical) + (None,) * (len(shape) - len(logical))):
        axes = table.get(name) if name is not None else None
        if isinstance(axes, str):
            axes = (axes,)
        if axes:
            axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if not axes or dim % _mesh_axes_size(mesh, axes):
            out.append(None)
            continue
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def shardings_from_logical(logical_tree, shapes_tree, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for a pytree, given matching trees of logical specs and shapes."""
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, logical_to_mesh_spec(spec, x.shape, mesh, rules)),
        logical_tree, shapes_tree, is_leaf=lambda s: isinstance(s, PartitionSpec))


def param_shardings(model_cfg, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings of the model's parameters under `rules`."""
    from rlp_jax.model import transformer as model

    abstract = model.abstract_params(model_cfg)
    return shardings_from_logical(nn.get_partition_spec(abstract), nn.unbox(abstract), mesh, rules)


def shardings_like(tree, reference_shardings, mesh: Mesh):
    """Shardings for a pytree that embeds parameter-shaped leaves (e.g. optimizer state).

    A leaf whose key path ends with a parameter's key path, with the same shape, gets that
    parameter's sharding; every other leaf (counters, scalars) is replicated.
    """
    by_path = {tuple(path): sharding for path, sharding
               in jax.tree_util.tree_flatten_with_path(reference_shardings)[0]}
    fallback = NamedSharding(mesh, PartitionSpec())

    def fits(spec: PartitionSpec, shape) -> bool:
        return len(spec) <= len(shape) and all(
            dim % _mesh_axes_size(mesh, axes) == 0 for dim, axes in zip(shape, spec))

    def pick(path, leaf):
        path = tuple(path)
        for start in range(len(path)):
            sharding = by_path.get(path[start:])
            if sharding is not None:
                return sharding if fits(sharding.spec, np.shape(leaf)) else fallback
        return fallback

    return jax.tree_util.tree_map_with_path(pick, tree)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, rules=DEFAULT_RULES) -> NamedSharding:
    """Sharding of a `[batch, ...]` array: batch over the data-parallel axes."""
    axes = tuple(a for a in dict(rules)["batch"] if mesh.shape[a] > 1)
    return NamedSharding(mesh, PartitionSpec(axes or None, *([None] * (ndim - 1))))


def sharded_jit(fn: Callable, mesh: Mesh, in_shardings=None, out_shardings=None,
                donate_argnums=(), static_argnums=(), rules=DEFAULT_RULES) -> Callable:
    """`jax.jit` with explicit shardings, run under the mesh and logical axis rules.

    The rules context is what `constrain` inside the model maps logical axes with.
    """
    def wrapped(*args, **kwargs):
        with nn.logical_axis_rules(rules):
            return fn(*args, **kwargs)

    jitted = jax.jit(wrapped, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=donate_argnums, static_argnums=static_argnums)

    def call(*args, **kwargs):
        with jax.sharding.use_mesh(mesh) if hasattr(jax.sharding, "use_mesh") else mesh:
            return jitted(*args, **kwargs)

    call.lower = jitted.lower
    return call


def active_mesh():
    """The mesh a traced function runs under (`sharded_jit`'s), or None: the abstract mesh
    of `jax.set_mesh`/`use_mesh`, else the one of a `with mesh:` block."""
    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty:
        return mesh
    import warnings

    from jax.interpreters import pxla

    with warnings.catch_warnings():  # deprecated with `with mesh:` itself, which sharded_jit still uses
        warnings.simplefilter("ignore", DeprecationWarning)
        physical = pxla.thread_resources.env.physical_mesh
    return None if physical.empty else physical


def gathered_for_decode(params, model_cfg, rules=None):
    """`params` with their `fsdp` shards gathered (other axes kept), for a decode loop.

    Under FSDP a matmul gathers its weight where it runs; inside a `while_loop` that is
    every layer's weights again for every sampled token. Constrained once before the loop,
    the gathered copy is a loop invariant: one all-gather per rollout instead of one per
    token. A no-op outside a mesh, or where the mesh has no fsdp axis.
    """
    from rlp_jax.model import transformer as model

    mesh = active_mesh()
    if mesh is None or dict(mesh.shape).get("fsdp", 1) == 1:
        return params
    rules = tuple(rules or nn.get_logical_axis_rules() or DEFAULT_RULES)
    no_fsdp = tuple((name, _without(axes, "fsdp")) for name, axes in rules)

    def constrain(spec, x):
        return jax.lax.with_sharding_constraint(x, logical_to_mesh_spec(spec, x.shape, mesh, no_fsdp))

    return jax.tree.map(constrain, model.logical_axes(model_cfg), params,
                        is_leaf=lambda s: isinstance(s, PartitionSpec))


def constrain(x, logical: tuple, rules=None):
    """`x` constrained to the logical axes `logical` under the active mesh (dimensions that
    do not divide stay replicated, as for parameters); a no-op outside a mesh."""
    mesh = active_mesh()
    if mesh is None:
        return x
    rules = tuple(rules or nn.get_logical_axis_rules() or DEFAULT_RULES)
    return jax.lax.with_sharding_constraint(x, logical_to_mesh_spec(PartitionSpec(*logical), x.shape, mesh, rules))


def _without(axes, dropped: str):
    if axes is None or isinstance(axes, str):
        return None if axes == dropped else axes
    kept = tuple(a for a in axes if a != dropped)
    return kept or None


def describe_layout(shardings) -> dict[str, str]:
    """`{"params/layers/q/kernel": "PartitionSpec(...)"}` for logs and tests."""
    flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): str(s.spec) for path, s in flat}
