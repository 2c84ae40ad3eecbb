"""Frames that are not data, without I/O: which rule a frame matches, and what to answer.

Exchanges interleave control frames with their data: application pings that must be answered
(HTX's ``{"ping": ...}``), heartbeats, subscription acknowledgements, pongs to the bridge's
own heartbeat, errors. ``spec.messages.rules`` says how to tell them apart; this module
compiles those rules once per bridge and tests a frame against them in order. It never
parses a frame itself: the caller hands it the frame's JSON document, parsed at most once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .config import (
    TEMPLATE_PLACEHOLDER,
    FrameCondition,
    MessageKind,
    MessageRoute,
    MessageRule,
)
from .framing import MISSING, compile_pointer, lookup


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1`` (as it is in Python), ``1`` is ``1.0``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return bool(left == right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and bool(left == right)


class Condition:
    """One compiled :class:`~.config.FrameCondition`."""

    def __init__(self, spec: FrameCondition) -> None:
        self._text = spec.text.encode() if spec.text is not None else None
        self._get = compile_pointer(spec.pointer) if spec.pointer is not None else None
        self._values: tuple[Any, ...] | None = None
        if spec.equals is not None:
            self._values = (spec.equals,)
        elif spec.one_of is not None:
            self._values = tuple(spec.one_of)
        elif spec.is_null:
            self._values = (None,)

    @property
    def needs_json(self) -> bool:
        return self._get is not None

    def holds(self, payload: bytes, document: Any) -> bool:
        if self._get is None:
            return payload == self._text
        value = self._get(document)
        if value is MISSING:
            return False
        values = self._values
        if values is None:
            return True
        return any(json_equal(value, wanted) for wanted in values)


class Conditions:
    """Conditions that must all hold (a rule's ``match``, a subscription's success)."""

    def __init__(self, specs: Sequence[FrameCondition]) -> None:
        self._conditions = tuple(Condition(spec) for spec in specs)
        self.needs_json = any(condition.needs_json for condition in self._conditions)

    def __bool__(self) -> bool:
        return bool(self._conditions)

    def hold(self, payload: bytes, document: Any) -> bool:
        """All of them hold (an empty list holds nothing: no rule matches every frame)."""
        for condition in self._conditions:
            if not condition.holds(payload, document):
                return False
        return bool(self._conditions)


class Template:
    """A text with ``{/pointer}`` placeholders, each replaced by that field's JSON value."""

    def __init__(self, text: str) -> None:
        parts = re.split(TEMPLATE_PLACEHOLDER, text)
        self._literals = parts[0::2]
        self._pointers = parts[1::2]

    @property
    def needs_json(self) -> bool:
        return bool(self._pointers)

    @property
    def pointers(self) -> list[str]:
        return self._pointers

    def render(self, document: Any, encode: Callable[[Any], str] | None = None) -> str:
        """The text with each placeholder's value as JSON (``null`` when it has none), or
        as ``encode`` writes it."""
        out = [self._literals[0]]
        for pointer, literal in zip(self._pointers, self._literals[1:], strict=True):
            value = lookup(document, pointer)
            if encode is not None:
                out.append(encode(value))
            elif value is MISSING:
                out.append("null")
            else:
                out.append(json.dumps(value, separators=(",", ":")))
            out.append(literal)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Matched:
    """The rule a frame matched, and what follows from it."""

    name: str
    kind: MessageKind
    route: MessageRoute
    reply: str | None
    """The rendered reply to send back, if the rule has one."""
    expires_token: str | None = None
    """The token (``spec.tokens``) the frame says expired."""


class _Rule:
    def __init__(self, spec: MessageRule) -> None:
        self.name = spec.name
        self.kind = spec.kind
        self.route = spec.destination
        self.conditions = Conditions(spec.match)
        self.reply = Template(spec.reply) if spec.reply is not None else None
        self.expires_token = spec.expires_token


class MessageRules:
    """``spec.messages.rules``, compiled; :meth:`match` is called for every frame."""

    def __init__(self, rules: Sequence[MessageRule]) -> None:
        self._rules = tuple(_Rule(spec) for spec in rules)
        self.needs_json = any(
            rule.conditions.needs_json or (rule.reply is not None and rule.reply.needs_json)
            for rule in self._rules
        )
        self.replies = any(rule.reply is not None for rule in self._rules)
        """Some rule answers the frames it matches (each session then runs a sender)."""

    def __bool__(self) -> bool:
        return bool(self._rules)

    def match(self, payload: bytes, document: Any) -> Matched | None:
        """The first rule whose conditions hold, or None (a data frame)."""
        for rule in self._rules:
            if rule.conditions.hold(payload, document):
                reply = rule.reply.render(document) if rule.reply is not None else None
                return Matched(rule.name, rule.kind, rule.route, reply, rule.expires_token)
        return None
