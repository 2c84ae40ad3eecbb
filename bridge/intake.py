"""What becomes of one frame, without I/O: data records, or a control frame and its answer.

The read loop hands every frame that needs more than the plain path (inflating, JSON fields,
rules, a subscription to confirm, continuity checks, routing, splitting) to
:meth:`Intake.take`. The frame is inflated and parsed as JSON once, whatever is configured,
and then goes through, in order:

1. the subscription's answer (``spec.subscription``): a success or failure frame is control;
2. the message rules (``spec.messages.rules``): the first match decides its kind, its route
   and its reply;
3. dedupe and the sequence check (``rotation.dedupe``, ``spec.sequence``), on the whole frame;
4. splitting (``kafka.split``): one record per element of an array;
5. the record itself: key, timestamp and routed topic (``kafka.routing``).

Everything is counted in :class:`~.stats.BridgeStats` by its one writer, the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .config import KafkaSinkSpec, MessageKind, MessageRoute, WebSocketSourceSpec
from .framing import MISSING, Record, RecordBuilder, lookup, parse_json
from .messages import MessageRules
from .routing import TopicRouter
from .sequence import FrameChecks
from .stats import BridgeStats
from .subscription import Answer, SubscriptionWatch

#: The rule name under which the subscription's answers are counted.
SUBSCRIPTION_RULE = "subscription"


@dataclass(frozen=True, slots=True)
class Control:
    """A frame a rule or the subscription claimed."""

    rule: str
    kind: MessageKind
    route: MessageRoute
    reply: str | None
    """Text to send back on the connection."""
    record: Record | None
    """For the control topic (route ``control``)."""
    answer: Answer | None
    """The subscription's answer, when the frame is one."""
    expires_token: str | None = None
    """The token (``spec.tokens``) the frame says expired."""


@dataclass(frozen=True, slots=True)
class Taken:
    """The records of a frame (none: a duplicate, an empty split, a control frame) and the
    control side of it, if a rule or the subscription matched."""

    records: list[Record]
    control: Control | None = None


class Intake:
    """One connection's frames; the rules, router and checks are the bridge's, shared."""

    def __init__(
        self,
        spec: WebSocketSourceSpec,
        builder: RecordBuilder,
        stats: BridgeStats,
        *,
        rules: MessageRules,
        router: TopicRouter | None,
        checks: FrameChecks | None,
        watch: SubscriptionWatch | None,
    ) -> None:
        self._builder = builder
        self._stats = stats
        self._rules = rules
        self._router = router
        self._checks = checks
        self._watch = watch
        self._split = spec.kafka.split.pointer if spec.kafka.split is not None else None
        self.needs_json = bool(
            builder.needs_json
            or rules.needs_json
            or router is not None
            or checks is not None
            or self._split is not None
            or (watch is not None and watch.needs_json)
        )

    @staticmethod
    def wanted(spec: WebSocketSourceSpec) -> bool:
        """Whether frames need more than :meth:`RecordBuilder.build` (the plain path)."""
        kafka: KafkaSinkSpec = spec.kafka
        return bool(
            spec.messages.rules
            or spec.subscription is not None
            or spec.sequence is not None
            or spec.rotation.dedupe is not None
            or kafka.routing is not None
            or kafka.split is not None
        )

    def take(self, payload: bytes, binary: bool, received_us: int, sequence: int) -> Taken:
        """Raises only for a frame that cannot be read at all (the caller counts it)."""
        payload = self._builder.decode(payload, binary)
        document = parse_json(payload) if self.needs_json else None
        watch = self._watch
        if watch is not None:
            answer = watch.observe(payload, document)
            if answer is not None:
                return self._answered(answer)
        control = None
        if self._rules:
            matched = self._rules.match(payload, document)
            if matched is not None:
                self._stats.count_rule(matched.name, matched.kind)
                record = None
                if matched.route is MessageRoute.CONTROL:
                    record = self._builder.control_record(
                        payload, received_us, matched.name, matched.kind.value
                    )
                control = Control(
                    matched.name,
                    matched.kind,
                    matched.route,
                    matched.reply,
                    record,
                    None,
                    matched.expires_token,
                )
                if matched.route is not MessageRoute.DATA:
                    self._stats.control_frames += 1
                    return Taken([], control)
        if self._checks is not None and not self._checks.admit(document):
            return Taken([], control)
        return Taken(self._records(payload, document, binary, received_us, sequence), control)

    def _answered(self, answer: Answer) -> Taken:
        """A subscription's answer is control: counted, never produced."""
        self._stats.count_rule(SUBSCRIPTION_RULE, answer.kind)
        self._stats.control_frames += 1
        return Taken(
            [], Control(SUBSCRIPTION_RULE, answer.kind, MessageRoute.DROP, None, None, answer)
        )

    def _records(
        self, payload: bytes, document: Any, binary: bool, received_us: int, sequence: int
    ) -> list[Record]:
        builder = self._builder
        router = self._router
        elements = lookup(document, self._split) if self._split is not None else MISSING
        if not isinstance(elements, list):
            topic = router.route(document) if router is not None else None
            return [builder.record(payload, document, binary, received_us, sequence, topic)]
        if not elements:
            self._stats.split_empty += 1
            return []
        self._stats.split_records += len(elements) - 1
        records = []
        for index, element in enumerate(elements):
            topic = router.route(element) if router is not None else None
            records.append(
                builder.record(
                    orjson.dumps(element),
                    element,
                    binary,
                    received_us,
                    sequence,
                    topic,
                    index,
                )
            )
        return records
