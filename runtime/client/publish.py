"""Publishing from Python: validate against the input type, then one Lua call per partition."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec

from sluice.runtime import catalogue
from sluice.runtime.client.jobs import Jobs
from sluice.runtime.client.timing import When, due, epoch_ms
from sluice.runtime.declare import Function
from sluice.runtime.errors import InvalidPayload, InvalidPriority, PayloadTooLarge
from sluice.runtime.phones import in_workspace
from sluice.runtime.registry import Registry, partition_keys
from sluice.runtime.telemetry import tracing
from sluice.streams import envelope as env
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import PartitionKeys, check_token, given_id, partition_of
from sluice.streams.publish import Outgoing, Written, publish

# One Lua call writes at most this many jobs, so a huge bulk publish does not
# hold Redis (single-threaded) for long while other clients wait.
CHUNK = 1000

Priority = Literal["high", "normal", "low"]
PRIORITIES: dict[str, int] = {"high": env.HIGH, "normal": env.NORMAL, "low": env.LOW}


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One event to publish: `data` is the input Struct or anything convertible to it."""

    workspace: str
    data: Any
    # An explicit id makes the publish idempotent: the same id is never a second job.
    id: str | None = None
    # Run later: `delay_ms` from now (Redis's clock), or at `run_at`: an aware
    # datetime, RFC 3339 text, RFC 9557 text with a zone ("...T09:00[Europe/Berlin]")
    # or a `LocalTime` (runtime.client.timing says how DST changes resolve).
    # At most one; a time in the past runs now.
    delay_ms: int | None = None
    run_at: When | None = None
    # Not to start after this (a time as `run_at`): a job picked up later is
    # marked expired instead of run, as a 15-minute reminder 20 minutes late.
    expires_at: When | None = None
    # A business key names one live job per function and workspace: publishing
    # it again replaces the job if it has not started (new data, new due time).
    key: str | None = None
    # Tags cancel jobs together: `Jobs.cancel_tag("booking:123", workspace=...)`.
    tags: tuple[str, ...] = ()
    # A workspace's high jobs go before its normal ones, normal before low (which
    # still get a turn in five): a password reset is not queued behind a campaign.
    priority: Priority = "normal"


class Publishable(Protocol):
    """What `Client.prepare` reads of an event: an `Event`, or the ingress's decoded
    HTTP body, taken as it is rather than copied into an Event per request."""

    @property
    def workspace(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def id(self) -> str | None: ...
    @property
    def delay_ms(self) -> int | None: ...
    @property
    def run_at(self) -> When | None: ...
    @property
    def expires_at(self) -> When | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def priority(self) -> str: ...


class Receipt(msgspec.Struct, frozen=True):
    """What a publish wrote: one job id, shared by every function the topic routes to."""

    # As given (ids are per workspace), or as generated.
    id: str
    functions: tuple[str, ...]
    # True when every copy already existed: nothing was written.
    duplicate: bool
    # The instant `run_at` named (UTC), as resolved from a zone; None without one.
    due: datetime | None = None


class Prepared(msgspec.Struct, frozen=True):
    """Events validated and encoded for their partitions, not yet written."""

    # The jobs' stored ids, and each as the API shows it (keys.shown_id).
    ids: list[str]
    shown: list[str]
    # Each job's `run_at` as epoch ms (0: none), for its receipt.
    due: list[int]
    functions: tuple[str, ...]
    groups: dict[PartitionKeys, list[Outgoing]]
    # Whether a job has a given id or a business key: only then may an earlier
    # partition layout hold its duplicate or the key's job (runtime.client.layouts).
    named: bool = False


class Client:
    """Publishes events for the functions of a registry; `jobs` finds, cancels and
    moves them (runtime.client.jobs)."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry
        self.jobs = Jobs(redis, registry)
        self._keys: dict[tuple[str, int], PartitionKeys] = {}
        self._routes: dict[str, tuple[Sequence[Function[Any]], tuple[str, ...]]] = {}

    @classmethod
    async def from_catalogue(cls, redis: Redis) -> Client:
        """A client of the functions whose workers have started (the catalogue they
        write), for a publisher that imports no handler: read once, so a function
        deployed later needs a new client. Its data is checked by the worker
        (runtime.catalogue)."""
        return cls(redis, await catalogue.registry(redis))

    async def publish(
        self,
        target: str,
        *,
        workspace: str,
        data: Any,
        id: str | None = None,
        delay_ms: int | None = None,
        run_at: When | None = None,
        expires_at: When | None = None,
        key: str | None = None,
        tags: Sequence[str] = (),
        priority: Priority = "normal",
    ) -> Receipt:
        """Publish one event to a function or topic; returns once Redis has it."""
        event = Event(
            workspace=workspace,
            data=data,
            id=id,
            delay_ms=delay_ms,
            run_at=run_at,
            expires_at=expires_at,
            key=key,
            tags=tuple(tags),
            priority=priority,
        )
        (receipt,) = await self.publish_many(target, [event])
        return receipt

    async def publish_many(self, target: str, events: Sequence[Event]) -> list[Receipt]:
        """Publish many events; every one is validated before anything is written."""
        with tracing.publishing(target, len(events)) as trace:
            return (await self.write([self.prepare(target, events, trace)]))[0]

    def prepare(
        self, target: str, events: Sequence[Publishable], trace: dict[str, str] | None = None
    ) -> Prepared:
        """Validate and encode `events` for `target`, writing nothing; raises on
        any invalid event (the `SluiceError` says which). `trace` is the W3C trace
        context the jobs carry (runtime.telemetry.tracing)."""
        functions, names = self._route(target)
        created_ms = env.now_ms()
        ids: list[str] = []
        shown: list[str] = []
        dues: list[int] = []
        groups: dict[PartitionKeys, list[Outgoing]] = {}
        named = False
        # One pass per event, each check once whatever the number of functions,
        # and the usual event (no id, schedule, key or tags) without a call for
        # each: this runs for every HTTP publish, most of them of one event.
        for i, event in enumerate(events):
            workspace = check_token("workspace", event.workspace)
            # A given id is kept per workspace (keys.given_id); a generated one as it is.
            if event.id is None:
                job_id = env.new_job_id()
                shown.append(job_id)
            else:
                shown.append(check_token(f"job id of event {i}", event.id))
                job_id = given_id(workspace, event.id)
            ids.append(job_id)
            if event.delay_ms is None and event.run_at is None:
                due_ms = delay_ms = 0
            else:
                due_ms, delay_ms = due(event.delay_ms, event.run_at, f"event {i}")
            dues.append(due_ms)
            expires_ms = (
                0
                if event.expires_at is None
                else epoch_ms(event.expires_at, f"event {i}", "expires_at")
            )
            key = "" if event.key is None else check_token(f"key of event {i}", event.key)
            named = named or event.id is not None or bool(key)
            tags = _tags(event.tags, i) if event.tags else ()
            priority = PRIORITIES.get(event.priority) if isinstance(event.priority, str) else None
            if priority is None:
                raise InvalidPriority(
                    f"event {i}: priority must be high, normal or low, not {event.priority!r}"
                )
            for fn in functions:
                envelope = env.Envelope(
                    id=job_id,
                    function=fn.name,
                    workspace=workspace,
                    payload=encode_input(fn, event.data, i, workspace),
                    created_ms=created_ms,
                    due_ms=due_ms or (created_ms + delay_ms if delay_ms else 0),
                    expires_ms=expires_ms,
                    key=key,
                    tags=tags,
                    priority=priority,
                    trace=trace,
                )
                part = partition_of(workspace, fn.options.partitions)
                groups.setdefault(self._partition(fn.name, part), []).append(
                    Outgoing(envelope, due_ms, delay_ms)
                )
        return Prepared(ids, shown, dues, names, groups, named)

    async def write(self, prepared: Sequence[Prepared]) -> list[list[Receipt]]:
        """Write prepared publishes together: one script call per partition (and
        CHUNK jobs) for all of them, so many small publishes share round trips.
        Returns each one's receipts; raises `RedisUnavailable` if any write failed
        (some may have been written: publish again with the same ids)."""
        merged: dict[PartitionKeys, list[Outgoing]] = {}
        for p in prepared:
            for keys, jobs in p.groups.items():
                merged.setdefault(keys, []).extend(jobs)
        if any(p.named for p in prepared) and (found := await self.jobs.layouts.superseded(merged)):
            # Jobs in an earlier layout already: duplicates, reported as such.
            for keys, jobs in merged.items():
                merged[keys] = [j for j in jobs if (keys.function, j.envelope.id) not in found]
        writes = [self._write_partition(keys, jobs) for keys, jobs in merged.items()]
        # One partition (the usual coalesced write) is awaited as it is, not in a task.
        results = [await writes[0]] if len(writes) == 1 else await asyncio.gather(*writes)
        created = {
            (written.job_id, keys.function)
            for keys, partition in zip(merged, results, strict=True)
            for written in partition
            if written.created
        }
        receipts = []
        for p in prepared:
            functions = p.functions
            if len(functions) == 1:  # most topics: no loop over functions per job
                (name,) = functions
                receipts.append([
                    Receipt(s, functions, (i, name) not in created, _instant(d))
                    for i, s, d in zip(p.ids, p.shown, p.due, strict=True)
                ])  # fmt: skip
            else:
                receipts.append([
                    Receipt(s, functions, all((i, n) not in created for n in functions),
                            _instant(d))
                    for i, s, d in zip(p.ids, p.shown, p.due, strict=True)
                ])  # fmt: skip
        return receipts

    async def _write_partition(self, keys: PartitionKeys, jobs: list[Outgoing]) -> list[Written]:
        """A partition's jobs, CHUNK a script call, one call after another: Redis
        runs calls in turn, and sent at once, the calls of a publish of many
        thousand jobs would all go before other clients' calls that came meanwhile."""
        share = self.registry.share(keys.function)
        if len(jobs) <= CHUNK:
            return await publish(self.redis, keys, jobs, share)
        written: list[Written] = []
        for start in range(0, len(jobs), CHUNK):
            written += await publish(self.redis, keys, jobs[start : start + CHUNK], share)
        return written

    def _route(self, target: str) -> tuple[Sequence[Function[Any]], tuple[str, ...]]:
        """The functions `target` routes to, and their names (made once per target)."""
        found = self._routes.get(target)
        if found is None:
            functions = self.registry.route(target)
            found = self._routes[target] = (functions, tuple(fn.name for fn in functions))
        return found

    def _partition(self, function: str, partition: int) -> PartitionKeys:
        keys = self._keys.get((function, partition))
        if keys is None:
            fn = self.registry.by_name[function]
            keys = partition_keys(fn, partition, is_cluster(self.redis))
            self._keys[(function, partition)] = keys
        return keys


def _instant(due_ms: int) -> datetime | None:
    return datetime.fromtimestamp(due_ms / 1000, UTC) if due_ms else None


def _tags(given: Sequence[str], index: int) -> tuple[str, ...]:
    # Each tag once, in the order given.
    return tuple(dict.fromkeys(check_token(f"tag of event {index}", t) for t in given))


def encode_input(fn: Function[Any], data: Any, index: int = 0, workspace: str = "") -> msgspec.Raw:
    """`data` checked against and encoded as `fn`'s input; `index` names it in errors,
    and its `workspace` is the one whose region national phone numbers are read in.

    A function known from the catalogue (runtime.catalogue) has `dict` for input:
    any JSON object, a Struct as its fields, which its worker checks."""
    if not isinstance(data, fn.input) and not (
        fn.input is dict and isinstance(data, msgspec.Struct)
    ):
        try:
            with in_workspace(workspace):
                data = msgspec.convert(data, fn.input)
        except msgspec.ValidationError as exc:
            raise InvalidPayload(fn.name, index, str(exc)) from None
    try:
        payload = env.encode_payload(data)
    except OverflowError:
        # msgpack carries integers of 64 bits at most; JSON and Python have no bound.
        at = _oversized(msgspec.to_builtins(data), "$")
        raise InvalidPayload(fn.name, index, f"Integer beyond 64 bits - at `{at}`") from None
    if len(payload) > fn.options.max_payload_bytes:
        raise PayloadTooLarge(
            f"event {index} for function {fn.name!r}: payload is {len(payload)} bytes, "
            f"the limit is {fn.options.max_payload_bytes}"
        )
    return payload


def _oversized(value: object, path: str) -> str:
    """The path of the first integer in `value` beyond 64 bits ("" for none)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "" if -(2**63) <= value < 2**64 else path
    items: list[tuple[str, object]] = []
    if isinstance(value, dict):
        items = [(f"{path}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    for at, inner in items:
        if found := _oversized(inner, at):
            return found
    return ""
