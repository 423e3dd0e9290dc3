"""The `minirt` command line: info, run, demo, ops — and one clear line for user mistakes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minirt
from minirt.cli import main, summarize

DEMO = str(Path(minirt.__file__).parent / "data" / "digits_cnn.onnx")


def test_info_lists_io_opsets_histogram_and_parameters(capsys):
    assert main(["info", DEMO]) == 0
    out = capsys.readouterr().out
    assert "image: float32[N, 1, 8, 8]" in out and "logits: float32[N, 10]" in out
    assert "ai.onnx 17" in out and "Conv" in out and "parameters: 3,818 values" in out


def test_info_ir_prints_every_node(capsys):
    assert main(["info", DEMO, "--ir"]) == 0
    out = capsys.readouterr().out
    assert out.count(" = Conv(") == 2 and "graph main_graph" in out


def test_run_with_npy_inputs_and_save(tmp_path, capsys):
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out_file = tmp_path / "out.npz"
    assert main(["run", DEMO, "--input", f"image={tmp_path / 'x.npy'}", "--save", str(out_file)]) == 0
    printed = capsys.readouterr().out
    assert "logits: float32[3, 10]" in printed
    with np.load(out_file) as z:
        assert z["logits"].shape == (3, 10)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "no/such/model.onnx"], "model file not found"),
        (["run", DEMO, "--input", "image=no_such.npy"], "No such file"),
        (["run", DEMO, "--input", "image"], "NAME=FILE.npy"),
    ],
)
def test_user_mistakes_give_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_not_a_model_gives_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model\xff" * 4)
    assert main(["info", str(bad)]) == 2
    assert "not a valid ONNX model" in capsys.readouterr().err


def test_wrong_input_dtype_gives_one_line(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((1, 1, 8, 8)))  # float64
    assert main(["run", DEMO, "--input", f"image={tmp_path / 'x.npy'}"]) == 2
    assert "float64 given, float32 expected" in capsys.readouterr().err


def test_demo_runs_and_agrees_with_onnxruntime(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "graph main_graph" in out and "correct:" in out and "same predictions: True" in out


def test_ops_table(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "ops registered" in out and "Conv" in out and "ai.onnx.ml" in out


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "minirt.cli", "info", DEMO], capture_output=True, text=True)
    assert r.returncode == 0 and "logits" in r.stdout


def test_summarize():
    assert summarize(np.zeros((0, 3), np.float32)) == "float32[0, 3] (empty)"
    assert "argmax [1]" in summarize(np.array([[0.0, 1.0]], np.float32))
    assert summarize([np.ones(1)]) == "sequence of 1 items"
