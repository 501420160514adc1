"""Connectors: where files and processes live (the local machine, or a host reached over SSH).

See :class:`~experimaestro.connectors.base.Connector` for the operations every connector offers.
"""

from .base import Connector, FileStat, StartedProcess
from .local import LocalConnector

__all__ = ["Connector", "FileStat", "LocalConnector", "StartedProcess"]
