"""2.x's import path of the path generators: ``from experimaestro.generators import
pathgenerator`` (also ``PathGenerator``); they are defined in :mod:`experimaestro.core.paths`."""

from .core.paths import PathGenerator, pathgenerator

__all__ = ["PathGenerator", "pathgenerator"]
