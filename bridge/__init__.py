"""The bridge: one WebSocket connection streamed into Kafka, losing nothing it received.

The same library runs in a bridge pod (``ws2kafka-bridge``), inside the operator (inline
mode), in tests and in benchmarks. It is the bottom layer: it never imports the operator.
"""

__version__ = "0.1.0"
