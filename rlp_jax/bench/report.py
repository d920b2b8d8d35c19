"""Markdown rendering of a bench result (the tables the README quotes)."""

from __future__ import annotations


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.1f}"


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def to_markdown(result: dict) -> str:
    m = result["meta"]
    peak = m.get("peak")
    lines = [f"**rlp-jax bench** — model `{m['model']}` ({m['params'] / 1e6:.1f}M params, {m['dtype']}), "
             f"device {m['device_kind']} ×{m['device_count']} ({m['platform']}, {m['host_cpus']} host CPUs), "
             f"{m['date']}, jax {m['jax']}, jaxlib {m['jaxlib']}, Python {m['python']}"
             + (", quick" if m.get("quick") else "")
             + (f"; peak {peak['name']}: {peak['bf16_flops'] / 1e12:.0f} TFLOP/s bf16, "
                f"{peak['hbm_bytes_per_s'] / 1e12:.2f} TB/s HBM" if peak else "; device peak unknown"), ""]
    if "rollout" in result:
        lines += ["Rollouts: prefix-shared branches vs re-encoding each prefix (same thoughts)", "",
                  "| varied | T | K | G | L | B | N | prefix-shared ms | re-encoding ms | ratio | equal | mean len |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["rollout"]["rows"]:
            lines.append(f"| {r['axis']} | {r['T']} | {r['K']} | {r['G']} | {r['L']} | {r['B']} | {r['N']} | "
                         f"{_ms(r['prefix_shared_s'])} | {_ms(r['reencode_s'])} | {r['ratio']:.2f}× | "
                         f"{'yes' if r['thoughts_equal'] else 'NO'} | {r['mean_thought_len']:.1f} |")
        lines.append("")
    if "sampler" in result:
        lines += ["Sampler: `rlp_jax.sampling.generate` vs transformers `generate` (tokens/s; compile excluded)", "",
                  "| mode | batch | prompt | new | rlp_jax tok/s | compile s | transformers tok/s | ratio | "
                  "greedy agreement |", "|---|---|---|---|---|---|---|---|---|"]
        for r in result["sampler"]["rows"]:
            lines.append(f"| {r['mode']} | {r['batch']} | {r['prompt_len']} | {r['new_tokens']} | "
                         f"{r['ours_tokens_per_s']:.1f} | {r['ours_compile_s']:.1f} | "
                         f"{_num(r['transformers_tokens_per_s'], '.1f')} | "
                         f"{_num(r['ratio'], '.2f')}{'×' if r['ratio'] else ''} | "
                         f"{_num(r['greedy_token_agreement'], '.0%')} |")
        lines.append("")
    if "step" in result:
        s = result["step"]
        sh = s["shape"]
        lines += [f"One RLP step (T={sh['T']} K={sh['K']} G={sh['G']} L={sh['L']} B={sh['B']}), phases "
                  f"jitted alone; total = the compiled RLP step", "",
                  "| phase | ms | model GFLOP | GFLOP/s | utilization |", "|---|---|---|---|---|"]
        for name, p in s["phases"].items():
            lines.append(f"| {name} | {_ms(p['time_s'])} | {p['flops'] / 1e9:.3f} | "
                         f"{_num(p['flops_per_s'] and p['flops_per_s'] / 1e9, '.2f')} | "
                         f"{_num(p['utilization'], '.1%')} |")
        mem = s["peak_memory"]
        temp = (s.get("compiled_memory") or {}).get("temp_size_in_bytes")
        roof = s.get("decode_roofline")
        if roof:
            lines += ["", f"decode: {roof['step_s'] * 1e3:.2f} ms per step reading {roof['bytes_per_step'] / 1e6:.1f} MB "
                      f"(weights + KV) = {roof['bytes_per_s'] / 1e9:.1f} GB/s, {roof['fraction']:.1%} of "
                      f"{roof['reference']} ({roof['reference_bytes_per_s'] / 1e9:.1f} GB/s)"]
        lines += ["", f"compile {s['compile_s']:.1f} s; peak memory {mem['bytes'] / 2**20:.0f} MiB "
                  f"({mem['source']})" + (f"; XLA temp buffers {temp / 2**20:.1f} MiB" if temp is not None else ""),
                  ""]
    return "\n".join(lines)
