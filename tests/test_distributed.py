"""minirt on Dask: chunked predictions equal one plain run; one session per process; clear errors."""

import pickle
import sys

import numpy as np
import pytest

import minirt
from minirt.cli import demo_files
from minirt.errors import InputError, MinirtError
from minirt.tools import distributed
from minirt.tools.distributed import predict_dask_array, predict_dask_dataframe

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")

MODEL = str(demo_files()[0])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((300, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def expected(images):
    return minirt.InferenceSession(MODEL).run(None, {"image": images})[0]


@pytest.fixture(autouse=True)
def fresh_cache():
    distributed.clear_sessions()
    yield
    distributed.clear_sessions()


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_array_matches_plain_run(images, expected, scheduler):
    darr = da.from_array(images, chunks=(70, 1, 8, 8))  # uneven: 70, 70, 70, 70, 20
    logits = predict_dask_array(MODEL, darr, batch_size=32)
    assert logits.shape == (300, 10) and logits.dtype == np.float32
    assert logits.chunks == ((70, 70, 70, 70, 20), (10,))
    out = logits.compute(scheduler=scheduler)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # one session in this process, shared by every chunk
    assert len(distributed._SESSIONS) == 1


def test_session_built_once_per_process(images, monkeypatch):
    built = []
    real = minirt.session.InferenceSession

    def counting(*a, **k):
        built.append(a)
        return real(*a, **k)

    monkeypatch.setattr(minirt.session, "InferenceSession", counting)
    darr = da.from_array(images, chunks=(50, 1, 8, 8))
    predict_dask_array(MODEL, darr, batch_size=16).compute(scheduler="threads")
    predict_dask_array(MODEL, darr).compute(scheduler="synchronous")
    assert len(built) == 1


def test_task_graph_carries_the_path_not_a_session(images):
    logits = predict_dask_array(MODEL, da.from_array(images, chunks=(100, 1, 8, 8)))
    blob = pickle.dumps(dict(logits.__dask_graph__()))
    assert b"InferenceSession" not in blob
    assert len(blob) < images.nbytes + 20_000  # the data and small task tuples, no weights or plans


def test_processes_scheduler(images, expected):
    darr = da.from_array(images[:100], chunks=(50, 1, 8, 8))
    out = predict_dask_array(MODEL, darr).compute(scheduler="processes", num_workers=2)
    np.testing.assert_allclose(out, expected[:100], rtol=1e-5, atol=1e-5)


def test_array_rechunks_sample_axes_and_empty_chunks(images, expected):
    darr = da.from_array(images, chunks=(100, 1, 4, 8))  # a sample split across blocks: rechunked
    out = predict_dask_array(MODEL, darr, batch_size=7).compute(scheduler="synchronous")
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    empty = predict_dask_array(MODEL, darr[:0]).compute(scheduler="synchronous")
    assert empty.shape == (0, 10)


def test_dataframe_matches_plain_run(images, expected):
    cols = [f"px{i}" for i in range(64)]
    df = pd.DataFrame(images.reshape(300, 64).astype(np.float64), columns=cols)
    df["id"] = np.arange(300)
    ddf = dd.from_pandas(df, npartitions=4)
    preds = predict_dask_dataframe(MODEL, ddf, cols, batch_size=64)
    assert list(preds.columns) == [f"logits_{k}" for k in range(10)]
    out = preds.compute(scheduler="threads")
    assert (out.index == df.index).all()
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=1e-5, atol=1e-5)
    both = predict_dask_dataframe(MODEL, ddf, cols, prefix="p", keep_columns=True).compute(scheduler="synchronous")
    assert list(both.columns[:65]) == cols + ["id"] and "p_9" in both.columns
    assert (both["id"].to_numpy() == np.arange(300)).all()


def test_errors_are_clear(images):
    darr = da.from_array(images, chunks=(100, 1, 8, 8))
    with pytest.raises(InputError, match="must be a path"):
        predict_dask_array(minirt.InferenceSession(MODEL), darr)
    with pytest.raises(InputError, match="astype"):
        predict_dask_array(MODEL, darr.astype(np.float64))
    with pytest.raises(InputError, match="unknown output 'probs'"):
        predict_dask_array(MODEL, darr, output="probs")
    with pytest.raises(InputError, match="dask array"):
        predict_dask_array(MODEL, images)
    with pytest.raises(InputError, match="batch_size"):
        predict_dask_array(MODEL, darr, batch_size=0)
    ddf = dd.from_pandas(pd.DataFrame(images.reshape(300, 64)[:, :10], columns=list("abcdefghij")), npartitions=2)
    with pytest.raises(InputError, match="10 columns given"):
        predict_dask_dataframe(MODEL, ddf, list("abcdefghij"))
    with pytest.raises(InputError, match=r"columns \['zz'\]"):
        predict_dask_dataframe(MODEL, ddf, ["zz"])


def test_missing_dask_says_how_to_install(monkeypatch, images):
    monkeypatch.setitem(sys.modules, "dask", None)  # import dask now raises ImportError
    with pytest.raises(MinirtError, match=r"minirt\[dask\]"):
        predict_dask_array(MODEL, images)
