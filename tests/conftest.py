import os
import sys

from hypothesis import settings

# tests import small shared modules (backend_exclusions, model helpers) from this folder
sys.path.insert(0, os.path.dirname(__file__))

# Property tests draw the same examples on every run (derandomize: seeded per test), so a CI run
# is reproducible and a red run is a regression, not a new draw. To hunt for new failing
# examples, run with fresh random draws: HYPOTHESIS_PROFILE=explore pytest
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
