"""The Redis data layer: keys, envelopes, Lua scripts and connections.

It knows nothing of processes, HTTP or handler types; payloads stay raw bytes.
"""
