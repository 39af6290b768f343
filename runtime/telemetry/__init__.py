"""Telemetry: traces, OpenTelemetry metrics and log lines, and their export.

Imported by every role; imports only the base (tests/test_layout.py).
"""
