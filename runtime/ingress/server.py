"""The HTTP server under the ingress's app: aiohttp's, except that a request its
parser refuses is answered by Sluice, as a problem that quotes none of its bytes.

aiohttp answers a request it cannot parse (a line over its limits, a header it
cannot read, a broken chunked body, bytes that are no HTTP) with a plain-text 400
whose body is the parser's message, and that message quotes the refused bytes:
`Got more than 8190 bytes when reading: b'Bearer sk_...'` sends a key back, into
whatever proxy logs error bodies. No middleware sees such a request (there is no
request to route); the answer is made by `RequestHandler.handle_error`, one per
connection, and aiohttp has no option naming that class: the connections are
`_Connection`s, made by `_Server`, which `IngressRunner` builds in place of
aiohttp's `Server`.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from sluice.runtime.ingress.problems import Problem

log = logging.getLogger(__name__)


class _Connection(RequestHandler):
    """aiohttp's handler of one connection, its answer to a parser error Sluice's."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            # A failure of ours (a handler's exception, a timeout): aiohttp's 500.
            return super().handle_error(request, status, exc, message)
        problem = self.refusal(exc)
        # Bytes that are no HTTP (a scanner, TLS to this plain port) are common
        # on a public address: not worth a line at INFO each.
        level = logging.DEBUG if isinstance(exc, BadStatusLine) else logging.INFO
        # Its kind only: the parser's message quotes the bytes.
        log.log(level, "refused a malformed request from %s (%d, %s)", request.remote,
                problem.status, type(exc).__name__)  # fmt: skip
        answer = problem.response()
        answer.force_close()  # the parser cannot find the next request after an error
        return answer

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's log of what it did not expect, less a body its parser refused.

        Once a request is answered, aiohttp reads what is left of its body; a
        body the parser refused (a broken chunk, a compression that does not
        decode) raises there, and aiohttp logs it as unhandled, with a traceback
        and the parser's message. The route answered it 400 already
        (runtime.ingress.app.problem_for): a line at DEBUG, its kind only.
        """
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
            log.debug("stopped reading a malformed body (%s)", type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def refusal(self, exc: HttpProcessingError) -> Problem:
        """What the client is told: the kind of error and the limits, none of its bytes."""
        if isinstance(exc, LineTooLong):
            return Problem(431, "Request header fields too large",
                           f"the request line may be up to {self.max_line_size} bytes, "
                           f"a header field up to {self.max_field_size}")  # fmt: skip
        if isinstance(exc, BadStatusLine):
            return Problem(400, "Malformed request",
                           "the first line is no HTTP/1.1 request line "
                           "(TLS sent to a plain HTTP port?)")  # fmt: skip
        return Problem(400, "Malformed request",
                       "the request is not valid HTTP/1.1: a target or header that cannot be read, "
                       f"more than {self.max_headers} header fields, or a body that does "
                       "not match its Transfer-Encoding")  # fmt: skip


class _Server(web.Server):
    """aiohttp's server, its connections `_Connection`s."""

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class IngressRunner(web.AppRunner):
    """aiohttp's runner of an app, serving it with `_Server`: the ingress's runner,
    for `sluice ingress` and the tests alike."""

    async def _make_server(self) -> web.Server:
        # aiohttp's starts the app and makes its server (request handler and
        # factory, the runner's options); the same server, but for its connections.
        made = await super()._make_server()
        return _Server(made.request_handler, request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation, loop=made._loop,
                       **made._kwargs)  # fmt: skip
