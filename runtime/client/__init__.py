"""The client role: the Python API that publishes jobs and administers them
(jobs, dead letters, limits, pauses, metrics, repeats), used by the ingress and
by applications through `sluice.runtime`'s public names.

Imports the base, telemetry and the scheduler's schedule maths (cron, ticks),
never the worker or the ingress (tests/test_layout.py).
"""
