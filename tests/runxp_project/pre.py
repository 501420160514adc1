"""Runs in the controller before experiment.py is imported: heavylib becomes a stand-in there (jobs
import the real one)."""
import os

from experimaestro.experiments import mock_modules

mock_modules(["heavylib"])
os.environ["RUNXP_PRE_EXPERIMENT"] = "ran"
