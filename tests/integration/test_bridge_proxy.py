"""A feed behind a proxy taken from the environment (HTTP CONNECT, SOCKS5), with both WebSocket
clients; a token request takes the proxy its WebSocket does.

The bridge runs in clusters where ``https_proxy``/``no_proxy`` are set for every pod: each client
must go through the proxy for outside feeds and straight to the hosts ``no_proxy`` lists.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Self

import pytest

from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.harness import bridge_spec, new_topic, run_until, seqs
from ws2kafka.devstack.kafka import KafkaBroker
from ws2kafka.devstack.private_feeds import KucoinBulletFeed

pytestmark = pytest.mark.kafka


class LocalProxy:
    """A proxy on 127.0.0.1 that records the targets it tunnels to; the subclasses speak
    the protocols (``_tunnel``)."""

    scheme = ""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self.scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ConnectProxy(LocalProxy):
    """A minimal HTTP ``CONNECT`` proxy."""

    scheme = "http"

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        assert method == "CONNECT"
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self.targets.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


class Socks5Proxy(LocalProxy):
    """A minimal SOCKS5 proxy (RFC 1928: no authentication, ``CONNECT``)."""

    scheme = "socks5"

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, methods = await reader.readexactly(2)
        assert version == 5
        assert 0 in await reader.readexactly(methods)  # "no authentication" offered
        writer.write(b"\x05\x00")
        version, command, _, kind = await reader.readexactly(4)
        assert (version, command) == (5, 1)  # CONNECT
        if kind == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        else:
            assert kind == 3  # a host name (socks5h://)
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        self.targets.append(f"{host}:{port}")
        writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the other side aborted: so does this one
    finally:
        writer.close()


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http", "https", "ws", "wss", "all", "socks", "no"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)


@pytest.mark.parametrize("client", ["picows", "websockets"])
async def test_the_environment_proxy_is_used_unless_no_proxy_lists_the_host(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    clear_proxies(monkeypatch)
    async with ConnectProxy() as proxy, SequenceFeed(count=10) as feed:
        # https_proxy, not http_proxy: websockets prefers it for ws:// too, and so must picows
        monkeypatch.setenv("https_proxy", proxy.url)
        through = new_topic(kafka)
        spec = bridge_spec(kafka, feed.url, through, connection={"client": client})
        bridge = Bridge(spec, name="proxied")
        await run_until(bridge, lambda: bridge.stats.delivered >= 10, "10 records via the proxy")
        host_port = feed.url.split("/")[2]
        assert proxy.targets == [host_port]

        monkeypatch.setenv("no_proxy", "127.0.0.1")
        direct = new_topic(kafka)
        spec = bridge_spec(kafka, feed.url, direct, connection={"client": client})
        bridge = Bridge(spec, name="direct")
        await run_until(bridge, lambda: bridge.stats.delivered >= 10, "10 records, no proxy")
        assert proxy.targets == [host_port]  # no second tunnel
    # the feed numbers its frames across connections
    assert seqs(kafka, through, 10) == list(range(1, 11))
    assert seqs(kafka, direct, 10) == list(range(11, 21))


@pytest.mark.parametrize("client", ["picows", "websockets"])
async def test_a_socks_proxy_carries_the_token_request_and_the_websocket(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """``socks_proxy`` in the environment: the token fetch (aiohttp through aiohttp-socks)
    and the WebSocket it opens (either client) both go through it."""
    clear_proxies(monkeypatch)
    async with (
        Socks5Proxy() as proxy,
        KucoinBulletFeed(
            lifetime=60,
            ping_interval_ms=300,
            ping_timeout_ms=1000,
            frames_per_connection=10,
            disconnects=0,
            frames=10,
        ) as feed,
    ):
        monkeypatch.setenv("socks_proxy", proxy.url)
        topic = new_topic(kafka)
        spec = bridge_spec(
            kafka,
            "{bullet.endpoint}?token={bullet.token}",
            topic,
            connection={
                "client": client,
                "heartbeat": {"message": '{"id":"p","type":"ping"}', "intervalSeconds": 5},
            },
            tokens=[
                {
                    "name": "bullet",
                    "request": {"url": f"{feed.base}{feed.bullet_path}"},
                    "token": "/data/token",
                    "endpoint": "/data/instanceServers/0/endpoint",
                    "pingInterval": "/data/instanceServers/0/pingInterval",
                }
            ],
            subscribe=[f'{{"id":1,"type":"subscribe","topic":"{feed.topic}"}}'],
        )
        bridge = Bridge(spec, name="socks")

        def streamed() -> bool:
            return len(feed.data_frames) == feed.frames and bridge.stats.delivered >= feed.frames

        await run_until(bridge, streamed, "every trade through the proxy")
    host_port = feed.base.removeprefix("http://")
    assert proxy.targets == [host_port, host_port]  # the fetch, then the WebSocket
    assert [conn.missed for conn in feed.connections] == [None]
