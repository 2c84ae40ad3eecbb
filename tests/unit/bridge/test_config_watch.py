"""The bridge follows its config file as a ConfigMap volume updates it (new files in a new
directory, a symlink swapped): a change of the stream names is applied live, others wait."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
import yaml

from ws2kafka.bridge.__main__ import load_config
from ws2kafka.bridge.config_watch import follow_config
from ws2kafka.bridge.service import Bridge
from ws2kafka.devstack.harness import RecordingSink
from ws2kafka.devstack.waiting import until


def config(names: list[str], url: str = "ws://127.0.0.1:1/ws") -> dict[str, object]:
    return {
        "url": url,
        "kafka": {"bootstrapServers": "127.0.0.1:1", "topic": "t"},
        "streams": {"names": names, "maxPerConnection": 2, "urlTemplate": "ws://f/{streams}"},
    }


class ConfigMapVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        self.path = root / "config.yaml"

    def write(self, document: dict[str, object]) -> None:
        self.version += 1
        version = self.root / f"..2026_12_02_{self.version}"
        version.mkdir()
        (version / "config.yaml").write_text(yaml.safe_dump(document))
        link = self.root / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.root / "..data")  # the atomic swap
        if not self.path.is_symlink():
            self.path.symlink_to("..data/config.yaml")


async def test_a_swapped_config_file_re_shares_the_running_bridge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = ConfigMapVolume(tmp_path)
    volume.write(config(["a", "b", "c"]))
    spec, _ = load_config(volume.path, "watched")
    bridge = Bridge(spec, name="watched", sink_factory=RecordingSink().attach)
    following = asyncio.create_task(
        follow_config(bridge, volume.path, lambda: load_config(volume.path, "watched")[0], 0.01)
    )
    try:
        volume.write(config(["a", "b", "d", "e"]))
        await until(
            lambda: [link.share.streams for link in bridge.links] == [("a", "b"), ("d", "e")],
            5,
            "the new names",
        )
        volume.write(config(["a"], url="ws://127.0.0.1:2/ws"))
        await until(lambda: "beyond streams.names" in caplog.text, 5, "the warning")
        volume.write({"url": "http://not-a-websocket"})
        await until(lambda: "is not used" in caplog.text, 5, "the invalid file")
    finally:
        following.cancel()
    assert bridge.spec.url == "ws://127.0.0.1:1/ws", "the other change waits for a restart"
    assert len(bridge.links) == 2
    assert any(r.levelno == logging.WARNING for r in caplog.records)
