"""A sweep of bad inputs across the CLI, as an adversarial new user would type them.

    python tests/cli/sweep_bad_inputs.py [--workdir DIR] [--only SUBSTRING]

Trains one tiny run (4 steps) and exports it as a model directory, then runs every case
below in a fresh copy of what it needs and prints one row per case. A case is *clean* when
the command exits 2 with exactly one non-blank line on stderr and no traceback, and no
file it was given was changed or lost. Not collected by pytest (minutes of CPU): its
counts are quoted in the README's Tests section.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

ENV = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--config", "configs/tiny.yaml", "run.steps=4", "run.checkpoint_every=2", "run.eval_every=2",
        "run.eval_batches=1", "run.progress=false"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "rlp_jax", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd or REPO, timeout=timeout)


def tree_digest(path: str) -> str:
    """A hash over every file's relative path and bytes under `path`."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def write(path: str, text: str | bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
    return path


def cases(w: str, run: str, model: str):
    """`(name, argv, protected paths)`; `w` is a scratch directory per case."""
    mc = json.dumps({"question": "2+2?", "choices": ["4", "5"], "answer": 0})
    yield "config file missing", ["train", "--config", f"{w}/nope.yaml"], []
    yield "config is a YAML list", ["train", "--config", write(f"{w}/list.yaml", "- 1\n- 2\n")], []
    yield "config is not YAML", ["train", "--config", write(f"{w}/broken.yaml", "model: [1, 2\n")], []
    yield "config is binary", ["train", "--config", write(f"{w}/binary.yaml", b"\xff\xfe\x00model")], []
    yield "config is a directory", ["train", "--config", w], []
    yield "override without =", ["train", *TINY, "run.steps"], []
    yield "override of an unknown section", ["train", *TINY, "nosuch.key=1"], []
    yield "override of an unknown key", ["train", *TINY, "run.stepz=3"], []
    yield "run.steps negative", ["train", *TINY, "run.steps=-1"], []
    yield "run.steps not a number", ["train", *TINY, "run.steps=ten"], []
    yield "learning rate negative", ["train", *TINY, "optimizer.learning_rate=-1"], []
    yield "group size 1", ["train", *TINY, "rollout.group_size=1"], []
    yield "temperature nan", ["train", *TINY, "rollout.temperature=nan"], []
    yield "seq_len 0", ["train", *TINY, "data.seq_len=0"], []
    yield "batch size 0", ["train", *TINY, "data.batch_size=0"], []
    yield "mesh wider than the machine", ["train", *TINY, "mesh.data=3", "mesh.fsdp=1"], []
    yield "unknown objective", ["train", *TINY, "run.objective=dpo"], []
    yield "data path missing", ["train", *TINY, f"data.data={w}/nodata"], []
    yield "tokenizer path missing", ["train", *TINY, f"data.tokenizer={w}/tok.model"], []
    yield "init_from is a file", ["train", *TINY, f"init_from={write(w + '/f', 'x')}"], []
    yield "thought longer than the window", ["train", *TINY, "rollout.thought_len=4096"], []
    yield "ema_decay above 1", ["train", *TINY, "ema_decay=1.5"], []
    yield "keep 0", ["train", *TINY, "run.keep=0"], []
    yield "eval --checkpoint missing", ["eval", "--checkpoint", f"{w}/none"], []
    yield "eval on an empty directory", ["eval", "--checkpoint", os.makedirs(f"{w}/e") or f"{w}/e"], []
    yield "eval --batches 0", ["eval", "--checkpoint", run, "--batches", "0", "--out", f"{w}/o"], [run]
    yield "eval --seq-len above the model", ["eval", "--checkpoint", run, "--seq-len", "100000",
                                              "--out", f"{w}/o"], [run]
    yield "eval --text-file missing", ["eval", "--checkpoint", run, "--text-file", f"{w}/t.txt",
                                       "--out", f"{w}/o"], [run]
    yield "eval --params of a bad name", ["eval", "--checkpoint", run, "--params", "best"], [run]
    yield "sample --max-new-tokens negative", ["sample", "--checkpoint", model, "--prompt", "1+1=",
                                               "--max-new-tokens", "-5"], [model]
    yield "sample --top-p above 1", ["sample", "--checkpoint", model, "--prompt", "1+1=", "--top-p", "3"], [model]
    yield "sample --top-k negative", ["sample", "--checkpoint", model, "--prompt", "1+1=", "--top-k", "-2"], [model]
    yield "score --file missing", ["score", "--checkpoint", model, "--file", f"{w}/none.txt"], [model]
    yield "score --file binary", ["score", "--checkpoint", model, "--file", write(f"{w}/b.txt", b"\xff\xfe")],\
        [model]
    yield "data prepare --input missing", ["data", "prepare", "--name", "x", "--input", f"{w}/none.txt",
                                           "--out", f"{w}/d"], []
    yield "data prepare of an empty file", ["data", "prepare", "--name", "x", "--input",
                                            write(f"{w}/empty.txt", ""), "--out", f"{w}/d"], []
    yield "data prepare --name with a slash", ["data", "prepare", "--name", "a/b", "--builtin", "arithmetic",
                                               "--out", f"{w}/d"], []
    yield "data prepare --validation-fraction 2", ["data", "prepare", "--name", "x", "--builtin", "arithmetic",
                                                   "--validation-fraction", "2", "--out", f"{w}/d"], []
    yield "data inspect of a missing dir", ["data", "inspect", "--data", f"{w}/none", "--tokenizer", model], []
    yield "tokenizer train on a missing dataset", ["tokenizer", "train", "--data", f"{w}/none", "--vocab-size",
                                                   "400", "--out", f"{w}/tok"], []
    yield "tokenizer train on an empty JSONL", ["tokenizer", "train", "--data", write(f"{w}/e.jsonl", ""),
                                                "--vocab-size", "400", "--out", f"{w}/tok"], []
    yield "convert of a directory without config.json", ["convert", "--from", f"hf:{os.makedirs(f'{w}/hf') or w}",
                                                         "--out", f"{w}/m"], []
    yield "convert of a garbage GGUF", ["convert", "--from", f"gguf:{write(w + '/g.gguf', b'GGUF' + bytes(40))}",
                                        "--out", f"{w}/m"], []
    yield "export of an empty run dir", ["export", "--checkpoint", os.makedirs(f"{w}/r") or f"{w}/r",
                                         "--to-hf", f"{w}/hf_out"], []
    yield "report of a missing run", ["report", f"{w}/none", "--out", f"{w}/rep"], []
    yield "report of a run without metrics", ["report", os.makedirs(f"{w}/r2") or f"{w}/r2", "--out", f"{w}/rep"], []
    yield "downstream task malformed", ["downstream", "--checkpoint", model, "--type", "mc", "--task",
                                        write(f"{w}/malformed.jsonl", "{not json\n")], [model]
    yield "downstream answer out of range", ["downstream", "--checkpoint", model, "--type", "mc", "--task",
                                             write(f"{w}/range.jsonl", mc.replace('"answer": 0', '"answer": 7'))], [model]
    yield "downstream with no choices", ["downstream", "--checkpoint", model, "--type", "mc", "--task",
                                         write(f"{w}/nochoice.jsonl", mc.replace('["4", "5"]', '[]'))], [model]
    yield "bench of an unknown suite", ["bench", "--suite", "everything", "--out", f"{w}/b.json"], []
    yield "bench of an unknown model", ["bench", "--model", "gpt5", "--out", f"{w}/b.json"], []
    yield "fetch of an unknown model", ["fetch", "llama-405b", "--out", f"{w}/m"], []
    yield "resume with a different seq_len", ["train", *TINY, f"run.run_dir={run}", "data.seq_len=32",
                                              "run.steps=6"], [run]
    yield "checkpoint_dir is a file", ["train", *TINY, f"run.run_dir={w}/new",
                                       f"run.checkpoint_dir={write(w + '/ck', 'x')}"], []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="rlp_jax_sweep_")
    run, model = os.path.join(work, "G"), os.path.join(work, "M")
    if not os.path.isdir(run):
        done = cli("train", *TINY, f"run.run_dir={run}")
        assert done.returncode == 0, done.stderr[-2000:]
    if not os.path.isdir(model):
        hf = os.path.join(work, "G_hf")
        for argv in (["export", "--checkpoint", run, "--to-hf", hf], ["convert", "--from", f"hf:{hf}", "--out", model]):
            done = cli(*argv)
            assert done.returncode == 0, done.stderr[-2000:]
    clean, rows, index = 0, [], 0
    while True:
        scratch = os.path.join(work, f"case{index}")
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        run_copy, model_copy = os.path.join(scratch, "G"), os.path.join(scratch, "M")
        shutil.copytree(run, run_copy)
        shutil.copytree(model, model_copy)
        listed = list(cases(scratch, run_copy, model_copy))  # writes this case's input files afresh
        if index >= len(listed):
            shutil.rmtree(scratch)
            break
        name, argv, protected = listed[index]
        index += 1
        if args.only and args.only not in name:
            continue
        before = {p: tree_digest(p) for p in protected}
        done = cli(*argv)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        kept = all(tree_digest(p) == digest for p, digest in before.items())
        ok = done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr and kept
        clean += ok
        rows.append((name, done.returncode, ok, (lines[-1] if lines else "")[:150]))
        print(f"{'clean  ' if ok else 'UNCLEAN'} rc={done.returncode:<3} {'' if kept else 'CHANGED '}{name}: "
              f"{rows[-1][3]}", flush=True)
    print(f"\n{clean} of {len(rows)} cases clean")
    return 0 if clean == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
