"""minirt.tools.bench: JSON fields and their sanity, cost formula, fixed batch, table, plot, CLI."""

import importlib.util
import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from minirt.cli import demo_files, main
from minirt.errors import InputError
from minirt.tools.bench import bench, cost_per_million, feeds_for_batch, parse_batch_sizes

MODEL = str(demo_files()[0])
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def result():
    return bench(MODEL, batch_sizes=(1, 4, 16), warmup=1, iterations=8, against_onnxruntime=True,
                 price_per_hour=0.5, progress=False)


def _check_point(p):
    assert 0 < p["latency_ms_min"] <= p["latency_ms_p50"] <= p["latency_ms_p90"] <= p["latency_ms_p99"]
    assert p["latency_ms_mean"] >= p["latency_ms_min"]
    assert p["samples_per_s"] > 0 and p["runs"] == 8
    assert p["per_sample_ms"] == pytest.approx(p["latency_ms_mean"] / p["batch"])
    assert p["samples_per_s"] == pytest.approx(p["batch"] * 1e3 / p["latency_ms_mean"])
    assert p["cost_per_million_usd"] == pytest.approx(0.5 / 3600 / p["samples_per_s"] * 1e6)
    assert p["samples_per_s_p50"] == pytest.approx(p["batch"] * 1e3 / p["latency_ms_p50"])


def test_json_fields(result, tmp_path):
    d = json.loads(json.dumps(result.to_dict()))  # JSON-clean
    assert d["model"] == MODEL
    assert d["machine"]["cpu_count"] >= 1 and "blas" in d["machine"]
    lat = d["latency_ms"]
    assert set(lat) == {"p50", "p90", "p99", "mean", "min"}
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert [p["batch"] for p in d["sweep"]] == [1, 4, 16]
    for p in d["sweep"]:
        _check_point(p)
    assert d["sweep"][0]["latency_ms_p50"] == lat["p50"]  # batch 1 of the sweep is the latency
    cost = d["cost"]
    assert cost["price_per_hour_usd"] == 0.5 and cost["cheapest_batch"] in (1, 4, 16)
    assert [r["batch"] for r in cost["per_million"]] == [1, 4, 16]
    if HAVE_ORT:
        ort = d["onnxruntime"]
        assert ort["engine"] == "onnxruntime" and ort["version"]
        for p in ort["sweep"]:
            _check_point(p)
        assert "onnxruntime_usd_per_million" in cost["per_million"][0]
    result.save_json(tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["sweep"][1]["batch"] == 4


def test_cost_formula():
    # $3.60 an hour is $0.001 a second; at 1000 samples/s one sample costs $1e-6: $1 per million
    assert cost_per_million(3.6, 1000.0) == pytest.approx(1.0)
    assert cost_per_million(3.6, 2000.0) == pytest.approx(0.5)


def test_table(result):
    text = str(result)
    assert "latency at batch 1" in text and "p99" in text and "samples/s" in text
    assert "cost per million inferences" in text and "$/1M" in text
    if HAVE_ORT:
        assert "onnxruntime" in text and "minirt/ORT" in text


def test_no_price_no_cost_and_duration():
    res = bench(MODEL, batch_sizes=(2,), warmup=0, duration=0.05, progress=False)
    d = res.to_dict()
    assert d["cost"] is None and d["onnxruntime"] is None
    assert [p["batch"] for p in d["sweep"]] == [2]  # batch 1 measured for latency, not listed
    assert d["latency_ms"]["p50"] > 0 and d["sweep"][0]["runs"] >= 5
    assert "$/1M" not in str(res)


def test_fixed_batch_sweeps_batch_one_only(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "fixed.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    res = bench(str(path), iterations=3, warmup=0, progress=False)
    assert [p.batch for p in res.sweep] == [1]
    assert any("fixed first dim 1" in n for n in res.notes)
    assert "fixed first dim 1" in str(res)


def test_given_inputs_are_cycled_into_batches():
    x = np.arange(3, dtype=np.float32)[:, None] * np.ones((3, 5), np.float32)
    f = feeds_for_batch({"x": x, "k": np.array(2)}, {"x": True, "k": False}, 7)
    assert f["x"].shape == (7, 5) and f["x"][:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert f["k"] == 2
    sample = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    res = bench(MODEL, {"image": sample}, batch_sizes=(1, 3), iterations=2, warmup=0, progress=False)
    assert res.settings["inputs"] == {"image": "float32[2, 1, 8, 8]"}


def test_bad_arguments():
    with pytest.raises(InputError, match="not both"):
        bench(MODEL, iterations=2, duration=1.0)
    with pytest.raises(InputError, match="at least 1"):
        bench(MODEL, batch_sizes=(0, 2), iterations=1)
    with pytest.raises(InputError, match="price_per_hour"):
        bench(MODEL, iterations=1, price_per_hour=-1)
    with pytest.raises(InputError, match="float64 given"):
        bench(MODEL, {"image": np.zeros((1, 1, 8, 8))}, iterations=1)
    assert parse_batch_sizes("1, 8,32") == [1, 8, 32]
    with pytest.raises(InputError, match="--batch-sizes"):
        parse_batch_sizes("1,x")


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_plot(result, tmp_path):
    out = tmp_path / "bench.png"
    result.plot(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli(tmp_path, capsys):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    argv = ["bench", MODEL, "--batch-sizes", "1,8", "--iterations", "3", "--warmup", "1",
            "--price-per-hour", "0.5", "--threads", "1", "--json", str(out)]
    if HAVE_MPL:
        argv += ["--plot", str(png)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "batch-size sweep" in text and "results written to" in text
    d = json.loads(out.read_text())
    assert d["settings"]["threads"] == 1 and [p["batch"] for p in d["sweep"]] == [1, 8]
    if HAVE_MPL:
        assert png.exists()


@pytest.mark.parametrize("argv, message", [
    (["--batch-sizes", "1,x"], "--batch-sizes expects integers"),
    (["--shape", "image1x1x8x8"], "--shape expects NAME:D1xD2"),
    (["--iterations", "0"], "iterations must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--shape", "image:1x1x9x9", "--iterations", "1"], "dim 2 must be 8"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(["bench", MODEL, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_missing_model(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.onnx"), "--iterations", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_iterations_and_duration_exclusive(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", MODEL, "--iterations", "2", "--duration", "1"])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
