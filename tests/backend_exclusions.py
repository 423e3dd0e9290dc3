"""ONNX backend test cases minirt does not run, each with the reason a reader can check.

Keys are regular expressions matched against the test names of
``onnx.backend.test.BackendTest`` (e.g. ``test_abs_cpu``); values are the reasons.
"""

EXCLUDED: dict[str, str] = {
}
