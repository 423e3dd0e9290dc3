"""Pass counts of the official ONNX backend test suites, per suite (CPU cases only).

    python scripts/conformance_report.py            # runs tests/test_onnx_backend.py, prints a table

Excluded cases (tests/backend_exclusions.py) count as not passed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

SUITES = {
    "OnnxBackendNodeModelTest": "node",
    "OnnxBackendPyTorchConvertedModelTest": "pytorch-converted",
    "OnnxBackendPyTorchOperatorModelTest": "pytorch-operator",
    "OnnxBackendSimpleModelTest": "simple",
    "OnnxBackendRealModelTest": "light (real)",
}


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "report.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", str(root / "tests" / "test_onnx_backend.py"), "-q",
             "-p", "no:cacheprovider", f"--junitxml={xml}", "-k", "cpu"],
            cwd=root, stdout=subprocess.DEVNULL,
        )
        tree = ET.parse(xml)
    counts: dict[str, Counter] = {s: Counter() for s in SUITES.values()}
    for case in tree.iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        if cls not in SUITES or not case.get("name", "").endswith("_cpu"):
            continue
        if case.find("skipped") is not None:
            outcome = "excluded"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        else:
            outcome = "passed"
        counts[SUITES[cls]][outcome] += 1
    print("| suite | cases | passed | failed | excluded |")
    print("|---|---|---|---|---|")
    for suite, c in counts.items():
        total = sum(c.values())
        print(f"| {suite} | {total} | {c['passed']} | {c['failed']} | {c['excluded']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
