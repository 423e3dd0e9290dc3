"""benchmarks/bench_models.py and bench_kernels.py run (smoke tests: one round on the bundled
model or one case, no timing asserted — the numbers are the benchmark's business, not a test's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


def _bench_models(name="bench_models"):
    """The benchmark script ``benchmarks/{name}.py`` as a module."""
    sys.path.insert(0, str(SCRIPT.parent))  # its `fair` module
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.parametrize("pause", ["0", "0.001"])
def test_bench_models_one_round(pause, capsys):
    """One steady-state round, and one round after a pause (``--pause``), on digits_cnn."""
    bm = _bench_models()
    assert bm.main(["--models", "digits_cnn", "--repeats", "1", "--no-reference", "--pause", pause]) == 0
    out = capsys.readouterr().out
    assert "digits_cnn" in out and "minirt/ORT" in out
    assert ("each timed run after 0.001 s of idle" in out) == (pause != "0")


def test_import_order_one_pair():
    """benchmarks/import_order.py: one pair of fresh processes on digits_cnn, both orders print."""
    import subprocess

    script = SCRIPT.parent / "import_order.py"
    out = subprocess.run([sys.executable, str(script), "--models", "digits_cnn", "--repeats", "3", "--pairs", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "numpy-first  digits_cnn" in out.stdout and "minirt-first digits_cnn" in out.stdout


def test_bench_kernels_one_case(capsys):
    """benchmarks/bench_kernels.py: one round of one case, run as a session runs it (prepared step)."""
    _bench_models("bench_kernels").main(["--only", "depthwise 3x3 272", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "Conv depthwise 3x3 272 @14 (shufflenet)" in out and "k/ORT" in out
