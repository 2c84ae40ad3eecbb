"""Inline mode hands references over as values (Secrets, the ConfigMap keys of TLS) and
restarts a bridge that gave up as ``spec.autoRestart`` says; a change of the stream names
alone is applied to the running bridge."""

import asyncio
from typing import Any

import kopf
import pytest

from ws2kafka.bridge.config import AutoRestartSpec, parse_spec
from ws2kafka.bridge.service import Bridge
from ws2kafka.bridge.stats import BridgeStats, ConnectionState
from ws2kafka.devstack.harness import RecordingSink
from ws2kafka.operator import kube
from ws2kafka.operator.autorestart import AutoRestarts
from ws2kafka.operator.inline import (
    Watched,
    _after_giving_up,
    apply_live,
    resolve_secrets,
    spec_fingerprint,
)


def test_secret_and_config_map_references_become_values() -> None:
    spec: dict[str, Any] = {
        "url": "wss://feed.example/ws",
        "kafka": {"bootstrapServers": "k:9092", "topic": "t"},
        "auth": {"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
        "tls": {
            "ca": {"configMapKeyRef": {"name": "trust", "key": "ca.crt"}},
            "clientCert": {"secretKeyRef": {"name": "mtls", "key": "tls.crt"}},
            "clientKey": {"secretKeyRef": {"name": "mtls", "key": "tls.key"}},
        },
    }

    def secret(namespace: str, name: str, key: str) -> str:
        return f"secret {namespace}/{name}/{key}"

    def config_map(namespace: str, name: str, key: str) -> str:
        return f"config map {namespace}/{name}/{key}"

    resolved = resolve_secrets(spec, "ns", secret, config_map)
    assert resolved["tls"] == {
        "ca": {"value": "config map ns/trust/ca.crt"},
        "clientCert": {"value": "secret ns/mtls/tls.crt"},
        "clientKey": {"value": "secret ns/mtls/tls.key"},
    }
    assert resolved["auth"]["bearerToken"] == {"value": "secret ns/feed/token"}
    parsed = parse_spec(resolved)
    assert parsed.tls.ca is not None
    assert parsed.tls.ca.text("ca") == "config map ns/trust/ca.crt"
    assert spec["tls"]["ca"] == {"configMapKeyRef": {"name": "trust", "key": "ca.crt"}}


class Stop:
    """kopf's daemon stop flag, never set: the waits end by their limits."""

    def is_set(self) -> bool:
        return False

    async def wait(self, timeout: float) -> None:
        await asyncio.sleep(0)


def given_up(
    monkeypatch: pytest.MonkeyPatch, annotations: dict[str, str] | None = None
) -> tuple[Watched, list[dict[str, Any]], list[tuple[str, str, str]]]:
    """A daemon's view of a source whose bridge gave up; what it patches and posts."""
    patches: list[dict[str, Any]] = []
    events: list[tuple[str, str, str]] = []

    def patch(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        patches.append(status)
        return {}

    monkeypatch.setattr(kube, "patch_status", patch)
    monkeypatch.setattr(
        kopf, "event", lambda body, type, reason, message: events.append((type, reason, message))
    )
    spec = {"url": "ws://x/feed", "kafka": {"bootstrapServers": "k:9092", "topic": "t"}}
    metadata = {"namespace": "ns", "name": "s", "annotations": annotations or {}}
    body = {"metadata": metadata, "spec": spec}
    return Watched(body, spec, spec_fingerprint(spec), Stop()), patches, events


def stats_that_gave_up() -> BridgeStats:
    stats = BridgeStats()
    stats.set_state(ConnectionState.GAVE_UP, "gave up after 1 failed attempts: refused")
    return stats


async def test_a_bridge_that_gave_up_is_restarted_after_the_delay_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watched, patches, events = given_up(monkeypatch)
    restarts = AutoRestarts(AutoRestartSpec(enabled=True, initial_delay_seconds=0.01), count=2)
    assert await _after_giving_up(watched, restarts, stats_that_gave_up()) is True
    assert restarts.count == 3
    due, done = (patch["autoRestart"] for patch in patches)
    assert (due["count"], done["count"]) == (2, 3)
    assert due["nextRestartTime"]
    assert done["lastRestartTime"]
    assert done["nextRestartTime"] is None
    ((kind, reason, message),) = events
    assert (kind, reason) == ("Normal", "AutoRestarted")
    assert message.startswith("automatic restart 3 after a delay of 0.04 s")
    assert "refused" in message


async def test_a_restart_request_during_the_delay_ends_the_wait_unrestarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watched, patches, events = given_up(monkeypatch, {"ws2kafka.dev/restart": "now"})
    restarts = AutoRestarts(AutoRestartSpec(enabled=True), count=0)
    assert await _after_giving_up(watched, restarts, stats_that_gave_up()) is False
    assert restarts.count == 0
    assert [patch["autoRestart"]["count"] for patch in patches] == [0]
    assert not events


async def test_at_max_restarts_a_warning_and_no_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    # a restart request ends the wait for a change that follows the warning
    watched, patches, events = given_up(monkeypatch, {"ws2kafka.dev/restart": "now"})
    restarts = AutoRestarts(AutoRestartSpec(enabled=True, max_restarts=2), count=2)
    assert await _after_giving_up(watched, restarts, stats_that_gave_up()) is False
    assert patches == [{"autoRestart": {"count": 2, "nextRestartTime": None}}]
    ((kind, reason, message),) = events
    assert (kind, reason) == ("Warning", "AutoRestartLimitReached")
    assert "maxRestarts (2) reached" in message


def streams_source(names: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "url": "wss://feed.example/ws",
        "kafka": {"bootstrapServers": "127.0.0.1:1", "topic": "t"},
        "auth": {"bearerToken": {"secretKeyRef": {"name": "feed", "key": "token"}}},
        "streams": {"names": names, "maxPerConnection": 2, "urlTemplate": "wss://f/{streams}"},
        **fields,
    }


async def test_a_change_of_the_stream_names_only_is_applied_to_the_running_bridge() -> None:
    def secret(namespace: str, name: str, key: str) -> str:
        return "token"

    running = parse_spec(resolve_secrets(streams_source(["a", "b", "c"]), "ns", secret))
    bridge = Bridge(running, name="ns/live", sink_factory=RecordingSink().attach)
    first = bridge.links[0]
    assert await apply_live(bridge, streams_source(["a", "b", "d"]), "ns", secret)
    assert [link.share.streams for link in bridge.links] == [("a", "b"), ("d",)]
    assert bridge.links[0] is first, "connection 0 is kept"
    moved = streams_source(["a"], url="wss://elsewhere.example/ws")
    assert not await apply_live(bridge, moved, "ns", secret)
    assert not await apply_live(bridge, streams_source([]), "ns", secret), "invalid: restart"
    assert [link.share.streams for link in bridge.links] == [("a", "b"), ("d",)]
