"""Batch inference over data bigger than one run: minirt on Dask arrays and dataframes.

    import dask.array as da
    from minirt.tools.distributed import predict_dask_array

    images = da.from_zarr("images.zarr")              # [N, 1, 8, 8], chunked along N
    logits = predict_dask_array("digits_cnn.onnx", images, batch_size=256)
    logits.compute()                                 # [N, 10]: runs the chunks in parallel

The pattern, which is the same on one laptop or a cluster:

- **the model travels as a path, never as a session.** Dask ships the block function and its
  arguments to wherever a chunk runs; a string pickles in bytes, a session (weights, a compiled
  plan) would be pickled and unpickled for every task. Instead,
- **one session per process, built lazily.** The first chunk a process runs builds the
  session and keeps it in a module-level dict keyed by the model path; every later chunk in that
  process reuses it. ``clear_sessions()`` empties the cache (e.g. after the file changed).
- **one run at a time per process.** A minirt run already uses every core it is given (BLAS and
  Numba threads), so two runs side by side in one process would only fight over the cores; and
  some Numba threading layers (``workqueue``) may not be entered from two threads at once. A lock
  per session serialises runs; parallelism comes from the processes, or from the other work in
  the task graph (reading, decoding) that runs in the other threads meanwhile.
- **chunks are the unit of parallel work, ``batch_size`` the unit of one model run.** A chunk of
  10,000 images is fed 256 at a time, so memory stays bounded whatever the chunk size.

Where it runs: the functions return lazy Dask collections, computed by whatever scheduler is
current. With no cluster that is Dask's local ``"threads"`` scheduler, which runs as-is. Use
``.compute(scheduler="synchronous")`` to debug (one thread, plain tracebacks), or a cluster::

    from dask.distributed import Client, LocalCluster
    client = Client(LocalCluster(n_workers=4, threads_per_worker=1))   # or Client("tcp://scheduler:8786")
    logits = predict_dask_array("/shared/models/digits_cnn.onnx", images, threads=1).compute()

on a cluster the model path must be readable by every worker (a shared file system, or ship
it with ``client.upload_file``); with several workers per machine, give each ``threads=`` cores
so they do not oversubscribe the machine.

Dask is optional (``pip install "minirt[dask]"``); minirt never imports it unless you call these.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence

import numpy as np

from minirt.errors import InputError, MinirtError

# (absolute model path, threads) -> (session, lock): one per process, built on first use
_SESSIONS: dict[tuple[str, int | None], tuple[Any, threading.Lock]] = {}
_SESSIONS_LOCK = threading.Lock()


def _require_dask(what: str = "dask.array"):
    try:
        import dask  # noqa: F401
        import importlib

        return importlib.import_module(what)
    except ImportError as e:
        raise MinirtError(
            f"this needs {what}, which is not installed ({e}): pip install \"minirt[dask]\" "
            "(or pip install \"dask[array,dataframe]\")"
        ) from None


def get_session(model_path: str, threads: int | None = None):
    """This process's session for ``model_path`` (built on first use), and the lock its runs take."""
    key = (os.path.abspath(os.fspath(model_path)), threads)
    entry = _SESSIONS.get(key)
    if entry is None:
        with _SESSIONS_LOCK:  # two threads asking at once build it once
            entry = _SESSIONS.get(key)
            if entry is None:
                from minirt.session import InferenceSession

                entry = (InferenceSession(key[0], threads=threads), threading.Lock())
                _SESSIONS[key] = entry
    return entry


def clear_sessions() -> None:
    """Forget every cached session in this process (the next chunk builds a fresh one)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


def _run_in_batches(model_path: str, x: np.ndarray, input_name: str | None, output: str | None,
                    batch_size: int, threads: int | None) -> np.ndarray:
    """One block: the cached session run ``batch_size`` samples at a time, outputs concatenated."""
    sess, lock = get_session(model_path, threads)
    name = input_name or sess.get_inputs()[0].name
    outs = [output] if output else [sess.get_outputs()[0].name]
    if len(x) == 0:
        shape, dtype = _output_meta(sess, outs[0], x)
        return np.empty((0,) + shape, dtype)
    parts = []
    for i in range(0, len(x), batch_size):
        with lock:
            [y] = sess.run(outs, {name: x[i:i + batch_size]})
        parts.append(y)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def _output_meta(sess, output: str, sample: np.ndarray) -> tuple[tuple[int, ...], np.dtype]:
    """The per-sample shape and dtype of ``output``: from the model when it is static, else one run."""
    arg = next(o for o in sess.get_outputs() if o.name == output)
    dims = arg.shape[1:]
    if arg.shape and all(isinstance(d, int) and d >= 0 for d in dims) and arg.dtype is not None:
        return tuple(dims), np.dtype(arg.dtype)
    if len(sample) == 0:
        raise InputError(f"output {output!r} has shape {arg.shape}: cannot tell its size without a sample")
    [y] = sess.run([output], {sess.get_inputs()[0].name: sample[:1]})
    return tuple(y.shape[1:]), y.dtype


def _check_model(model_path, input_name, output, threads):
    if not isinstance(model_path, (str, os.PathLike)):
        raise InputError(
            f"model_path must be a path (a str), got {type(model_path).__name__}: the path is what travels "
            "to the workers, each of which builds its own session"
        )
    sess, _ = get_session(model_path, threads)  # fails here, in the client, on a bad path or model
    names = [i.name for i in sess.get_inputs()]
    if input_name is None and len(names) != 1:
        raise InputError(f"this model has {len(names)} inputs {names}: Dask prediction feeds one; name it "
                         "with input_name= (the others must have defaults)")
    if input_name is not None and input_name not in names:
        raise InputError(f"unknown input {input_name!r}: this model's inputs are {names}")
    outputs = [o.name for o in sess.get_outputs()]
    if output is not None and output not in outputs:
        raise InputError(f"unknown output {output!r}: this model's outputs are {outputs}")
    return sess, input_name or names[0], output or outputs[0]


def predict_dask_array(model_path: str, darr, *, batch_size: int = 256, output: str | None = None,
                       input_name: str | None = None, threads: int | None = None):
    """Run the model over a Dask array split along axis 0 (samples); returns a lazy Dask array.

    Each chunk becomes one task: it gets this process's session (built once per process) and
    runs it ``batch_size`` samples at a time. ``output`` picks the model output to return
    (default: the first). The result is chunked like ``darr`` along axis 0; call ``.compute()``.
    """
    da = _require_dask("dask.array")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if not isinstance(darr, da.Array):
        raise InputError(f"darr must be a dask array, got {type(darr).__name__}: use dask.array.from_array(x, "
                         "chunks=(rows, ...)) to make one")
    sess, input_name, output = _check_model(model_path, input_name, output, threads)
    if darr.ndim == 0:
        raise InputError("darr must have a samples axis (axis 0)")
    arg = next(i for i in sess.get_inputs() if i.name == input_name)
    if arg.dtype is not None and darr.dtype != arg.dtype:
        raise InputError(f"darr is {darr.dtype}, input {input_name!r} expects {arg.dtype}: "
                         f"pass darr.astype(np.{arg.dtype})")
    if darr.ndim > 1 and any(len(c) > 1 for c in darr.chunks[1:]):
        darr = darr.rechunk({axis: -1 for axis in range(1, darr.ndim)})  # a block must hold whole samples
    if _static(sess, output):
        shape, dtype = _output_meta(sess, output, np.empty((0,) + darr.shape[1:], darr.dtype))
    else:  # the model does not say: run the first sample (computes that much of darr)
        shape, dtype = _output_meta(sess, output, np.asarray(darr[:1].compute()))
    kwargs: dict[str, Any] = {}
    out_ndim = 1 + len(shape)
    if out_ndim < darr.ndim:
        kwargs["drop_axis"] = list(range(out_ndim, darr.ndim))
    elif out_ndim > darr.ndim:
        kwargs["new_axis"] = list(range(darr.ndim, out_ndim))
    return da.map_blocks(
        _block_fn, darr, model_path=os.path.abspath(os.fspath(model_path)), input_name=input_name,
        output_name=output, batch_size=batch_size, threads=threads,
        chunks=(darr.chunks[0],) + tuple((d,) for d in shape), dtype=dtype,
        meta=np.empty((0,) * out_ndim, dtype), **kwargs,
    )


def _block_fn(block: np.ndarray, *, model_path: str, input_name: str, output_name: str, batch_size: int,
              threads: int | None) -> np.ndarray:
    # (not "output=": map_blocks keeps that keyword for itself)
    return _run_in_batches(model_path, np.ascontiguousarray(block), input_name, output_name, batch_size, threads)


def _static(sess, output: str) -> bool:
    arg = next(o for o in sess.get_outputs() if o.name == output)
    return bool(arg.shape) and all(isinstance(d, int) and d >= 0 for d in arg.shape[1:]) and arg.dtype is not None


def predict_dask_dataframe(model_path: str, ddf, columns: Sequence[str], *, batch_size: int = 256,
                           output: str | None = None, input_name: str | None = None, prefix: str | None = None,
                           keep_columns: bool = False, threads: int | None = None):
    """Run the model on ``columns`` of a Dask dataframe, one partition per task; returns a lazy dataframe.

    The columns of each row, in the given order, are one sample, reshaped to the model input's
    per-sample shape (64 pixel columns -> ``[1, 8, 8]``) and cast to its dtype. The result has
    the partition's index and one column per output value: ``{prefix}_{k}`` (``prefix`` defaults
    to the output's name), or just ``{prefix}`` when each sample gives one value. With
    ``keep_columns=True`` the input dataframe's columns come first.
    """
    _require_dask("dask.dataframe")
    import pandas as pd

    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    columns = list(columns)
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise InputError(f"columns {missing} are not in the dataframe (it has {list(ddf.columns)[:12]}...)")
    sess, input_name, output = _check_model(model_path, input_name, output, threads)
    arg = next(i for i in sess.get_inputs() if i.name == input_name)
    per_sample = _per_sample_shape(arg, len(columns))
    dtype = np.dtype(arg.dtype) if arg.dtype is not None else np.dtype(np.float32)
    probe = np.zeros((1,) + per_sample, dtype)
    out_shape, out_dtype = _output_meta(sess, output, probe)
    width = int(np.prod(out_shape)) if out_shape else 1
    prefix = prefix or output
    names = [prefix] if width == 1 else [f"{prefix}_{k}" for k in range(width)]
    meta = pd.DataFrame({n: pd.Series([], dtype=out_dtype) for n in names}, index=ddf._meta.index)
    if keep_columns:
        meta = pd.concat([ddf._meta, meta], axis=1)
    return ddf.map_partitions(
        _partition_fn, model_path=os.path.abspath(os.fspath(model_path)), columns=columns, names=names,
        per_sample=per_sample, dtype=dtype, input_name=input_name, output_name=output, batch_size=batch_size,
        keep_columns=keep_columns, threads=threads, meta=meta,
    )


def _per_sample_shape(arg, n_columns: int) -> tuple[int, ...]:
    dims = arg.shape[1:] if arg.shape else []
    if all(isinstance(d, int) and d > 0 for d in dims):
        shape = tuple(dims)
        if int(np.prod(shape)) != n_columns:
            raise InputError(f"{n_columns} columns given, but input {arg.name!r} ({arg.type} {arg.shape}) takes "
                             f"{int(np.prod(shape))} values per sample")
        return shape
    if len(dims) == 1:
        return (n_columns,)
    raise InputError(f"input {arg.name!r} has shape {arg.shape}: cannot tell how to shape {n_columns} columns "
                     "into one sample")


def _partition_fn(part, *, model_path, columns, names, per_sample, dtype, input_name, output_name, batch_size,
                  keep_columns, threads):
    import pandas as pd

    x = part[columns].to_numpy(dtype=dtype).reshape((len(part),) + per_sample)
    y = _run_in_batches(model_path, x, input_name, output_name, batch_size, threads)
    preds = pd.DataFrame(y.reshape(len(part), -1), index=part.index, columns=names)
    return pd.concat([part, preds], axis=1) if keep_columns else preds
