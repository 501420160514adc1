"""Connectors: where files and processes live (the local machine, or a host reached over SSH).

See :class:`~experimaestro.connectors.base.Connector` for the operations every connector offers.
Import from the modules (``experimaestro.connectors.local``...): this package imports nothing, so
that a job process, which needs only ``files`` and ``process``, starts fast.
"""
