"""The package version (single source: pyproject.toml reads the same number)."""

#: Above every 2.x release of experimaestro (2.7.0 is the last) and below 3, so that pip keeps this
#: package when another one requires ``experimaestro>=2.5`` (or ``<3``): see README.md.
__version__ = "2.90.0"
