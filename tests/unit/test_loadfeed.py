"""The benchmarks' load feed writes valid frames whose numbers and send times read back."""

import json
import random

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ws2kafka.devstack.loadfeed import (
    frame_batch,
    number_batch,
    sent_at_ms,
    sequence_of,
)


@pytest.mark.parametrize("size", [200, 1024, 16384, 70_000])
def test_numbered_batch_is_whole_text_frames_of_json(size: int) -> None:
    batch, frame_length = frame_batch(size, 3, random.Random(size))
    number_batch(batch, frame_length, size, 41, 2, 1_700_000_000_123_456_789)
    reader = StreamReader()
    reader.feed_data(bytes(batch))
    reader.feed_eof()
    frames = []
    for _ in range(3):
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
    assert [(f.opcode, f.fin, len(f.data)) for f in frames] == [(Opcode.TEXT, True, size)] * 3
    assert len(batch) == 3 * frame_length
    assert [sequence_of(f.data) for f in frames] == [41, 42, 0]  # only `count` are numbered
    assert sent_at_ms(frames[0].data) == 1_700_000_000_123.456_789
    assert json.loads(frames[1].data)["seq"] == "000000000042"
