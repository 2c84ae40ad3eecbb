"""A feed behind an HTTP proxy taken from the environment, with both WebSocket clients.

The bridge runs in clusters where ``https_proxy``/``no_proxy`` are set for every pod: each client
must go through the proxy for outside feeds and straight to the hosts ``no_proxy`` lists.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import pytest

from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.feeds import SequenceFeed
from ws2kafka.devstack.harness import bridge_spec, new_topic, run_until, seqs
from ws2kafka.devstack.kafka import KafkaBroker

pytestmark = pytest.mark.kafka


class ConnectProxy:
    """A minimal HTTP ``CONNECT`` proxy on 127.0.0.1 that records the targets it tunnels to."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        assert method == "CONNECT"
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self.targets.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
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


@pytest.mark.parametrize("client", ["picows", "websockets"])
async def test_the_environment_proxy_is_used_unless_no_proxy_lists_the_host(
    kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    for name in ("http", "https", "ws", "wss", "all", "socks", "no"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
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
