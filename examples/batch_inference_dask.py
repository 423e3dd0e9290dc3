"""Batch inference with minirt on Dask: many images, in chunks, in parallel.

    pip install "minirt[dask]"          # or: pip install "dask[array,dataframe]"
    python examples/batch_inference_dask.py [--scheduler threads|processes|synchronous] [--n 20000]

It classifies N images with the bundled digits CNN three ways and checks they agree:

1. a Dask array of images [N, 1, 8, 8], chunked along N -> logits [N, 10];
2. a Dask dataframe with one column per pixel (a table of features, as from Parquet files)
   -> a dataframe with the predicted class;
3. the plain session, one run over everything: the reference.

Each chunk is one task. The model travels to the tasks as its *path*; each process builds its
session on the first chunk it runs and keeps it (see minirt/tools/distributed.py).

To run on a cluster, create a client before computing; nothing else changes:

    from dask.distributed import Client, LocalCluster
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))   # or Client("tcp://host:8786")
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minirt
from minirt.cli import demo_files
from minirt.tools.distributed import predict_dask_array, predict_dask_dataframe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="how many images")
    parser.add_argument("--chunk", type=int, default=2_500, help="images per chunk (one task each)")
    parser.add_argument("--scheduler", default="threads", choices=("threads", "processes", "synchronous"))
    args = parser.parse_args()

    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    model, _, sample = demo_files()
    model = str(model)
    # N images: the bundled samples, slightly jittered, so that there is something to classify
    rng = np.random.default_rng(0)
    base = sample["images"]  # [k, 1, 8, 8] float32 in [0, 1]
    picks = rng.integers(0, len(base), args.n)
    images = np.clip(base[picks] + rng.normal(0, 0.05, (args.n, 1, 8, 8)), 0, 1).astype(np.float32)

    # 1. a Dask array, chunked along the samples axis
    darr = da.from_array(images, chunks=(args.chunk, 1, 8, 8))
    logits = predict_dask_array(model, darr, batch_size=512)  # lazy: nothing has run yet
    print(f"{darr.npartitions} chunks of up to {args.chunk} images -> {logits}")
    t0 = time.perf_counter()
    out = logits.compute(scheduler=args.scheduler)
    t_dask = time.perf_counter() - t0
    print(f"dask array ({args.scheduler}): {args.n} images in {t_dask:.2f} s "
          f"({args.n / t_dask:,.0f} images/s)")

    # 2. a Dask dataframe, one column per pixel
    pixels = [f"px{i}" for i in range(64)]
    table = pd.DataFrame(images.reshape(args.n, 64), columns=pixels)
    ddf = dd.from_pandas(table, npartitions=max(1, args.n // args.chunk))
    preds = predict_dask_dataframe(model, ddf, pixels, prefix="logit", batch_size=512)
    digit = preds.map_partitions(lambda p: p.to_numpy().argmax(axis=1), meta=("digit", "i8"))
    t0 = time.perf_counter()
    classes = np.asarray(digit.compute(scheduler=args.scheduler))
    print(f"dask dataframe ({args.scheduler}): {time.perf_counter() - t0:.2f} s; "
          f"class counts {np.bincount(classes, minlength=10).tolist()}")

    # 3. the reference: one plain session run
    sess = minirt.InferenceSession(model)
    t0 = time.perf_counter()
    [ref] = sess.run(None, {"image": images})
    print(f"plain session: {time.perf_counter() - t0:.2f} s")
    assert np.allclose(out, ref, atol=1e-5), "the Dask result differs from the plain run"
    assert (classes == ref.argmax(axis=1)).all()
    print("all three agree")


if __name__ == "__main__":  # needed for scheduler="processes", which starts fresh interpreters
    main()
