"""minirt/malloc.py: glibc keeps freed arrays for reuse once a session exists (no page faults
for the next run's arrays), and leaves malloc alone when told to."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

# Arrays of ever new sizes (as DenseNet's Concats make), allocated and freed run after run;
# prints the minor page faults of the last runs (after warm-up).
WORKLOAD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import minirt
    if sys.argv[1] == "session":
        minirt.InferenceSession("minirt/data/digits_cnn.onnx")
    from minirt.malloc import tune_malloc
    tuned = tune_malloc()
    def one_run():
        arrays = [np.ones((1 << 20) + k * 40000, np.float32) for k in range(12)]  # 4-6 MB each
        return sum(float(a[-1]) for a in arrays)
    for _ in range(3):
        one_run()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        one_run()
    print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _run(mode, **env):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = {k: v for k, v in os.environ.items() if k not in ("MINIRT_MALLOC", "GLIBC_TUNABLES")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode], cwd=root, env=environment,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


def test_a_session_tunes_malloc_and_the_next_runs_reuse_memory():
    tuned, faults = _run("session")
    if not tuned:
        pytest.skip("not glibc: mallopt is not there")
    untouched, faults_default = _run("session", MINIRT_MALLOC="default")
    assert not untouched
    # 5 runs of 12 arrays of 4-6 MB: re-faulting them costs ~1,300 pages a run by default
    assert faults_default > 1000
    assert faults < faults_default / 10


def test_glibc_settings_of_the_user_win():
    tuned, _ = _run("session", MALLOC_TRIM_THRESHOLD_="131072")
    assert not tuned
