"""Every Python example in the tutorials runs (blocks of a page share one namespace, in order).

Tutorials are written to run from the root of a clone: the test runs them in a temporary
folder that links ``minirt/`` and ``models/`` from the repository, so the paths they use resolve
and the files they write land in the temporary folder. A block whose first line is
``# not run`` is skipped (e.g. one that needs a GPU or a cluster).
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted((DOCS / "tutorials").glob("*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tutorial_code_runs(page, tmp_path, monkeypatch):
    blocks = [b for b in BLOCK.findall(page.read_text()) if not b.startswith("# not run")]
    for name in ("minirt", "models"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    os.environ.setdefault("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__tutorial__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except ModuleNotFoundError as e:  # an optional extra the page says it needs
            pytest.skip(f"{page.name} needs {e.name}")
