"""`rlp-jax sample`: continue a prompt (greedy or with temperature) for sanity checks."""


def register(subparsers) -> None:
    from rlp_jax.cli.model_args import add_checkpoint_args

    p = subparsers.add_parser("sample", help="generate a continuation of a prompt")
    add_checkpoint_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args) -> int:
    import jax
    import jax.numpy as jnp

    from rlp_jax.cli.model_args import load_model_and_tokenizer
    from rlp_jax.errors import UserError, need_finite
    from rlp_jax.rollout.sampling import generate

    need_finite(args.temperature, "--temperature")  # argparse takes "nan" (which sampled nothing)
    need_finite(args.top_p, "--top-p")
    if args.max_new_tokens < 1 or args.temperature < 0 or not 0 < args.top_p <= 1 or args.top_k < 0:
        raise UserError("need --max-new-tokens >= 1, --temperature >= 0, 0 < --top-p <= 1, --top-k >= 0")
    cfg, params, tokenizer = load_model_and_tokenizer(args)
    ids = tokenizer.encode(args.prompt)
    if tokenizer.add_bos:
        ids = [tokenizer.bos_id] + ids
    if not ids:
        raise UserError("the prompt is empty")
    if len(ids) + args.max_new_tokens > cfg.max_seq_len:
        raise UserError(f"prompt + --max-new-tokens exceeds the model's context {cfg.max_seq_len}")
    prompt = jnp.asarray([ids], jnp.int32)
    eos = -1 if tokenizer.eos_id is None else tokenizer.eos_id
    out, lengths = generate(params, cfg, prompt, jnp.ones_like(prompt, bool), jax.random.key(args.seed),
                            args.max_new_tokens, args.temperature, args.top_k, args.top_p, eos)
    new_ids = [int(t) for t in out[0, : int(lengths[0])]]
    if new_ids and new_ids[-1] == eos:
        new_ids = new_ids[:-1]  # the stop token is not part of the text
    print(tokenizer.decode(new_ids))
    return 0
