"""One `rlp_step` on 8 fake CPU devices (data × fsdp × tensor) equals the 1-device step."""

import os
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "step_worker.py")


def _run(tmp_path, name, devices, mesh):
    out = str(tmp_path / f"{name}.npz")
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    subprocess.run([sys.executable, WORKER, out, str(devices), *map(str, mesh)], check=True, env=env,
                   timeout=600)
    return np.load(out)


def test_eight_devices_match_one(tmp_path):
    one = _run(tmp_path, "one", 1, (1, 1, 1))
    eight = _run(tmp_path, "eight", 8, (2, 2, 2))
    assert "fsdp" in str(eight["spec/q"]) and "tensor" in str(eight["spec/q"])
    names = [k for k in one.files if not k.startswith("spec/")]
    assert any(k.startswith("metric/") for k in names) and any(k.startswith("ema") for k in names)
    for key in names:
        np.testing.assert_allclose(eight[key], one[key], atol=1e-5, rtol=0, err_msg=key)
    assert float(one["metric/grad_norm"]) > 0
    assert np.abs(one["params['params']['layers']['q']['kernel']"]
                  - one["ema['params']['layers']['q']['kernel']"]).max() > 0
