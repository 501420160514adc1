"""Launchers: how a job is started and watched on a connector."""
