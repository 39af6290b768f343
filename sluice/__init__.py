"""Sluice: async handler functions on Redis Streams.

The library is `sluice.runtime` (declaring functions, the client API, the
processes) over `sluice.streams` (the data layer). In this repository they are
the top-level folders runtime/ and streams/, reached here through symbolic
links, so an installed Sluice takes no top-level name but `sluice` and cannot
clash with a project's own `runtime` or `streams` package.
"""
