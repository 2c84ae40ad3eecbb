"""Whether the server accepted the subscription, without I/O.

A feed that refuses a subscription usually says so in a frame (``{"type":"error",...}``) and
then sends nothing, or nothing but heartbeats: the connection is up and the source looks
healthy while no data arrives. ``spec.subscription`` describes what the answer looks like;
:class:`SubscriptionWatch` follows one connection's answer, frame by frame and against the
clock, and names the outcome the way status and metrics show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .config import MessageKind, SubscriptionSpec
from .framing import MISSING, lookup
from .messages import Conditions

#: The longest server message kept for status and logs.
MAX_MESSAGE_CHARS = 256


class SubscriptionState(StrEnum):
    """The reason of the ``Subscribed`` condition."""

    PENDING = "Pending"
    SUBSCRIBED = "Subscribed"
    REJECTED = "SubscriptionRejected"
    TIMEOUT = "SubscriptionTimeout"


@dataclass(frozen=True, slots=True)
class Answer:
    """A frame that answered the subscription: which way, and in the server's words."""

    state: SubscriptionState
    message: str
    kind: MessageKind


class SubscriptionWatch:
    """One connection's subscription: pending from :meth:`sent` until a success or a
    failure frame arrives or ``timeoutSeconds`` pass. A failure frame later on (a feed that
    drops one of several subscriptions) still counts as a rejection."""

    def __init__(self, spec: SubscriptionSpec) -> None:
        self._spec = spec
        self._success = Conditions(spec.success)
        self._failure = Conditions(spec.failure)
        self.state = SubscriptionState.PENDING
        self.message = ""
        self._deadline: float | None = None

    @property
    def needs_json(self) -> bool:
        return self._success.needs_json or self._failure.needs_json

    def sent(self, now: float) -> None:
        """The last subscribe message went out at ``now`` (monotonic seconds)."""
        self._deadline = now + self._spec.timeout_seconds

    def observe(self, payload: bytes, document: Any) -> Answer | None:
        """The answer this frame is, if it is one (it is then a control frame, not data)."""
        if self._failure.hold(payload, document):
            self.state = SubscriptionState.REJECTED
            self.message = self._server_message(payload, document)
            return Answer(self.state, self.message, MessageKind.ERROR)
        if self._success.hold(payload, document):
            if self.state is SubscriptionState.PENDING:
                self.state = SubscriptionState.SUBSCRIBED
                self.message = "the server acknowledged the subscription"
            return Answer(SubscriptionState.SUBSCRIBED, self.message, MessageKind.ACKNOWLEDGEMENT)
        return None

    def expired(self, now: float) -> bool:
        """Still pending after the timeout: the state becomes ``SubscriptionTimeout``."""
        if self.state is not SubscriptionState.PENDING or self._deadline is None:
            return False
        if now < self._deadline:
            return False
        self.state = SubscriptionState.TIMEOUT
        self.message = (
            f"no acknowledgement within {self._spec.timeout_seconds:g} s of the subscribe messages"
        )
        return True

    def seconds_left(self, now: float) -> float | None:
        """Until the timeout, while pending and sent."""
        if self.state is not SubscriptionState.PENDING or self._deadline is None:
            return None
        return max(0.0, self._deadline - now)

    def _server_message(self, payload: bytes, document: Any) -> str:
        return server_message(payload, document, self._spec.message_pointer)


def server_message(payload: bytes, document: Any, pointer: str | None) -> str:
    """The server's words in an answer: the field at ``pointer``, else the whole frame."""
    value = lookup(document, pointer) if pointer is not None else MISSING
    if value is MISSING:
        text = payload.decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"))
    return text[:MAX_MESSAGE_CHARS]
