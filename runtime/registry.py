"""The deployment's functions by name and topic, loaded from a `module:attr` name."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from sluice.runtime.declare import Function
from sluice.runtime.errors import ConfigurationError, UnknownFunction
from sluice.streams.keys import PartitionKeys, check_token, partition_of

AnyFunction = Function[Any]


class Registry:
    """Functions by name, and which functions each topic routes to (fan-out)."""

    __slots__ = ("by_name", "by_topic")

    def __init__(self, functions: Iterable[AnyFunction]) -> None:
        self.by_name: dict[str, AnyFunction] = {}
        self.by_topic: dict[str, list[AnyFunction]] = {}
        for fn in functions:
            if fn.name in self.by_name:
                raise ConfigurationError(f"function {fn.name!r} is declared twice")
            self.by_name[fn.name] = fn
            for topic in fn.topics:
                self.by_topic.setdefault(topic, []).append(fn)

    def route(self, target: str) -> Sequence[AnyFunction]:
        """The functions a publish to `target` (a function name or topic) writes to."""
        try:
            return self.by_topic[target]
        except KeyError:
            known = ", ".join(sorted(self.by_topic)) or "none"
            raise UnknownFunction(f"no function handles {target!r} (known: {known})") from None

    def select(self, names: Iterable[str]) -> list[AnyFunction]:
        """The named functions, for `sluice worker --functions a,b`."""
        chosen = []
        for name in names:
            if name not in self.by_name:
                known = ", ".join(sorted(self.by_name)) or "none"
                raise UnknownFunction(f"no function named {name!r} (known: {known})")
            chosen.append(self.by_name[name])
        return chosen

    def partitions(
        self, function: str, workspace: str | None = None, *, cluster: bool
    ) -> list[PartitionKeys]:
        """The keys of `function`'s partitions: all of them, or the one `workspace` maps
        to, as laid out on a cluster (`cluster`) or a single server (`partition_keys`)."""
        (fn,) = self.select([function])
        count = fn.options.partitions
        if workspace is not None:
            index = partition_of(check_token("workspace", workspace), count)
            return [partition_keys(fn, index, cluster)]
        return [partition_keys(fn, p, cluster) for p in range(count)]

    def layout(self, function: str, count: int, *, cluster: bool) -> list[PartitionKeys]:
        """The keys of `function`'s partitions had it `count` of them: an earlier
        layout its jobs may still lie in (streams.layouts)."""
        (fn,) = self.select([function])
        return [partition_keys(fn, p, cluster, count) for p in range(count)]

    def share(self, function: str) -> int:
        """How many unread jobs of one workspace `function`'s stream holds (Options.share)."""
        return self.by_name[function].options.share

    def with_rates(self, rates: Mapping[str, float]) -> Registry:
        """The same functions, with the rate limits of `rates` (function name -> jobs
        a second, the `SLUICE_RATES` setting) in place of the declared ones."""
        try:
            changed = {fn.name: fn for fn in self.select(rates)}
        except UnknownFunction as exc:
            raise ConfigurationError(f"SLUICE_RATES: {exc}") from None
        for name, fn in changed.items():
            try:
                options = msgspec.structs.replace(fn.options, rate_per_s=rates[name])
            except ConfigurationError as exc:
                raise ConfigurationError(f"SLUICE_RATES for {name!r}: {exc}") from None
            changed[name] = Function(
                fn.name,
                fn.input,
                fn.handler,
                options,
                batched=fn.batched,
                example=fn.example,
                on_start=fn.on_start,
            )
        return Registry(changed.get(fn.name, fn) for fn in self)

    def __iter__(self) -> Iterator[AnyFunction]:
        return iter(self.by_name.values())


def partition_keys(fn: AnyFunction, partition: int, cluster: bool, count: int = 0) -> PartitionKeys:
    """The keys of `fn`'s `partition`: on a cluster spread over its primaries by the
    partition count (`count`, default the declared one: `sluice.streams.keys.spread_tag`),
    on a single server as they always were."""
    return PartitionKeys(fn.name, partition, (count or fn.options.partitions) if cluster else 0)


def load(spec: str) -> Registry:
    """Import `module:attr`, a sequence of `Function` values, from the working
    directory too (as `celery -A` and arq do): the `sluice` console script's own
    path holds only the library, and a project's `functions/` is beside it. Last
    on the path, so a project's folder never takes the place of an installed
    package it depends on."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"functions must be given as module:attr, got {spec!r}")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        functions = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no {attr!r}") from None
    if not isinstance(functions, Sequence) or not all(isinstance(f, Function) for f in functions):
        raise ConfigurationError(f"{spec} must be a sequence of Function values")
    return Registry(functions)
