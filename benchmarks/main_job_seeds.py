"""The main job (configs/tiny_sums.yaml, RLP) or its RPT twin (configs/tiny_sums_rpt.yaml) for
several seeds: before/after figures per seed.

Each seed is a whole `rlp-jax train` run (warm-up, then the objective) in its own run
directory, with a fresh cache. RLP: held-out information gain and thinking vs no-think
accuracy at the same positions (hard bucket), at the first eval (before RLP) and the last.
RPT: the prefix-match reward over the first and last 10 steps (each step's windows are
fresh and scored before the update on them). Both with the training wall time.

  python benchmarks/main_job_seeds.py [--config configs/tiny_sums_rpt.yaml] [--seeds 0 1 2] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from rlp_jax.train.warmup import reward_before_after

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RLP_KEYS = ("eval/info_gain", "eval/acc_think/hard", "eval/acc_no_think_at_thoughts/hard")
REWARD_SPAN = 10


def run_seed(seed: int, root: str, config: str) -> dict:
    run_dir = os.path.join(root, f"seed{seed}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlp_jax", "train", "--config", config, f"run.run_dir={run_dir}",
                    f"run.seed={seed}", f"data.seed={seed}", "run.progress=false"], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    result = {"seed": seed, "wall_s": wall}
    evals = [r for r in records if "eval/info_gain" in r]
    if evals:
        result.update(before={k: evals[0][k] for k in RLP_KEYS}, after={k: evals[-1][k] for k in RLP_KEYS},
                      steps=(evals[0]["step"], evals[-1]["step"]))
    _, result["reward_first"], result["reward_last"] = reward_before_after(records, REWARD_SPAN)
    return result


def rlp_table(results) -> list[str]:
    lines = ["| seed | info gain before → after | thinking acc. (hard) | no-think acc. there (hard) | margin | wall |",
             "|---|---|---|---|---|---|"]
    for r in results:
        b, a = r["before"], r["after"]
        margin = a["eval/acc_think/hard"] - a["eval/acc_no_think_at_thoughts/hard"]
        lines.append(f"| {r['seed']} | {b['eval/info_gain']:+.3f} → {a['eval/info_gain']:+.3f} | "
                     f"{b['eval/acc_think/hard']:.3f} → {a['eval/acc_think/hard']:.3f} | "
                     f"{b['eval/acc_no_think_at_thoughts/hard']:.3f} → {a['eval/acc_no_think_at_thoughts/hard']:.3f} | "
                     f"{100 * margin:+.1f} pts | {r['wall_s']:.0f} s |")
    return lines


def rpt_table(results) -> list[str]:
    lines = [f"| seed | prefix-match reward, first {REWARD_SPAN} → last {REWARD_SPAN} steps | rise | wall |",
             "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['reward_first']:.3f} → {r['reward_last']:.3f} | "
                     f"{r['reward_last'] - r['reward_first']:+.3f} | {r['wall_s']:.0f} s |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "tiny_sums.yaml"))
    parser.add_argument("--out", default="", help="also write the table (Markdown) and JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        os.environ.setdefault("RLP_JAX_CACHE", os.path.join(root, "cache"))  # a fresh cache, as a new user has
        results = [run_seed(seed, root, args.config) for seed in args.seeds]
    table = "\n".join(rlp_table(results) if all("before" in r for r in results) else rpt_table(results))
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
