"""Inputs for tools that run a model without data: random arrays shaped like the model's inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from minirt.errors import InputError


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"image:1x3x224x224"`` -> ``("image", (1, 3, 224, 224))`` (the ``--shape`` option)."""
    if ":" not in text:
        raise InputError(f"--shape expects NAME:D1xD2x..., e.g. image:1x3x224x224, got {text!r}")
    name, dims = text.rsplit(":", 1)
    try:
        shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
    except ValueError:
        raise InputError(f"--shape {text!r}: dims must be integers separated by 'x'") from None
    return name, shape


def input_shape(arg, shapes: dict[str, tuple[int, ...]] | None = None, batch: int | None = None) -> tuple[int, ...]:
    """The concrete shape to feed for one model input (a NodeArg).

    An explicit ``shapes[name]`` wins; otherwise fixed dims are kept, and every symbolic or
    unknown dim becomes ``batch`` when it is the first axis, 1 elsewhere (``--shape`` sets them).
    """
    if shapes and arg.name in shapes:
        return tuple(shapes[arg.name])
    out = []
    for axis, d in enumerate(arg.shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        else:
            out.append(batch if (axis == 0 and batch) else 1)
    return tuple(out)


def random_inputs(session, shapes: dict[str, tuple[int, ...]] | None = None, batch: int | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Random feeds for every input of ``session`` (seeded): floats in [0, 1), small ints, bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session.get_inputs():
        shape = input_shape(arg, shapes, batch)
        dtype = np.dtype(arg.dtype) if arg.dtype is not None else np.dtype(np.float32)
        if dtype.kind == "f":
            feeds[arg.name] = rng.random(shape).astype(dtype)
        elif dtype.kind in "iu":
            # small non-negative ints are valid token ids and indices for most models; masks and
            # segment (token type) ids are 0/1
            binary = any(word in arg.name.lower() for word in ("mask", "token_type", "segment"))
            feeds[arg.name] = rng.integers(0, 2 if binary else 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[arg.name] = rng.random(shape) < 0.5
        else:
            raise InputError(f"cannot make random data for input {arg.name!r} of type {arg.type}: pass it explicitly")
    return feeds


def load_inputs(items: list[str]) -> dict[str, np.ndarray]:
    """``["x=x.npy", "all.npz"]`` (the ``--input`` option) -> name -> array."""
    feeds = {}
    for item in items:
        if item.endswith(".npz") and "=" not in item:
            with np.load(item) as z:
                feeds.update({k: z[k] for k in z.files})
            continue
        if "=" not in item:
            raise InputError(f"--input expects NAME=FILE.npy, got {item!r}")
        name, path = item.split("=", 1)
        feeds[name] = np.load(path)
    return feeds
