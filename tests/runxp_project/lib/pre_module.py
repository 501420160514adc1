"""pre_experiment given as a module name (pre.py is the file variant)."""
import os

from experimaestro.experiments import mock_modules

mock_modules(["heavylib"])
os.environ["RUNXP_PRE_EXPERIMENT"] = "module"
