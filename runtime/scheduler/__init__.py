"""The scheduler role: promote due jobs and publish repeatable jobs' ticks.

Imports the base and telemetry, never the client API, the worker or the
ingress (tests/test_layout.py).
"""
