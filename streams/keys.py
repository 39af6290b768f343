"""The only place a Redis key string is built.

Every key of one function partition shares the hash tag `{<function>#<p>}`, so
each Lua script touches one slot and runs unchanged on Redis Cluster. On a
cluster a partition's tag may carry a suffix (`{<function>#<p>~<n>}`) that
spreads a function's partitions over the slot space (`spread_tag`).
"""

from __future__ import annotations

import functools
import itertools
import re
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from sluice.streams.errors import InvalidName

PREFIX = "sluice"
GROUP = "workers"

_FUNCTION_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,99}")
# Ids and workspaces go into keys and logs: no braces (hash tags), no spaces.
_TOKEN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def check_function_name(name: str) -> str:
    """Return `name` if it can name a function's keys, else raise `InvalidName`."""
    if not _FUNCTION_NAME.fullmatch(name):
        raise InvalidName(
            f"function name {name!r} must be 1-100 of a-z 0-9 _ . - starting with a letter or digit"
        )
    return name


def check_token(kind: str, value: str) -> str:
    """Return `value` if it can be a workspace or job id, else raise `InvalidName`."""
    if not _TOKEN.fullmatch(value):
        raise InvalidName(f"{kind} {value!r} must be 1-128 of A-Z a-z 0-9 _ . : -")
    return value


# An id its publisher gave is kept as "<workspace>~<id>" (`~` cannot occur in a
# token, nor is it the `/`, space or `|` the scripts split links, backlog members
# and records on), so each workspace has ids of its own: one tenant's id is never
# a duplicate of another's, nor tells it the other used it. A generated id is
# unguessable and kept as it is, so it alone finds its job in any workspace.
SEP = "~"


def given_id(workspace: str, job_id: str) -> str:
    """The stored id of a job whose publisher gave it `job_id`."""
    return f"{workspace}{SEP}{job_id}"


def shown_id(stored: str) -> str:
    """The id as its publisher gave it (or was given): what the API shows."""
    return stored[stored.find(SEP) + 1 :]


def job_ref(job_id: str, workspace: str | None) -> tuple[str | None, list[str]]:
    """Where to look for the job asked for by `job_id` within `workspace` (None: any):
    the workspace its record must be in and the stored ids it may have, in order.

    `job_id` is the id its publisher gave or was given, or the stored id (what a
    handler's `job.id` and the logs show): a stored id of another workspace has
    none. Raises `InvalidName` for anything else.
    """
    owner, sep, given = job_id.partition(SEP)
    if sep:
        check_token("workspace of job id", owner)
        check_token("job id", given)
        return owner, [job_id] if workspace in (None, owner) else []
    check_token("job id", job_id)
    if workspace is None:
        return None, [job_id]
    check_token("workspace", workspace)
    # Its own given id first; a generated id (or one stored before ids were per
    # workspace) only if its record is of this workspace (the scripts check).
    return workspace, [given_id(workspace, job_id), job_id]


def partition_of(workspace: str, partitions: int) -> int:
    """Map a workspace to its partition: stable across processes, hosts and versions.

    crc32, not Python's `hash()`, which is salted per process.
    """
    if partitions == 1:
        return 0
    return zlib.crc32(workspace.encode()) % partitions


# The HASH of the deployment's functions as workers declared them (streams.catalogue):
# function name -> JSON entry (topics, input schema, partitions, ...), written by
# each worker at start for its functions, read by clients that publish by name.
CATALOGUE = f"{PREFIX}:{{catalogue}}:functions"


def layouts(function: str) -> str:
    """The SET of partition counts `function`'s jobs may still lie in (streams.layouts):
    its workers' own, and earlier ones until their partitions are drained. In the
    catalogue's slot."""
    return f"{PREFIX}:{{catalogue}}:layouts:{function}"


def layouts_held(function: str) -> str:
    """The HASH partition count -> epoch ms (Redis's clock) until which `function`'s
    layouts keep a count whose partitions are all drained but whose jobs may still
    lie in partitions the current count shares with it (streams.layouts.held)."""
    return f"{PREFIX}:{{catalogue}}:layouts-held:{function}"


def webhook_endpoints(workspace: str) -> str:
    """The HASH of a workspace's webhook endpoints (streams.webhooks): endpoint id
    -> record. Not a function's key: `webhook.deliver` reads it, the ingress
    writes it. Every workspace's is in one slot (`{webhooks}`), a small one."""
    return f"{PREFIX}:{{webhooks}}:endpoints:{check_token('workspace', workspace)}"


def webhook_settled(job_id: str) -> str:
    """The HASH of a retried `webhook.deliver` job's endpoints that answered for
    good (endpoint id -> answer), so its next attempt POSTs only to the others;
    expires (streams.webhooks). `job_id` is the stored id, unique across workspaces."""
    return f"{PREFIX}:{{webhooks}}:settled:{job_id}"


def global_limit(function: str) -> str:
    """The HASH of the global rate limit of a function with several partitions
    (streams.global_limit): `tat` -> the limiter's theoretical arrival time, `rate`
    -> the run-time override (jobs/s). One limiter for every partition, in a slot of
    its own (`{<function>:limit}`: `:` is in no function name, so no partition's tag
    is like it), so the limit is exact wherever the partitions live and whichever
    one the load falls on."""
    return f"{PREFIX}:{{{function}:limit}}:rate"


@functools.cache
def spread_tag(function: str, partition: int, partitions: int) -> str:
    """The hash tag (inside the braces) of `partition` of `partitions` on a cluster.

    The tag's slot falls in the middle half of the partition's share of the slot
    space (partition p of P: slots from p/P to (p+1)/P of 16384), so partitions land
    on different primaries of a cluster whose primaries own even ranges of slots, as
    `redis-cli --cluster create` and the managed services lay them out: 3 partitions
    on 3 primaries use all three. `<function>#<p>` where it already falls there, else
    the first `<function>#<p>~<n>` that does (about 2P to try, once per process).
    Depends on the partition count: a cluster's keys are laid out for the count.
    """
    base = f"{function}#{partition}"
    if partitions <= 1:
        return base
    share = REDIS_CLUSTER_HASH_SLOTS / partitions
    low, high = (partition + 0.25) * share, (partition + 0.75) * share
    tags = (f"{base}~{n}" if n else base for n in itertools.count())
    return next(tag for tag in tags if low <= key_slot(tag.encode()) < high)


class PartitionKeys:
    """The keys of one function partition.

    `spread_over`: on a cluster, the function's partition count, so its partitions'
    tags spread over the primaries (`spread_tag`); 0 on a single server, whose keys
    keep the tag they always had (a changed tag would strand the jobs stored under it).
    """

    __slots__ = (
        "backlog",
        "dead",
        "deferlog",
        "deferrals",
        "delayed",
        "done",
        "function",
        "jobs",
        "keyed",
        "limits",
        "metrics",
        "partition",
        "paused",
        "rate",
        "repeats",
        "share",
        "started",
        "stats",
        "stream",
        "suspects",
        "tag",
        "tagged",
        "wake",
    )

    def __init__(self, function: str, partition: int, spread_over: int = 0) -> None:
        self.function = function
        self.partition = partition
        inside = spread_tag(function, partition, spread_over)
        self.tag = f"{PREFIX}:{{{inside}}}"
        self.stream = f"{self.tag}:stream"
        self.stats = f"{self.tag}:stats"
        # Fairness and priorities (streams/admit.lua): jobs of a workspace beyond
        # its share of the stream wait in `backlog` (ZSET by workspace, priority,
        # age); `share` (HASH workspace -> n) counts each one's unread entries.
        self.backlog = f"{self.tag}:backlog"
        self.share = f"{self.tag}:share"
        self.dead = f"{self.tag}:dead"
        # HASH job id -> record, one per partition: a settle writes every record
        # of its batch in one variadic HSET, and retention can drop records by
        # id in a script without naming a key per job.
        self.jobs = f"{self.tag}:jobs"
        # ZSET of finished job ids by finish time: the retention index.
        self.done = f"{self.tag}:done"
        # ZSET job id -> due ms: jobs published for later and retries waiting.
        # A waiting job's envelope lives in its record in `jobs` meanwhile.
        self.delayed = f"{self.tag}:delayed"
        # Pub/sub channel: a job due earlier than any other wakes the schedulers.
        self.wake = f"{self.tag}:wake"
        # HASH "workspace/business key" -> the id of the live job it names.
        self.keyed = f"{self.tag}:keyed"
        # ZSET (all scores 0) of "workspace/tag/job id": a tag's jobs are one
        # lexicographic range, in one key the scripts can name in KEYS.
        self.tagged = f"{self.tag}:tagged"
        # HASH schedule name -> repeatable job schedule (streams.repeats).
        self.repeats = f"{self.tag}:repeats"
        # Rate limits (streams.ratelimit): limiter state, overrides set at run
        # time, and per workspace the record of deferred jobs and its recent
        # seconds with deferrals (a bounded history, newest first).
        self.rate = f"{self.tag}:rate"
        self.limits = f"{self.tag}:limits"
        self.deferrals = f"{self.tag}:deferrals"
        self.deferlog = f"{self.tag}:deferlog"
        # HASH of job metrics by workspace and for the function (streams.metrics).
        self.metrics = f"{self.tag}:metrics"
        # Set while the function is paused: its workers read nothing (streams.pause).
        self.paused = f"{self.tag}:paused"
        # HASH entry id -> handler starts of a job taken over from a lost worker
        # (streams.suspects): a crash is charged to the jobs that were running.
        self.suspects = f"{self.tag}:suspects"
        # HASH entry id -> when its handler started (Redis time, ms), for jobs
        # running past a worker's metrics flush (streams.started): an active
        # job's status says since when.
        self.started = f"{self.tag}:started"

    def __repr__(self) -> str:
        return f"PartitionKeys({self.function!r}, {self.partition})"


def links(workspace: str, job_id: str, key: str, tags: tuple[str, ...]) -> str:
    """What ties a job to its business key and tags, as the scripts store it.

    "workspace/key" (or nothing), then " workspace/tag/job id" per tag: `/` and
    spaces cannot occur in tokens, so the scripts split it without escaping.
    """
    if not key and not tags:
        return ""
    return " ".join(
        [f"{workspace}/{key}" if key else "", *(tag_member(workspace, t, job_id) for t in tags)]
    )


def tag_member(workspace: str, tag: str, job_id: str) -> str:
    return f"{workspace}/{tag}/{job_id}"
