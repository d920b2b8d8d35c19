"""RPT (Dong et al. 2025): think, answer, and be rewarded for an exact prefix match.

One step has the host in the middle, because positions are chosen from a fixed proxy's
entropy and the reward compares decoded text (`collect`):

    proxy       top-16 entropy of a *fixed* proxy (rpt.proxy, default the params at step 0)
    slots       (host) S = B·K (window, position) pairs drawn among those above the
                threshold (`rpt_slots`): filtered positions are never rolled out
    rollout     G completions per slot: context, the template's instruction, "<think>",
                then sampled "… </think> \\boxed{answer}" ended by EOS (θ_old)
    reward      (host) the last \\boxed{} after </think>, byte-prefix + token-boundary match
                against the document's continuation (not only the window's)
    refill      (host, from rpt.dynamic_sampling_from) groups with equal rewards replaced
    loss_batch  GRPO advantages (r − mean)/(std + 1e-6) within groups; empty slots invalid
    loss        the clipped surrogate on the completion tokens, valid slots only

Completions end at the tokenizer's EOS, not at the close-thought marker (which comes
before the answer): `completion_config` makes that explicit, and puts the template's
instruction (tokenized once) before the open marker, teacher-forced like it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlp_jax.model.config import ModelConfig
from rlp_jax.model.vocab_scores import top_k_entropy
from rlp_jax.objectives import policy_loss as pl
from rlp_jax.objectives import rpt_slots
from rlp_jax.objectives.base import HostRewardObjective
from rlp_jax.objectives.config import RPTConfig
from rlp_jax.objectives.prefix_match import continuation_boundaries, extract_answer, prefix_match_reward
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import window_forward
from rlp_jax.rollout import positions
from rlp_jax.rollout.positions import per_position
from rlp_jax.rollout.thoughts import Rollout, rollout_thoughts
from rlp_jax.rollout.window import Window, as_window, take_rows

ROLLOUT_FIELDS = ("t", "thoughts", "lengths", "logp", "s_pred", "prediction")
WINDOW_FIELDS = ("tokens", "segment_ids", "positions")


def completion_config(rollout: RolloutConfig, tokenizer, pcfg: RPTConfig) -> RolloutConfig:
    """The user's rollout settings (markers resolved), with completions ending at EOS and the
    template's instruction tokenized once and teacher-forced before the open marker."""
    suffix = tuple(int(i) for i in tokenizer.encode(pcfg.prompt_suffix)) if pcfg.prompt_suffix else ()
    return rollout.replace(open_ids=suffix + tuple(rollout.open_ids), close_ids=(int(tokenizer.eos_id),),
                           position_strategy="entropy")


@functools.partial(jax.jit, static_argnames=("cfg", "min_context"))
def proxy_entropy(params, cfg: ModelConfig, window, min_context: int):
    """`(entropy, eligible)` `[B, T]`: the proxy's top-16 next-token entropy (each packed
    document seen alone) and where a completion may go (`positions.eligible`)."""
    entropy = per_position(top_k_entropy(window_forward(params, cfg, window)[:, :-1]))
    return entropy, positions.eligible(window, min_context)


@struct.dataclass
class Experience:
    roll: Rollout  # [S, G] branches: one group per slot
    windows: Window  # [S, T] each slot's window
    valid: jax.Array  # [S, 1] slots that hold a group (empty ones decode nothing, cost no loss)
    stats: jax.Array  # [3] eligible fraction, equal-reward fraction (first rollout), refills


def document_continuation(row, pos: int, eos_id, segments=None) -> list[int]:
    """The ground truth x_≥t: the rest of the window, up to the end of its document (its EOS,
    or where the window's `segments` row moves on to the next document)."""
    rest = np.asarray(row[pos:]).tolist()
    if segments is not None:
        seg = np.asarray(segments[pos:])
        ends = np.flatnonzero(seg != seg[0])
        rest = rest[: ends[0]] if ends.size else rest
    return rest[: rest.index(eos_id)] if eos_id is not None and eos_id in rest else rest


def rpt_rewards(roll: Rollout, windows, valid, tokenizer, pcfg: RPTConfig, group_size: int) -> np.ndarray:
    """Host-side rewards `[B, K·G]` of the decoded completions; groups not `valid [B, K]`
    score 0 without decoding."""
    thoughts, lengths, t = (np.asarray(a) for a in (roll.thoughts, roll.lengths, roll.t))
    windows, valid = jax.tree.map(np.asarray, as_window(windows)), np.asarray(valid)
    out = np.zeros(t.shape, np.float32)
    for b, k in zip(*np.nonzero(valid)):
        branches = range(k * group_size, (k + 1) * group_size)
        answers = {r: extract_answer(tokenizer.decode(thoughts[b, r, : lengths[b, r]].tolist()), pcfg.tags,
                                     pcfg.think_end) for r in branches}
        longest = max((len(a.encode("utf-8")) for a in answers.values() if a), default=0)
        if not longest:
            continue
        pos = int(t[b, k * group_size])
        seg = windows.segment_ids[b]
        start = max(0, pos - pcfg.context_tokens)
        context = windows.tokens[b, start:pos][seg[start:pos] == seg[pos]].tolist()  # x_t's document only
        truth, boundaries = continuation_boundaries(
            tokenizer, context, document_continuation(windows.tokens[b], pos, tokenizer.eos_id, seg),
            max_bytes=longest)
        for r, answer in answers.items():
            out[b, r] = prefix_match_reward(answer, truth, boundaries)
    return out


@dataclasses.dataclass(frozen=True)
class RPT(pl.PolicyObjective, HostRewardObjective):
    model: ModelConfig
    rollout_cfg: RolloutConfig  # from `completion_config`; K·B slots per step
    loss_cfg: RPTConfig
    tokenizer: object = dataclasses.field(compare=False, hash=False)
    name = "rpt"

    @property
    def slot_cfg(self) -> RolloutConfig:
        """Rows are slots: one position (one group of G) per row."""
        return self.rollout_cfg.replace(positions_per_window=1)

    def rollout(self, params, teacher, window, key, plan=None) -> Experience:
        """G completions at each slot of `plan = (rows [S], t [S], valid [S])` (from `collect`)."""
        rows, t, valid = (jnp.asarray(a) for a in plan)
        windows = take_rows(as_window(window), rows)
        roll = rollout_thoughts(params, self.model, self.slot_cfg, windows, t[:, None], key, active=valid[:, None])
        return Experience(roll=roll, windows=windows, valid=valid[:, None], stats=jnp.zeros(3))

    def reward(self, experience: Experience, window) -> np.ndarray:
        return rpt_rewards(experience.roll, experience.windows, experience.valid, self.tokenizer, self.loss_cfg,
                           self.rollout_cfg.group_size)

    def collect(self, roll, proxy, window, step: int, seed):
        """`(experience, reward)` of one step, on the host (see the module docstring).
        `roll(attempt, plan)` is the compiled rollout; `proxy = (params, model_cfg)`."""
        pcfg, rcfg = self.loss_cfg, self.rollout_cfg
        entropy, in_document = map(np.asarray, proxy_entropy(proxy[0], proxy[1], as_window(window), rcfg.min_context))
        eligible = rpt_slots.eligible_positions(entropy, pcfg.entropy_threshold, rcfg.min_context, pcfg.lookahead)
        eligible &= in_document
        slots = entropy.shape[0] * rcfg.positions_per_window
        rng = np.random.default_rng(seed)

        def attempt(i):
            experience = roll(i, rpt_slots.draw_slots(eligible, slots, rng))
            return experience, self.reward(experience, window)
        experience, reward = attempt(0)
        valid = np.asarray(experience.valid)[:, 0]
        equal = 1.0 - rpt_slots.informative(reward, valid).sum() / max(valid.sum(), 1)
        refills = 0
        if step >= pcfg.dynamic_sampling_from:
            batch = self._host(experience, reward)
            batch["valid"] = rpt_slots.informative(reward, valid)
            while not batch["valid"].all() and refills < pcfg.max_refills and eligible.any():
                refills += 1
                batch, _ = rpt_slots.refill(batch, self._host(*attempt(refills)))
            experience, reward = self._device(batch), batch["rewards"]
        candidates = entropy.shape[0] * rpt_slots.candidate_positions(entropy.shape[1], rcfg.min_context,
                                                                     pcfg.lookahead)
        stats = np.asarray([eligible.sum() / max(candidates, 1), equal, refills], np.float32)
        return experience.replace(stats=jnp.asarray(stats)), reward

    @staticmethod
    def _host(experience: Experience, reward) -> dict:
        out = {name: np.asarray(getattr(experience.roll, name)) for name in ROLLOUT_FIELDS}
        window = as_window(experience.windows)
        windows = {f"window_{name}": np.asarray(getattr(window, name)) for name in WINDOW_FIELDS}
        return {**out, **windows, "valid": np.asarray(experience.valid)[:, 0], "rewards": np.asarray(reward)}

    @staticmethod
    def _device(batch: dict) -> Experience:
        roll = Rollout(**{name: jnp.asarray(batch[name]) for name in ROLLOUT_FIELDS})
        windows = Window(**{name: jnp.asarray(batch[f"window_{name}"]) for name in WINDOW_FIELDS})
        return Experience(roll=roll, windows=windows, valid=jnp.asarray(batch["valid"])[:, None],
                          stats=jnp.zeros(3))

    def loss_batch(self, experience: Experience, reward, window, reference):
        roll, group, lcfg = experience.roll, self.rollout_cfg.group_size, self.loss_cfg
        valid = jnp.repeat(experience.valid, group, axis=1)
        adv = jnp.where(valid, pl.advantages(reward, group, lcfg.advantage, lcfg.std), 0.0)
        ref_logp = self.reference_logp(reference, self.slot_cfg, experience.windows, roll.t, roll.thoughts,
                                       roll.lengths)
        batch = pl.LossBatch(window=experience.windows, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                             logp_old=roll.logp, advantages=adv, ref_logp=ref_logp, valid=valid)
        branches = jnp.maximum(jnp.sum(valid), 1)
        metrics = dict(
            reward_mean=jnp.sum(jnp.where(valid, reward, 0.0)) / branches,
            kept_positions=jnp.mean(experience.valid.astype(jnp.float32)),
            eligible_positions=experience.stats[0],
            equal_reward_groups=experience.stats[1],
            refills=experience.stats[2],
            completion_len=jnp.sum(jnp.where(valid, roll.lengths, 0)) / branches,
        )
        return batch, metrics

    def loss(self, params, batch: pl.LossBatch):
        return pl.policy_loss(params, self.model, self.slot_cfg, self.loss_cfg, batch)

    def minibatch(self, batch: pl.LossBatch, index, count: int) -> pl.LossBatch:
        return batch.minibatch(index, count, axis=0)  # rows are slots: whole groups
