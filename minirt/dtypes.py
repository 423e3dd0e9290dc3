"""ONNX element types <-> NumPy dtypes.

ONNX names element types with small integers (``TensorProto.FLOAT == 1`` ...). Ops receive
those integers in attributes such as ``Cast(to=...)``; this table turns them into NumPy
dtypes without importing the protobuf classes. The narrow float types (bfloat16, float8, int4)
come from ``ml_dtypes``, which onnx itself depends on.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

# ONNX TensorProto.DataType code -> NumPy dtype
ONNX_TO_NP: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    8: np.dtype(object),  # STRING: NumPy object arrays of str
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
    14: np.dtype(np.complex64),
    15: np.dtype(np.complex128),
    16: np.dtype(ml_dtypes.bfloat16),
    17: np.dtype(ml_dtypes.float8_e4m3fn),
    18: np.dtype(ml_dtypes.float8_e4m3fnuz),
    19: np.dtype(ml_dtypes.float8_e5m2),
    20: np.dtype(ml_dtypes.float8_e5m2fnuz),
    21: np.dtype(ml_dtypes.uint4),
    22: np.dtype(ml_dtypes.int4),
    23: np.dtype(ml_dtypes.float4_e2m1fn),
    24: np.dtype(ml_dtypes.float8_e8m0fnu),
    25: np.dtype(ml_dtypes.uint2),
    26: np.dtype(ml_dtypes.int2),
    27: np.dtype(ml_dtypes.float6_e2m3fn),
    28: np.dtype(ml_dtypes.float6_e3m2fn),
}

ONNX_NAMES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn",
    18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
    23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2", 27: "float6e2m3", 28: "float6e3m2",
}

NP_TO_ONNX: dict[np.dtype, int] = {v: k for k, v in ONNX_TO_NP.items()}


def np_dtype(onnx_type: int) -> np.dtype:
    """NumPy dtype for an ONNX element-type code, e.g. ``np_dtype(1) == float32``."""
    try:
        return ONNX_TO_NP[int(onnx_type)]
    except KeyError:
        raise NotImplementedError(f"ONNX element type {onnx_type} is not supported by minirt") from None


def onnx_type(dtype) -> int:
    """ONNX element-type code for a NumPy dtype, e.g. ``onnx_type(np.float32) == 1``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return 8
    return NP_TO_ONNX[dtype]


def type_name(onnx_type_code: int) -> str:
    """Readable name of an ONNX element type: ``type_name(1) == "float32"``."""
    return ONNX_NAMES.get(int(onnx_type_code), f"type{onnx_type_code}")
