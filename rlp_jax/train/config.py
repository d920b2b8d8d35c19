"""The training configuration: one typed dataclass tree, YAML files, `a.b=c` overrides.

`load_config(path, overrides)` reads YAML, applies overrides (values parsed as YAML and
coerced to the field's declared type), and validates every section; any mistake raises a
one-line `UserError` naming the key. This step never touches the filesystem beyond the
YAML file, so every shipped config can be checked anywhere; paths (model directory,
data, tokenizer) are resolved when training starts (`rlp_jax.train.setup`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any

import yaml

from rlp_jax.data.pipeline import DataConfig
from rlp_jax.errors import UserError, one_line
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.presets import architecture
from rlp_jax.model.sharding import MeshConfig
from rlp_jax.objectives import OBJECTIVES
from rlp_jax.objectives.config import RLPConfig, RPTConfig
from rlp_jax.rollout.config import AUTO, RolloutConfig
from rlp_jax.train.optimizer import OptimizerConfig

NONFINITE = ("skip", "stop")
INIT_MODES = ("auto", "always", "never")
# Model fields a user may still change when the architecture comes from --init-from.
INIT_FROM_MODEL_KEYS = ("dtype", "param_dtype", "remat", "scan_layers", "max_seq_len", "head_chunk", "attention",
                        "attention_block")
# Of those, what a config file's `model:` section keeps when init_from comes from the
# command line (the rest of that section described the file's own model).
COMPUTE_MODEL_KEYS = ("dtype", "param_dtype", "remat", "scan_layers", "head_chunk", "attention", "attention_block")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The loop: length, seed, objective, checkpoint / eval / log cadence, failure policy."""

    run_dir: str = "runs/tiny"
    steps: int = 100
    seed: int = 0
    objective: str = "rlp"  # rlp | rpt (prefix-match reward) | ntp (next-token baseline)
    checkpoint_every: int = 25
    keep: int = 3  # checkpoints kept: the newest good ones (and the newest confirmed one; see train/retention.py)
    checkpoint_dir: str = ""  # default RUN_DIR/checkpoints; may be gs://... (Orbax paths)
    async_checkpoint: bool = True
    eval_every: int = 50  # held-out information gain / NLL; 0 disables
    eval_batches: int = 2
    log_every: int = 1
    nonfinite: str = "skip"  # a bad step (non-finite, or diverged): skip keeps the old state and counts it; stop exits
    max_update_ratio: float = 1.0  # a step moving the params by more than this × ‖θ‖ is diverged; 0 disables
    max_eval_rise: float = 1.0  # held-out NLL this many nats above its best marks checkpoints not good; 0 disables
    show_thoughts: int = 4  # rlp: sample thoughts written to RUN_DIR/thoughts.jsonl at every eval; 0 disables
    eval_at_start: bool = False  # also a held-out eval before the first step of a fresh run (the "before")
    progress: bool = True  # tqdm bar on process 0
    sleep_per_step: float = 0.0  # seconds; only for preemption drills and tests

    def __post_init__(self):
        def need(cond, key, message):
            if not cond:
                raise UserError(f"run.{key} {message}")
        need(isinstance(self.run_dir, str) and self.run_dir.strip(), "run_dir", "must be a non-empty path")
        need("://" not in self.run_dir, "run_dir", f"must be a local or mounted directory, got {self.run_dir!r} "
             "(its files are written with plain file I/O); put checkpoints there with run.checkpoint_dir")
        for key in ("steps", "checkpoint_every", "keep", "eval_batches", "log_every"):
            need(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        need(self.eval_every >= 0, "eval_every", f"must be >= 0 (0 disables), got {self.eval_every}")
        need(self.show_thoughts >= 0, "show_thoughts", f"must be >= 0 (0 disables), got {self.show_thoughts}")
        need(self.objective in OBJECTIVES, "objective", f"must be one of {OBJECTIVES}, got {self.objective!r}")
        need(self.nonfinite in NONFINITE, "nonfinite", f"must be one of {NONFINITE}, got {self.nonfinite!r}")
        need(self.sleep_per_step >= 0, "sleep_per_step", "must be >= 0")
        for key in ("max_update_ratio", "max_eval_rise"):
            value = getattr(self, key)
            need(isinstance(value, (int, float)) and 0 <= value < float("inf"), key, f"must be >= 0 (0 disables), got {value}")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """Automatic data preparation for `data.data: builtin:NAME` and `data.tokenizer: auto`."""

    builtin_docs: int = 1000
    validation_fraction: float = 0.05
    cache_dir: str = ""  # default $RLP_JAX_CACHE (~/.cache/rlp_jax)

    def __post_init__(self):
        if self.builtin_docs < 20:
            raise UserError(f"prepare.builtin_docs must be >= 20, got {self.builtin_docs}")
        if not 0 < self.validation_fraction < 1:
            raise UserError(f"prepare.validation_fraction must be in (0, 1), got {self.validation_fraction}")


@dataclasses.dataclass(frozen=True)
class WarmupConfig:
    """A next-token phase before the objective (`rlp_jax.train.warmup`): `steps` of plain
    next-token training on `data` (default data.data) at `learning_rate` (cosine decay to a
    tenth), from init_from or a random init, run as its own run in RUN_DIR/warmup; the
    objective then starts from its final weights."""

    steps: int = 0  # 0: no warm-up
    data: str = ""  # its corpus: builtin:NAME, a TFDS dir (same tokenizer); default data.data
    learning_rate: float = 3e-3
    batch_size: int = 0  # 0: data.batch_size
    seq_len: int = 0  # 0: data.seq_len

    def __post_init__(self):
        if self.steps < 0:
            raise UserError(f"warmup.steps must be >= 0 (0: no warm-up), got {self.steps}")
        if not self.learning_rate > 0:
            raise UserError(f"warmup.learning_rate must be > 0, got {self.learning_rate}")
        for key in ("batch_size", "seq_len"):
            if getattr(self, key) < 0:
                raise UserError(f"warmup.{key} must be >= 0 (0: data.{key}), got {getattr(self, key)}")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """`jax.distributed.initialize` settings (see `rlp_jax.train.distributed`)."""

    initialize: str = "auto"  # auto: when flags/env name a coordinator or a pod/SLURM job is detected
    coordinator_address: str = ""  # host:port of process 0 (GPU clusters, local tests)
    num_processes: int = 0  # 0: from the environment
    process_id: int = -1  # -1: from the environment
    cpu_collectives: str = "gloo"  # CPU-only multi-process runs

    def __post_init__(self):
        if self.initialize not in INIT_MODES:
            raise UserError(f"distributed.initialize must be one of {INIT_MODES}, got {self.initialize!r}")
        if self.coordinator_address and ":" not in self.coordinator_address:
            raise UserError(f"distributed.coordinator_address must be host:port, got {self.coordinator_address!r}")
        if self.num_processes < 0:
            raise UserError(f"distributed.num_processes must be >= 0, got {self.num_processes}")
        if self.num_processes and not -1 <= self.process_id < self.num_processes:
            raise UserError(f"distributed.process_id {self.process_id} is outside [0, {self.num_processes})")


# Defaults are the tiny CPU job (configs/tiny.yaml spells them out).
def _default_model() -> ModelConfig:
    return ModelConfig(vocab_size=352, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                       mlp_dim=192, max_seq_len=256)


def _default_data() -> DataConfig:
    return DataConfig(data="builtin:arithmetic", tokenizer="auto", seq_len=64, batch_size=8)


def _default_rollout() -> RolloutConfig:
    return RolloutConfig(group_size=4, positions_per_window=4, thought_len=8, temperature=1.0, min_context=8,
                         allow_short_thoughts=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. `data.batch_size` is the GLOBAL batch (windows per step)."""

    model: ModelConfig = dataclasses.field(default_factory=_default_model)
    init_from: str = ""  # model directory (rlp-jax convert / fetch); its architecture wins
    # A named shape (rlp_jax.model.presets): the model without init_from (a random init), and
    # what `rlp-jax compile` reads when init_from's directory is not on this machine.
    architecture: str = ""
    data: DataConfig = dataclasses.field(default_factory=_default_data)
    prepare: PrepareConfig = dataclasses.field(default_factory=PrepareConfig)
    warmup: WarmupConfig = dataclasses.field(default_factory=WarmupConfig)  # next-token phase first
    rollout: RolloutConfig = dataclasses.field(default_factory=_default_rollout)  # rlp and rpt sample so
    rlp: RLPConfig = dataclasses.field(default_factory=RLPConfig)  # RLP's loss
    rpt: RPTConfig = dataclasses.field(default_factory=RPTConfig)  # RPT's reward, filter and loss
    optimizer: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(learning_rate=3e-4))
    ema_decay: float = 0.99  # τ of the EMA teacher φ ← τφ + (1 − τ)θ, every objective (paper: 0.999)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    # The model keys the user wrote (file or overrides), which win over the model directory's
    # values even where they equal a default. Known only to `load_config`; never saved.
    model_keys_set: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        tree = _plain(dataclasses.asdict(self))
        tree.pop("model_keys_set")
        return tree


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------- coercion

def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value, hint, key: str):
    """`value` as the declared type `hint`, or a UserError naming `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except UserError as err:
                errors.append(err)
        raise errors[0] if errors else UserError(f"config key {key}: cannot be {value!r}")
    bad = UserError(f"config key {key} expects {_type_name(hint)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if origin is tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        inner = args[0] if args else Any
        return tuple(coerce(v, inner, key) if inner is not Any else v for v in value)
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise bad
    return value


def _section_from(default, values: dict, prefix: str):
    """A copy of the dataclass `default` with `values` (nested dicts) coerced into it."""
    if not isinstance(values, dict):
        raise UserError(f"config key {prefix} must be a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(type(default))
    fields = {f.name for f in dataclasses.fields(default)}
    changes = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise UserError(f"unknown config key {key!r} (known under {prefix or 'the top level'}: {known})")
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            changes[name] = _section_from(current, value, key)
        else:
            changes[name] = coerce(value, hints[name], key)
    try:
        return dataclasses.replace(default, **changes)
    except UserError:
        raise
    except (TypeError, ValueError) as err:
        raise UserError(f"config section {prefix or 'top level'}: {one_line(err)}") from None


# ------------------------------------------------------------------------------ loading

def parse_override(text: str) -> tuple[list[str], Any]:
    """`"rollout.group_size=8"` → (["rollout", "group_size"], 8); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def _merge(tree: dict, parts: list[str], value) -> None:
    for i, part in enumerate(parts[:-1]):
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"config key {'.'.join(parts[:i + 1])} is a value, not a section")
        tree = node
    tree[parts[-1]] = value


def read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"cannot parse config {path}: {one_line(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return data


ROLLOUT_KEYS = tuple(f.name for f in dataclasses.fields(RolloutConfig))


def upgrade(tree: dict) -> dict:
    """Configs written before the `rollout:` section existed kept the rollout settings and
    `ema_decay` under `rlp:`; move them to where they live now (run directories and user
    files keep working)."""
    old = tree.get("rlp")
    if isinstance(old, dict):
        moved = {k: old.pop(k) for k in list(old) if k in ROLLOUT_KEYS}
        if moved:
            rollout = tree.setdefault("rollout", {})
            if isinstance(rollout, dict):
                tree["rollout"] = {**moved, **rollout}
        if "ema_decay" in old:
            tree.setdefault("ema_decay", old.pop("ema_decay"))
    return tree


def load_config(path: str | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults ← YAML file ← overrides, validated (sections and cross-section checks)."""
    tree = read_yaml(path) if path else {}
    typed = [parse_override(text) for text in overrides]
    _init_from_wins(tree, typed, path)
    for parts, value in typed:
        _merge(tree, parts, value)
    tree = upgrade(tree)
    if "model_keys_set" in tree:
        raise UserError("unknown config key 'model_keys_set'")
    cfg = _section_from(TrainConfig(), tree, "")
    model_keys = _keys_set(tree, "model")
    if cfg.init_from or cfg.architecture:
        # The named shape, or (init_from) a placeholder the model directory replaces in
        # `setup.resolve`; either way only the keys the user set are taken from `model:`.
        base = architecture(cfg.architecture) if cfg.architecture else ModelConfig()
        mine = {k: v for k, v in tree.get("model", {}).items() if k in INIT_FROM_MODEL_KEYS}
        cfg = cfg.replace(model=_section_from(base, mine, "model"), model_keys_set=tuple(sorted(mine)))
    cfg = _auto_thought_len(cfg, model_keys, _keys_set(tree, "rollout"))
    check(cfg, model_keys, _keys_set(tree, "rollout"))
    return cfg


def _init_from_wins(tree: dict, typed: list, path: str | None) -> None:
    """A model directory named on the command line (`--init-from`, `init_from=`) replaces
    the config file's architecture: the file's `model:` keys other than compute settings
    are dropped (silently: a notice would make a later error two lines). A file that
    names init_from itself and an architecture is contradictory."""
    model = tree.get("model")
    if not path or not isinstance(model, dict):
        return
    on_command_line = [value for parts, value in typed if parts == ["init_from"]]
    if on_command_line and on_command_line[-1]:
        tree["model"] = {k: v for k, v in model.items() if k in COMPUTE_MODEL_KEYS}
    elif tree.get("init_from") and not on_command_line:
        clash = sorted(set(model) - set(INIT_FROM_MODEL_KEYS))
        if clash:
            raise UserError(f"{path} sets both init_from and model.{clash[0]}: the model directory defines the "
                            f"architecture (only model.{', model.'.join(INIT_FROM_MODEL_KEYS)} may be set with it)")


def _auto_thought_len(cfg: TrainConfig, set_model_keys: set[str], set_rollout_keys: set[str]) -> TrainConfig:
    """The built-in defaults are the tiny job (L = 8, short thoughts allowed). Another model
    (init_from or model keys set) keeps neither unless the user sets them: an unset
    rollout.thought_len becomes the paper's 2048 where the model's positions allow (auto,
    resolved in `rlp_jax.train.setup`), and short thoughts are warned about."""
    if not (cfg.init_from or cfg.architecture or set_model_keys):
        return cfg
    rollout = cfg.rollout
    if "allow_short_thoughts" not in set_rollout_keys:
        rollout = rollout.replace(allow_short_thoughts=False)
    if "thought_len" not in set_rollout_keys and cfg.run.objective in ("rlp", "rpt"):
        rollout = rollout.replace(thought_len=AUTO)
    return cfg.replace(rollout=rollout)


def _keys_set(tree: dict, section: str) -> set[str]:
    """The keys a user wrote under `section` (file or overrides), as opposed to defaults."""
    return set(tree[section]) if isinstance(tree.get(section), dict) else set()


def check(cfg: TrainConfig, set_model_keys: set[str] = frozenset(), set_rollout_keys: set[str] = frozenset()) -> None:
    """Cross-section checks that need no files: impossible combinations, named."""
    cfg.data.validate()
    if cfg.run.objective == "rpt":
        ignored = sorted(set_rollout_keys & {"close_ids", "close_text", "position_strategy"})
        if ignored:
            raise UserError(f"rollout.{ignored[0]} does not apply to run.objective=rpt (completions end at the "
                            f"tokenizer's EOS and positions are chosen by proxy entropy); remove it")
    if cfg.init_from or cfg.architecture:
        clash = sorted(set_model_keys - set(INIT_FROM_MODEL_KEYS))
        source = "init_from (the model directory" if cfg.init_from else "architecture (the named shape"
        if clash:
            raise UserError(f"model.{clash[0]} cannot be set together with {source} defines the architecture; "
                            f"only {', '.join(INIT_FROM_MODEL_KEYS)} may change)")
    if not 0 <= cfg.ema_decay < 1:
        raise UserError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.run.objective in ("rlp", "rpt"):
        getattr(cfg, cfg.run.objective).check_split(cfg.rollout.positions_per_window)
        cfg.rollout.check_window(cfg.data.seq_len, None if cfg.init_from else cfg.model.max_seq_len,
                                 what="a data.seq_len window")
    if cfg.run.objective == "rpt" and cfg.data.seq_len - cfg.rpt.lookahead < cfg.rollout.min_context:
        raise UserError(f"rpt.lookahead ({cfg.rpt.lookahead}) leaves no position of a data.seq_len window "
                        f"({cfg.data.seq_len}) after rollout.min_context ({cfg.rollout.min_context})")
    if cfg.run.objective == "rpt" and cfg.data.data.startswith("synthetic"):
        raise UserError("run.objective=rpt compares decoded text: it needs real data and a tokenizer, not synthetic")
    if cfg.data.data.startswith("synthetic") and cfg.data.tokenizer in ("", "auto") and cfg.run.objective == "rlp" \
            and not (cfg.rollout.open_ids and cfg.rollout.close_ids):
        raise UserError("data.data=synthetic has no tokenizer: set rollout.open_ids and rollout.close_ids")
    if cfg.warmup.steps and cfg.run.objective == "ntp":
        raise UserError("warmup.steps is a next-token phase before rlp or rpt; with run.objective=ntp raise run.steps")
    if cfg.distributed.initialize == "never" and cfg.distributed.coordinator_address:
        raise UserError("distributed.coordinator_address is set but distributed.initialize is 'never'")


def dump_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def from_dict(tree: dict) -> TrainConfig:
    """The inverse of `to_dict` (used for the config stored in checkpoints)."""
    return _section_from(TrainConfig(), upgrade(tree), "")
