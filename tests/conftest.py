import os
import sys

# tests import small shared modules (backend_exclusions, model helpers) from this folder
sys.path.insert(0, os.path.dirname(__file__))
