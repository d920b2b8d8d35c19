"""`rlp-jax score`: per-token log-probabilities and total NLL of a text, as JSON."""

import json


def register(subparsers) -> None:
    from rlp_jax.cli.model_args import add_checkpoint_args

    p = subparsers.add_parser("score", help="per-token log-probs of a text under a model")
    add_checkpoint_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text")
    source.add_argument("--file")
    p.add_argument("--no-bos", action="store_true", help="do not prepend the BOS token")
    p.set_defaults(handler=run)


def run(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rlp_jax.model import transformer as model
    from rlp_jax.cli.model_args import load_model_and_tokenizer, read_text
    from rlp_jax.errors import UserError

    text = read_text(args)  # cheap checks first: do not load a model for a missing file
    cfg, params, tokenizer = load_model_and_tokenizer(args)
    ids = tokenizer.encode(text)
    if tokenizer.add_bos and not args.no_bos:
        ids = [tokenizer.bos_id] + ids
    if len(ids) < 2:
        raise UserError("text is too short to score: it needs at least two tokens")
    if len(ids) > cfg.max_seq_len:
        raise UserError(f"text has {len(ids)} tokens, more than the model's context {cfg.max_seq_len}")
    tokens = jnp.asarray([ids], jnp.int32)
    logits = model.forward_compiled(params, cfg, tokens)
    logprobs = jax.nn.log_softmax(logits[0, :-1], axis=-1)
    token_lp = np.asarray(jnp.take_along_axis(logprobs, tokens[0, 1:, None], axis=-1)[:, 0])
    result = {
        "tokens": [{"id": int(i), "piece": tokenizer.id_to_piece(i), "logprob": float(lp)}
                   for i, lp in zip(ids[1:], token_lp)],
        "num_scored": int(token_lp.size),
        "total_nll": float(-token_lp.sum()),
        "mean_nll": float(-token_lp.mean()),
    }
    print(json.dumps(result, indent=1))
    return 0
