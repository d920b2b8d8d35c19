"""What a thought can gain at best: the information gain of fixed asides on held-out text.

RLP's reward at position t is log p(x_t | x_<t, thought) − log p_EMA(x_t | x_<t). Before any
training θ = EMA, so the gain of one fixed aside, written with the base weights, bounds what
RLP can reach by choosing that aside: this script measures it for a few asides, for the real
next token written in the aside (an oracle thought: the most a thought could say) and for the
model's own greedy guess there. Positions are drawn uniformly among the `eligible` ones (at least `--min-context` tokens of
their own document before them), as `rlp-jax eval` draws them; each document is scored alone.

    python benchmarks/aside_cost.py --model ~/.cache/rlp_jax/smollm2-135m/model \\
        --data ~/.cache/rlp_jax/data/shakespeare-1000-0.05 --out benchmarks/results/cpu-2core-smollm2-asides
"""

import argparse
import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ASIDES = [(" [", "sic", "]"), (" [", ".", "]"), (" (", "sic", ")"), (" (", ".", ")"), ("<!--", " ", "-->")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="model directory (convert / fetch)")
    parser.add_argument("--data", required=True, help="prepared TFDS data dir (`rlp-jax data prepare`)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batches", type=int, default=8, help="batches of 2 windows, 8 positions each")
    parser.add_argument("--min-context", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from rlp_jax.evaluation.inputs import dataset_batches
    from rlp_jax.model import transformer as model
    from rlp_jax.model.io import load_model
    from rlp_jax.rollout.positions import eligible
    from rlp_jax.rollout.window import from_batch
    from rlp_jax.tokenizer import load_tokenizer

    cfg, params = load_model(os.path.expanduser(args.model))
    tokenizer = load_tokenizer(os.path.expanduser(args.model))
    rng = np.random.default_rng(args.seed)
    items = []  # (the document's tokens before t, x_t)
    for batch in dataset_batches(os.path.expanduser(args.data), os.path.expanduser(args.model), args.split,
                                 args.seq_len, 2, args.batches):
        allowed = np.asarray(eligible(from_batch(batch), args.min_context))  # the rule training uses
        for ok, pos, tokens in zip(allowed, batch["positions"], batch["tokens"]):
            choices = np.flatnonzero(ok)
            for t in rng.choice(choices, min(8, len(choices)), replace=False):
                items.append((tokens[t - pos[t]:t].tolist(), int(tokens[t])))
    width = args.seq_len + 16  # one compiled shape for every aside

    @jax.jit
    def last_log_probs(tokens, last):
        logits = model.forward(params, cfg, tokens).astype(jnp.float32)
        return jax.nn.log_softmax(jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0])

    def log_probs(prefixes):
        out = []
        for start in range(0, len(prefixes), 16):
            chunk = prefixes[start:start + 16]
            tokens = np.zeros((16, width), np.int32)  # right padding: causal attention never sees it
            last = np.zeros(16, np.int32)
            for i, prefix in enumerate(chunk):
                tokens[i, :len(prefix)], last[i] = prefix, len(prefix) - 1
            out.append(np.asarray(last_log_probs(jnp.asarray(tokens), jnp.asarray(last)))[:len(chunk)])
        return np.concatenate(out)

    targets = np.array([t for _, t in items])
    def score(prefixes):
        return log_probs(prefixes)[np.arange(len(items)), targets]

    base = score([context for context, _ in items])
    rows = []
    def report(name, prefixes, right=None):
        gain = score(prefixes) - base
        row = {"aside": name, "information_gain": float(gain.mean()), "positive": float((gain > 0).mean())}
        if right is not None:
            row["right"] = float(right.mean())
        rows.append(row)
        print(f"{name:28} gain {row['information_gain']:+.3f} nats   positive {row['positive']:.2f}"
              + (f"   word right {row['right']:.2f}" if right is not None else ""), flush=True)

    print(f"{len(items)} held-out positions, base model, no-think log p as the baseline")
    for open_text, thought, close_text in ASIDES:
        ids = tokenizer.encode(open_text + thought + close_text)
        report(repr(open_text + thought + close_text), [context + ids for context, _ in items])
    open_ids, close_ids = tokenizer.encode(" ["), tokenizer.encode("]")
    report("' [' + next token + ']'", [c + open_ids + [t] + close_ids for c, t in items], np.ones(len(items)))
    guess = log_probs([c + open_ids for c, _ in items]).argmax(-1)
    report("' [' + own guess + ']'", [c + open_ids + [int(g)] + close_ids for (c, _), g in zip(items, guess)],
           guess == targets)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump({"model": args.model, "data": args.data, "positions": len(items), "rows": rows}, f, indent=2)
        with open(args.out + ".md", "w") as f:
            f.write(f"Information gain of fixed asides, base weights, {len(items)} held-out positions "
                    f"(`python benchmarks/aside_cost.py`)\n\n| aside | gain (nats) | positive |\n|---|---|---|\n")
            f.writelines(f"| `{r['aside']}` | {r['information_gain']:+.3f} | {r['positive']:.2f} |\n" for r in rows)
        print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
