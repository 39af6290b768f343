"""RFC 9457 problem details: every error the ingress answers, in one shape.

Handlers raise `Problem`; the middleware (runtime.ingress.app) turns it, and the
runtime's own errors, into `application/problem+json`. Client input never
reaches a 500: what is not a known error is logged and answered 500 with no
detail, as a bug of ours.
"""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

CONTENT_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    # JSONPath of the offending field in the request body ("$.data.to").
    path: str
    message: str


class ProblemBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The RFC 9457 members Sluice uses, plus `errors` for validation."""

    type: str
    title: str
    status: int
    detail: str = ""
    errors: list[FieldError] = []


class Problem(Exception):
    """An error answer; `retry_after_s` adds a Retry-After header (503, 429)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[FieldError] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        slug = self.title.lower().replace(" ", "-")
        body = ProblemBody(f"https://sluice.dev/problems/{slug}", self.title, self.status,
                           self.detail, self.errors)  # fmt: skip
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else None
        return web.Response(
            status=self.status,
            body=msgspec.json.encode(body),
            content_type=CONTENT_TYPE,
            headers=headers,
        )


def invalid(path: str, message: str, detail: str = "the request body is not valid") -> Problem:
    return Problem(422, "Invalid request", detail, errors=[FieldError(path, message)])


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", what)


def from_validation(
    error: msgspec.ValidationError | msgspec.DecodeError, prefix: str = "$"
) -> Problem:
    """A msgspec error as a 422 (400 for bytes that are not JSON) with the field path.

    msgspec words its errors "Expected `int`, got `str` - at `$.data.n`".
    """
    text = str(error)
    message, _, at = text.partition(" - at `")
    path = at.rstrip("`") or "$"
    # "Object missing required field `data`": the path names the missing field.
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        path += f".{missing[1]}"
    if prefix != "$":
        path = prefix + path[1:]
    if isinstance(error, msgspec.ValidationError):
        return invalid(path, message)
    return Problem(400, "Malformed body", message, errors=[FieldError(path, message)])
