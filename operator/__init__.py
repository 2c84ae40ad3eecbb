"""The ws2kafka operator (importable as ``ws2kafka.operator``; see pyproject.toml).

It turns WebSocketSource resources into running bridges. The controller lands with the
operator issue; the bridge config model it will share lives in ``ws2kafka.bridge.config``.
"""
