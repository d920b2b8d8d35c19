"""Learning signal: where a thought provably helps, RLP raises held-out information gain.

Task: windows [a, b, c, y] of digits mod 5 with y = (a + 2) mod 5. A short next-token
warm-up teaches a tiny model two kinds of worked examples, half each:

    helpful  [a, b, c, <think>, a,  </think>, y]   the thought recalls a; y is read off it
    filler   [a, b, c, <think>, ?,  </think>, z]   z is a fresh random digit: no information

So after the warm-up the policy writes the helpful thought about half of the time, and
only that thought makes x_t = y predictable: S_pred ≈ 0 after it and ≈ log 1/5 after the
filler. RLP, rewarded by S_pred − S_ema within groups of G thoughts, must shift the policy
to the helpful thought, raising held-out mean information gain.

Why this is robust (a learning test must not pass on one lucky float trajectory; rounding
differs between CPUs, so any single seeded run is one draw from a distribution):

* Three independent seeds (init, warm-up data, RL data, held-out set, rollout keys), each
  asserted on its own with margins chosen from 20 seeds × 5 perturbations that emulate
  other CPUs (relative noise 1e-6 on the init or on the warmed-up params, XLA fast math,
  AVX2 / SSE4.2 code paths); see the measurements in the change that introduced this.
* The filler is followed by a taught random digit, so S_pred after it is log 1/5 by
  construction. (Left untaught, what the model predicts there is an accident of
  generalization: in some seeds it reads y off a anyway and the filler "helps" too.)
* The warm-up is long enough to get past the copy plateau in every seed measured, and
  ends with a cosine decay, so each seed starts RL with p(helpful) ≈ 0.5.
* RL decays its learning rate to 0 (cosine): with a constant rate, Adam keeps taking
  full-size steps on the vanishing gradient of an almost-settled policy and some seeds
  later collapse (measured: 0.97 → 0.65 helpful between RL steps 20 and 30).
* Compiled programs (init, warm-up step, RL step, held-out evaluation) are shared by the
  seeds: same shapes, one compilation each.
"""

import jax
import jax.numpy as jnp
import optax

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.rlp import RLP
from rlp_jax.rollout.branches import at_branches
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import no_think_scores
from rlp_jax.rollout.thoughts import rollout_thoughts
from rlp_jax.train.optimizer import OptimizerConfig
from rlp_jax.train.state import init_state
from rlp_jax.train.step import make_train_step

P, OPEN, CLOSE, FILLER, NO_ANSWER = 5, 11, 12, 13, 14
CFG = ModelConfig(vocab_size=16, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, mlp_dim=128)
RCFG = RolloutConfig(group_size=8, positions_per_window=1, thought_len=2, temperature=1.0, open_ids=(OPEN,),
                     close_ids=(CLOSE,), min_context=3)
EMA_DECAY = 0.999
SEEDS = (0, 1, 2)
WARMUP_STEPS, WARMUP_BATCH = 600, 24  # per kind of example
RL_STEPS, RL_BATCH, HELD_OUT = 40, 32, 256
OCFG = OptimizerConfig(learning_rate=2e-4, schedule="cosine", decay_steps=RL_STEPS)
WARMUP_OPT = optax.adam(optax.join_schedules(
    [optax.constant_schedule(3e-3), optax.cosine_decay_schedule(3e-3, WARMUP_STEPS // 3, 0.1)],
    [WARMUP_STEPS - WARMUP_STEPS // 3]))


def problems(key, n):
    a, b, c = (jax.random.randint(k, (n,), 0, P) for k in jax.random.split(key, 3))
    return a, b, c, (a + 2) % P


def warmup_loss(params, key, n=WARMUP_BATCH):
    a, b, c, y = problems(key, n)
    open_, close, filler, no_answer = (jnp.full_like(a, v) for v in (OPEN, CLOSE, FILLER, NO_ANSWER))
    seqs = jnp.concatenate([jnp.stack([a, b, c, open_, a, close, y], 1),
                            jnp.stack([a, b, c, open_, filler, close, no_answer], 1)])
    logp = jax.nn.log_softmax(model.forward(params, CFG, seqs)[:, :-1])
    return -jnp.mean(jnp.take_along_axis(logp, seqs[:, 1:, None], -1))


@jax.jit
def warmup_step(params, opt_state, key):
    updates, opt_state = WARMUP_OPT.update(jax.grad(warmup_loss)(params, key), opt_state)
    return optax.apply_updates(params, updates), opt_state


init_params = jax.jit(model.init_params, static_argnums=0)


def warmup(key_init, key_data):
    params = init_params(CFG, key_init)
    opt_state = WARMUP_OPT.init(params)
    for key in jax.random.split(key_data, WARMUP_STEPS):
        params, opt_state = warmup_step(params, opt_state, key)
    return params


def windows(key, n):
    a, b, c, y = problems(key, n)
    return jnp.stack([a, b, c, y], 1)


@jax.jit
def held_out(params, ema_params, window, key):
    """(mean information gain, fraction of helpful thoughts) with a fixed rollout key."""
    t = jnp.full((window.shape[0], 1), 3)
    roll = rollout_thoughts(params, CFG, RCFG, window, t, key)
    s_ema = at_branches(no_think_scores(ema_params, CFG, window)[0], roll.t)
    helpful = (roll.lengths >= 1) & (roll.thoughts[..., 0] == jnp.repeat(window[:, :1], RCFG.group_size, 1))
    return jnp.mean(roll.s_pred - s_ema), jnp.mean(helpful)


_COMPILED = {}


def _rl_step(state):
    """The training step (the factory the loop uses), compiled once for every seed."""
    if "step" not in _COMPILED:
        _COMPILED["step"] = make_train_step(RLP(CFG, RCFG), OCFG, EMA_DECAY, state)[0]
    return _COMPILED["step"]


def run_seed(seed):
    """Warm-up then RLP from `seed`; returns held-out (gain, helpful) before and after RL."""
    key_init, key_warmup, key_rl, key_data, key_held, key_rollout = jax.random.split(jax.random.key(seed), 6)
    params = warmup(key_init, key_warmup)
    held = windows(key_held, HELD_OUT)
    before = tuple(map(float, held_out(params, params, held, key_rollout)))
    state = init_state(params, OCFG, key_rl)
    step = _rl_step(state)
    for key in jax.random.split(key_data, RL_STEPS):
        state, _ = step(state, windows(key, RL_BATCH))
    after = tuple(map(float, held_out(state.params, state.ema_params, held, key_rollout)))
    return before, after


def test_information_gain_rises_where_thinking_helps():
    results = {seed: run_seed(seed) for seed in SEEDS}
    for seed, ((gain0, helpful0), (gain, helpful)) in results.items():
        print(f"seed {seed}: held-out information gain {gain0:.3f} -> {gain:.3f}; "
              f"helpful thoughts {helpful0:.3f} -> {helpful:.3f}")
    for seed, ((gain0, helpful0), (gain, helpful)) in results.items():
        assert 0.35 < helpful0 < 0.65, (seed, helpful0)  # the warm-up left both thoughts likely
        assert helpful > helpful0 + 0.25 and helpful > 0.75, (seed, helpful0, helpful)
        assert gain > gain0 + 0.3, (seed, gain0, gain)
    assert sum(after[1] for _, after in results.values()) / len(SEEDS) > 0.85
