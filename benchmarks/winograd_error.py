"""Float32 error of Winograd's F(2x2, 3x3) and F(4x4, 3x3) against the column path (im2col + GEMM).

    python benchmarks/winograd_error.py

Why minirt runs F(2x2, 3x3) and not F(4x4, 3x3), though F(4x4) needs 1.78x fewer multiplies on
big maps: each algorithm below is written as its matrices (Lavin and Gray, 2015), computed in
float32 with NumPy (transforms, the per-position products summed over the channels, the inverse
transform), and compared with the same conv in float64. The error is the largest |error| over
the outputs divided by the largest |output|, for C input channels, inputs N(0, 1) or ReLU'd,
weights N(0, 1/(9C)) (outputs of size ~1-4, as in a trained network). F(2x2)'s transforms add and
subtract; F(4x4)'s multiply by 2, 4, 5 and 8 and its filter transform divides by 6 and 24 —
measured here: ~10x the error of the other two, at every C.
"""

from __future__ import annotations

import numpy as np

# F(2x2, 3x3): 4x4 tiles, 2x2 outputs
BT2 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G2 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
AT2 = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
# F(4x4, 3x3): 6x6 tiles, 4x4 outputs (interpolation points 0, +-1, +-2, infinity)
BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)


def winograd(x, w, BT, G, AT, dtype):
    """'Valid' 3x3 conv of x [C, H, W] by w [M, C, 3, 3] with F(m x m, 3x3) in ``dtype``."""
    a, m = BT.shape[0], AT.shape[0]  # tile size, outputs per tile side
    C, H, W = x.shape
    th, tw = (H - 2) // m, (W - 2) // m
    U = np.einsum("ik,mckl,jl->ijmc", G, w, G).astype(dtype)  # [a, a, M, C], in float64, rounded once
    tiles = np.stack([np.stack([x[:, i * m:i * m + a, j * m:j * m + a] for j in range(tw)], 1)
                      for i in range(th)], 1).astype(dtype)  # [C, th, tw, a, a]
    V = np.einsum("ik,ctskl,jl->ijcts", BT.astype(dtype), tiles, BT.astype(dtype))  # [a, a, C, th, tw]
    P = np.einsum("ijmc,ijcts->ijmts", U, V)  # the a*a products over the channels
    Y = np.einsum("ki,ijmts,lj->mtksl", AT.astype(dtype), P, AT.astype(dtype))  # [M, th, m, tw, m]
    return Y.reshape(w.shape[0], th * m, tw * m)


def columns(x, w, dtype):
    """The same conv as im2col + one product (minirt's column path)."""
    C, H, W = x.shape
    cols = np.stack([x[:, i:i + H - 2, j:j + W - 2] for i in range(3) for j in range(3)], 1)
    return (w.reshape(w.shape[0], -1).astype(dtype) @ cols.reshape(C * 9, -1).astype(dtype)).reshape(
        w.shape[0], H - 2, W - 2)


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'C':>4} {'input':<7} {'im2col':>9} {'F(2x2)':>9} {'F(4x4)':>9}   max|y|")
    for C in (32, 64, 128, 256, 512):
        for kind in ("normal", "relu"):
            x = rng.standard_normal((C, 26, 26))  # 24x24 outputs: whole tiles for both
            if kind == "relu":
                x = np.maximum(x, 0)
            w = rng.standard_normal((16, C, 3, 3)) / np.sqrt(9 * C)
            exact = columns(x, w, np.float64)
            scale = np.abs(exact).max()

            def err(y):
                return np.abs(y - exact).max() / scale

            print(f"{C:>4} {kind:<7} {err(columns(x, w, np.float32)):9.1e} "
                  f"{err(winograd(x, w, BT2, G2, AT2, np.float32)):9.1e} "
                  f"{err(winograd(x, w, BT4, G4, AT4, np.float32)):9.1e}   {scale:.2f}")


if __name__ == "__main__":
    main()
