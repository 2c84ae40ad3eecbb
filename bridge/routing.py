"""Which topic a record goes to, when the topic is named by the frame (``trades.{/s}``).

A topic per symbol is what many consumers want, and what a hostile or buggy feed could turn
into a topic per frame. The router bounds it: every routed name must match ``allowed`` and be
a valid Kafka topic name, and at most ``maxTopics`` distinct names are used; anything else
goes to the default topic, counted by reason (a bounded set, fit for metric labels).
"""

from __future__ import annotations

import re
from typing import Any

from .config import MAX_TOPIC_LENGTH, TOPIC_PATTERN, TopicRoutingSpec
from .framing import MISSING, lookup
from .messages import Template
from .stats import BridgeStats, Fallback

_VALID_TOPIC = re.compile(TOPIC_PATTERN)


class TopicRouter:
    """Names the topic of each record; remembers the topics it used (at most ``maxTopics``)."""

    def __init__(self, spec: TopicRoutingSpec, stats: BridgeStats) -> None:
        self._template = Template(spec.template)
        self._allowed = re.compile(spec.allowed)
        self._max = spec.max_topics
        self.topics = stats.routed_topics
        self._fallbacks = stats.routing_fallbacks

    def route(self, document: Any) -> str | None:
        """The topic for this document, or None: the default topic (the reason counted)."""
        for pointer in self._template.pointers:
            value = lookup(document, pointer)
            if value is MISSING or not isinstance(value, str | int) or isinstance(value, bool):
                self._fall_back(Fallback.FIELD_MISSING)
                return None
        topic = self._template.render(document, str)
        if topic in self.topics:
            return topic
        valid = len(topic) <= MAX_TOPIC_LENGTH and _VALID_TOPIC.match(topic)
        if not (valid and self._allowed.search(topic)):
            self._fall_back(Fallback.NOT_ALLOWED)
            return None
        if len(self.topics) >= self._max:
            self._fall_back(Fallback.TOO_MANY_TOPICS)
            return None
        self.topics.add(topic)
        return topic

    def _fall_back(self, reason: Fallback) -> None:
        self._fallbacks[reason] = self._fallbacks.get(reason, 0) + 1
