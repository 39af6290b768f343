"""The deployment's functions (functions:FUNCTIONS), which hold the secrets a log
could show (webhook endpoints' and the SMS callback's), and `chaos.say` for the
battery's secrets control: it logs what its job says at DEBUG, as a careless
handler would log a key it was given."""

from __future__ import annotations

import logging

import msgspec

from functions import FUNCTIONS as DEPLOYMENT
from sluice.runtime import Job, function

log = logging.getLogger(__name__)


class Say(msgspec.Struct, frozen=True):
    text: str


@function("chaos.say", input=Say)
async def say(job: Job[Say]) -> None:
    log.debug("told to say %s", job.data.text)


FUNCTIONS = (*DEPLOYMENT, say)
