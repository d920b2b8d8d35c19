"""Learning signal: where a thought provably helps, RLP raises held-out information gain.

Task: windows [a, b, c, y] of digits mod 5 with y = (a + 2) mod 5. A short next-token
warm-up teaches a tiny model two kinds of worked examples, half each:

    helpful  [a, b, c, <think>, a,  </think>, y]   the thought recalls a; y is read off it
    filler   [a, b, c, <think>, ?,  </think>, y]   y after a filler thought is never taught

So after the warm-up the policy writes the helpful thought about half of the time, and
only that thought makes x_t = y predictable: S_pred is high after it and low after the
filler. RLP, rewarded by S_pred − S_ema within groups of G thoughts, must shift the policy
to the helpful thought, raising held-out mean information gain. Everything is seeded.
"""

import jax
import jax.numpy as jnp
import optax

from rlp_jax.model import transformer as model
from rlp_jax.rollout import no_think as rewards
from rlp_jax.objectives import rlp
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.config import OptimizerConfig, RLPConfig
from rlp_jax.rollout.sampling import rollout_thoughts

P, OPEN, CLOSE, FILLER = 5, 11, 12, 13
CFG = ModelConfig(vocab_size=16, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, mlp_dim=128)
RCFG = RLPConfig(group_size=8, positions_per_window=1, thought_len=2, temperature=1.0, open_ids=(OPEN,),
                 close_ids=(CLOSE,), min_context=3)
OCFG = OptimizerConfig(learning_rate=5e-4)


def problems(key, n):
    a, b, c = (jax.random.randint(k, (n,), 0, P) for k in jax.random.split(key, 3))
    return a, b, c, (a + 2) % P


def warmup_loss(params, key, n=96):
    a, b, c, y = problems(key, n)
    open_, close, filler = (jnp.full_like(a, v) for v in (OPEN, CLOSE, FILLER))
    seqs = jnp.concatenate([jnp.stack([a, b, c, open_, a, close, y], 1),
                            jnp.stack([a, b, c, open_, filler, close, y], 1)])
    mask = jnp.concatenate([jnp.ones((n, 6)), jnp.tile(jnp.array([[1.0, 1, 1, 1, 1, 0]]), (n, 1))])
    logp = jax.nn.log_softmax(model.forward(params, CFG, seqs)[:, :-1])
    nll = -jnp.take_along_axis(logp, seqs[:, 1:, None], -1)[..., 0]
    return jnp.sum(nll * mask) / jnp.sum(mask)


def warmup(params, steps, key):
    opt = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, key):
        updates, opt_state = opt.update(jax.grad(warmup_loss)(params, key), opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = opt.init(params)
    for k in jax.random.split(key, steps):
        params, opt_state = step(params, opt_state, k)
    return params


def windows(key, n):
    a, b, c, y = problems(key, n)
    return jnp.stack([a, b, c, y], 1)


@jax.jit
def held_out(params, ema_params, window, key):
    """(mean information gain, fraction of helpful thoughts) with a fixed rollout key."""
    t = jnp.full((window.shape[0], 1), 3)
    roll = rollout_thoughts(params, CFG, RCFG, window, t, key)
    s_ema = rewards.at_branches(rewards.no_think_scores(ema_params, CFG, window)[0], roll.t)
    helpful = (roll.lengths >= 1) & (roll.thoughts[..., 0] == jnp.repeat(window[:, :1], RCFG.group_size, 1))
    return jnp.mean(roll.s_pred - s_ema), jnp.mean(helpful)


def test_information_gain_rises_where_thinking_helps():
    params = warmup(model.init_params(CFG, jax.random.key(0)), 500, jax.random.key(1))
    held = windows(jax.random.key(99), 256)
    gain0, helpful0 = map(float, held_out(params, params, held, jax.random.key(7)))
    assert 0.3 < helpful0 < 0.7  # the warm-up left both thoughts likely: RL has work to do

    state = rlp.init_state(params, OCFG, jax.random.key(2))
    for key in jax.random.split(jax.random.key(3), 20):
        state, metrics = rlp.rlp_step_jit(state, windows(key, 32), cfg=CFG, rcfg=RCFG, ocfg=OCFG)
    gain, helpful = map(float, held_out(state.params, state.ema_params, held, jax.random.key(7)))
    print(f"held-out information gain {gain0:.3f} -> {gain:.3f}; helpful thoughts {helpful0:.2f} -> {helpful:.2f}")
    assert helpful > 0.9
    assert gain > gain0 + 0.5
