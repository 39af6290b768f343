"""The worker role: read a function partition's jobs, run their handlers, settle them.

Imports the base and telemetry, never the client API, the scheduler or the
ingress (tests/test_layout.py).
"""
