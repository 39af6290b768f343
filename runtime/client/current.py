"""`current_client()`: how a handler publishes, reads and cancels jobs.

A handler that schedules further jobs (a booking's reminders, a campaign's
messages) uses the worker's own Redis connection and the deployment's whole
registry: it publishes to functions this worker may not consume. The worker's
role may not import the client, so the process shell (runtime/cli.py, or a
test's host) runs the worker in the context `worker_context` makes, and every
task the worker starts, each handler call among them, inherits it.
"""

from __future__ import annotations

import contextvars

from sluice.runtime.client.publish import Client
from sluice.runtime.errors import NotInWorker

_worker_client: contextvars.ContextVar[Client] = contextvars.ContextVar("sluice_worker_client")


def worker_context(client: Client) -> contextvars.Context:
    """A copy of the calling context in which `current_client()` is `client`: pass it
    to `create_task(..., context=)` of the worker's task, and only that task's."""
    context = contextvars.copy_context()
    context.run(_worker_client.set, client)
    return context


def current_client() -> Client:
    """The `Client` of the worker running the calling handler: `publish`, and its
    `jobs` (get, cancel by id, key or tag) for any function of the deployment."""
    try:
        return _worker_client.get()
    except LookupError:
        raise NotInWorker(
            "current_client() is known only to handlers a worker runs (runtime.cli, or "
            "sluice.runtime.client.current.worker_context for a worker started by hand)"
        ) from None
