"""Property-based tests (hypothesis): the config model, handshake headers, JSON pointers and
backoff hold their promises for any input, not only for the examples the other tests chose."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from ws2kafka.bridge.backoff import delay_bound, full_jitter
from ws2kafka.bridge.config import RESERVED_PROPERTIES, WebSocketSourceSpec, parse_spec
from ws2kafka.bridge.errors import ConfigError
from ws2kafka.bridge.framing import MISSING, compile_pointer
from ws2kafka.bridge.source import build_headers


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The bridge's reading of ``pointer`` in ``document`` (None: no such path)."""
    value = compile_pointer(pointer)(document)
    return None if value is MISSING else value


PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MINIMAL: dict[str, Any] = {"url": "ws://feed/x", "kafka": {"bootstrapServers": "k:9", "topic": "t"}}

# -- strategies --------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
header_names = st.text(TOKEN_CHARS, min_size=1, max_size=40)
#: Visible ASCII and spaces (HTTP field content), commas, colons and semicolons included.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200).map(
    str.strip
)
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["ws", "wss"]),
    st.from_regex(r"[a-z][a-z0-9.-]{0,30}", fullmatch=True),
    st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
    st.from_regex(r"[a-zA-Z0-9/_.?=&-]{0,40}", fullmatch=True),
)
pointers = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8), max_size=4
).map(lambda tokens: "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens))


def positive(high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=1e-3, max_value=high, allow_nan=False)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid specs in their file/resource form (camelCase), optional blocks present or not."""
    spec: dict[str, Any] = {
        "url": draw(urls),
        "kafka": {
            "bootstrapServers": draw(st.from_regex(r"[a-z0-9.-]{1,20}:[0-9]{1,5}", fullmatch=True)),
            "topic": draw(st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True)),
        },
    }
    if draw(st.booleans()):
        spec["subscribe"] = draw(st.lists(st.text(max_size=100), max_size=5))
    if draw(st.booleans()):
        spec["headers"] = draw(
            st.lists(
                st.fixed_dictionaries({"name": header_names, "value": header_values}), max_size=5
            )
        )
    if draw(st.booleans()):
        spec["auth"] = draw(
            st.one_of(
                st.just({"bearerToken": {"env": "FEED_TOKEN"}}),
                st.just({"basic": {"username": "u", "password": {"file": "/run/secret"}}}),
            )
        )
    if draw(st.booleans()):
        spec["connection"] = {
            "connectTimeoutSeconds": draw(positive(600)),
            "pingIntervalSeconds": draw(st.floats(0, 3600)),
            "pingTimeoutSeconds": draw(positive(3600)),
            "maxFrameBytes": draw(st.integers(1024, 256 * 1_048_576)),
            "staleAfterSeconds": draw(st.floats(0, 86400)),
            "compression": draw(st.booleans()),
            "subprotocols": draw(st.lists(header_names, max_size=3)),
            "inflate": draw(st.sampled_from(["none", "gzip", "zlib"])),
        }
    if draw(st.booleans()):
        initial, cap = sorted([draw(positive(3600)), draw(positive(3600))])
        spec["reconnect"] = {
            "enabled": draw(st.booleans()),
            "initialDelaySeconds": initial,
            "maxDelaySeconds": cap,
            "maxAttempts": draw(st.integers(0, 1_000_000)),
        }
    if draw(st.booleans()):
        spec["kafka"]["key"] = draw(
            st.one_of(
                st.just({"source": "none"}),
                st.builds(lambda v: {"source": "static", "value": v}, st.text(max_size=50)),
                st.builds(lambda p: {"source": "jsonPointer", "pointer": p}, pointers),
            )
        )
        spec["kafka"]["properties"] = draw(
            st.dictionaries(
                st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,3}", fullmatch=True).filter(
                    lambda k: k not in RESERVED_PROPERTIES
                ),
                st.text(max_size=30),
                max_size=5,
            )
        )
    if draw(st.booleans()):
        spec["buffer"] = {
            "maxMessages": draw(st.integers(1, 10_000_000)),
            "maxBytes": draw(st.integers(1024, 16 * 1024 * 1_048_576)),
            "overflow": draw(st.sampled_from(["block", "dropOldest", "dropNewest"])),
        }
    if draw(st.booleans()):
        spec["drainTimeoutSeconds"] = draw(positive(3600))
    return spec


# -- the config model --------------------------------------------------------------------------


def model_keys(value: Any, *, inside_free_dict: bool = False) -> list[str]:
    """Every key of a dumped spec that is a field name (the free-form dicts excluded)."""
    if isinstance(value, list):
        return [key for item in value for key in model_keys(item)]
    if not isinstance(value, dict):
        return []
    keys = []
    for key, item in value.items():
        if not inside_free_dict:
            keys.append(key)
        free = key in ("properties", "secretProperties") and not inside_free_dict
        keys.extend(model_keys(item, inside_free_dict=free))
    return keys


@PROPERTIES
@given(specs())
def test_a_valid_spec_round_trips_through_its_camel_case_dump(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    dumped = spec.model_dump(by_alias=True, mode="json")
    assert parse_spec(dumped) == spec
    # the dump is the file/resource form: camelCase field names only
    assert [key for key in model_keys(dumped) if "_" in key] == []
    # and what was given survives
    assert dumped["url"] == data["url"]
    assert dumped["kafka"]["topic"] == data["kafka"]["topic"]
    assert dumped["subscribe"] == data.get("subscribe", [])


def all_models(
    model: type[BaseModel], seen: set[type[BaseModel]] | None = None
) -> set[type[BaseModel]]:
    seen = seen if seen is not None else set()
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        for inner in _model_types(field.annotation):
            all_models(inner, seen)
    return seen


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [t for arg in getattr(annotation, "__args__", ()) for t in _model_types(arg)]


def test_every_field_of_every_model_has_its_camel_case_alias() -> None:
    models = all_models(WebSocketSourceSpec)
    assert len(models) >= 10
    wrong = {
        f"{model.__name__}.{name}": field.alias
        for model in models
        for name, field in model.model_fields.items()
        if field.alias != to_camel(name)
    }
    assert wrong == {}


#: Numeric fields: (path, lowest valid, highest valid, exclusive lower bound, integer).
NUMBERS = [
    ("connection.connectTimeoutSeconds", 0, 600, True, False),
    ("connection.pingIntervalSeconds", 0, 3600, False, False),
    ("connection.pingTimeoutSeconds", 0, 3600, True, False),
    ("connection.maxFrameBytes", 1024, 256 * 1_048_576, False, True),
    ("connection.staleAfterSeconds", 0, 86400, False, False),
    ("reconnect.initialDelaySeconds", 0, 3600, True, False),
    ("reconnect.maxDelaySeconds", 0, 86400, True, False),
    ("reconnect.maxAttempts", 0, 1_000_000, False, True),
    ("buffer.maxMessages", 1, 10_000_000, False, True),
    ("buffer.maxBytes", 1024, 16 * 1024 * 1_048_576, False, True),
    ("drainTimeoutSeconds", 0, 3600, True, False),
]


@st.composite
def invalid_numbers(draw: st.DrawFn) -> tuple[str, Any]:
    path, low, high, exclusive, integer = draw(st.sampled_from(NUMBERS))
    below = (
        st.floats(max_value=low, allow_nan=False)
        if exclusive
        else st.floats(max_value=low, exclude_max=True, allow_nan=False)
    )
    candidates: list[st.SearchStrategy[Any]] = [
        below,
        st.floats(min_value=high, exclude_min=True, allow_nan=False),
        st.just(math.nan),
        st.sampled_from(["many", "", "1e", None, [], {}]),
    ]
    if integer:
        candidates.append(
            st.floats(low, high).filter(lambda v: not v.is_integer())  # a fraction of a count
        )
    return path, draw(st.one_of(candidates))


def with_value(path: str, value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {**MINIMAL}
    *parents, leaf = path.split(".")
    node = spec
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value
    return spec


@PROPERTIES
@given(invalid_numbers())
def test_an_invalid_number_is_always_rejected_naming_its_field(case: tuple[str, Any]) -> None:
    path, value = case
    with pytest.raises(ConfigError) as caught:
        parse_spec(with_value(path, value))
    assert any(p.startswith(f"spec.{path}: ") for p in caught.value.problems), caught.value.problems


@PROPERTIES
@given(
    st.sampled_from(NUMBERS).flatmap(
        lambda n: st.tuples(
            st.just(n[0]),
            st.integers(n[1] + n[3], n[2])
            if n[4]
            else st.floats(n[1], n[2], exclude_min=n[3], allow_nan=False),
        )
    )
)
def test_a_number_within_its_bounds_is_accepted_as_given(case: tuple[str, float]) -> None:
    path, value = case
    data = with_value(path, value)
    if path == "reconnect.initialDelaySeconds":  # the two stay ordered
        data["reconnect"]["maxDelaySeconds"] = 86400
    if path == "reconnect.maxDelaySeconds":
        data["reconnect"]["initialDelaySeconds"] = min(value, 3600)
    spec = parse_spec(data)
    dumped = spec.model_dump(by_alias=True)
    node: Any = dumped
    for part in path.split("."):
        node = node[part]
    assert node == value


# -- handshake headers -------------------------------------------------------------------------


@PROPERTIES
@given(
    st.lists(st.tuples(header_names, header_values, st.booleans()), max_size=8),
    st.one_of(st.none(), header_values),
)
def test_header_values_with_commas_and_colons_survive_build_headers(
    headers: list[tuple[str, str, bool]], token: str | None
) -> None:
    data: dict[str, Any] = {
        **MINIMAL,
        "headers": [
            {"name": name, "valueFrom": {"value": value}}
            if secret
            else {"name": name, "value": value}
            for name, value, secret in headers
        ],
    }
    if token is not None:
        data["auth"] = {"bearerToken": {"value": token}}
    built = build_headers(parse_spec(data))
    expected = [(name, value) for name, value, _ in headers]
    if token is not None:
        expected.append(("Authorization", f"Bearer {token}"))
    assert built == expected  # pairs in order: never split on a comma, never merged


@PROPERTIES
@given(st.from_regex(r"[^:\x00-\x1f\x7f]{1,30}", fullmatch=True), header_values)
def test_basic_auth_encodes_any_password_losslessly(username: str, password: str) -> None:
    data = {**MINIMAL, "auth": {"basic": {"username": username, "password": {"value": password}}}}
    [(name, value)] = build_headers(parse_spec(data))
    scheme, encoded = value.split(" ", 1)
    assert (name, scheme) == ("Authorization", "Basic")
    assert base64.b64decode(encoded).decode().split(":", 1) == [username, password]


@PROPERTIES
@given(specs())
def test_a_secret_value_never_shows_in_repr_or_dump(data: dict[str, Any]) -> None:
    secret = "s3cr3t-value-0123456789"
    data = {**data, "auth": {"bearerToken": {"value": secret}}}
    spec = parse_spec(data)
    assert secret not in repr(spec)
    assert secret not in str(spec.model_dump(by_alias=True, mode="json"))


# -- JSON pointers -----------------------------------------------------------------------------

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def reference_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901, section 4, written from the text: MISSING where the path does not exist."""
    if pointer == "":
        return document
    assert pointer.startswith("/")
    node = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if token not in node:
                return MISSING
            node = node[token]
        elif isinstance(node, list):
            if not _ARRAY_INDEX.fullmatch(token) or int(token) >= len(node):
                return MISSING
            node = node[int(token)]
        else:
            return MISSING
    return node


#: Keys mix plain names, the escaped characters, array-index look-alikes and empty keys.
keys = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6),
    st.sampled_from(["", "~", "/", "~0", "~1", "a/b", "m~n", "0", "1", "10", "-"]),
)
documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=12), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def documents_and_pointers(draw: st.DrawFn) -> tuple[Any, str]:
    """A document and a pointer: mostly a path that exists (walked from the document), with
    a random last step now and then."""
    document = draw(documents)
    tokens: list[str] = []
    node = document
    while draw(st.booleans()):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            tokens.append(key)
            node = node[key]
        elif isinstance(node, list) and node:
            index = draw(st.integers(0, len(node) - 1))
            tokens.append(str(index))
            node = node[index]
        else:
            break
    if draw(st.booleans()):
        # ASCII decimal look-alikes and out-of-range indexes, but see BUGS in the report:
        # non-ASCII digits and leading zeros are left to the reference test there
        step = st.one_of(keys, st.integers(0, 20).map(str))
        tokens.append(draw(step.filter(lambda t: not re.fullmatch(r"0[0-9]+", t))))
    pointer = "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)
    return document, pointer


@PROPERTIES
@given(documents_and_pointers())
def test_resolve_pointer_agrees_with_the_rfc_6901_reference(case: tuple[Any, str]) -> None:
    document, pointer = case
    expected = reference_pointer(document, pointer)
    got = resolve_pointer(document, pointer)
    assert got == (None if expected is MISSING else expected)


@PROPERTIES
@given(st.text(max_size=10), st.integers())
def test_escaped_tilde_and_slash_address_their_literal_key(key: str, value: int) -> None:
    escaped = key.replace("~", "~0").replace("/", "~1")
    assert resolve_pointer({key: value}, "/" + escaped) == value
    assert resolve_pointer({"outer": {key: value}}, "/outer/" + escaped) == value


def test_escapes_are_decoded_in_the_rfc_order() -> None:
    # "~01" is "~1" (the key), not "/": ~1 is replaced before ~0
    document = {"~1": "tilde-one", "/": "slash", "~": "tilde"}
    assert resolve_pointer(document, "/~01") == "tilde-one"
    assert resolve_pointer(document, "/~1") == "slash"
    assert resolve_pointer(document, "/~0") == "tilde"


# -- backoff -----------------------------------------------------------------------------------

delays = st.floats(min_value=1e-3, max_value=86400, allow_nan=False)


@PROPERTIES
@given(st.integers(-(10**6), 10**12), delays, delays, st.floats(0, 1, exclude_max=True))
def test_backoff_is_bounded_for_any_attempt_number(
    attempt: int, initial: float, cap: float, rand: float
) -> None:
    initial, cap = min(initial, cap), max(initial, cap)
    bound = delay_bound(attempt, initial, cap)
    assert math.isfinite(bound)
    assert min(initial, cap) <= bound <= cap
    if attempt <= 1:
        assert bound == initial
    assert delay_bound(attempt + 1, initial, cap) >= bound  # never shrinks, never overflows
    delay = full_jitter(attempt, initial, cap, rand=lambda: rand)
    assert 0 <= delay <= bound
    assert delay < bound or bound == 0


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.integers(), min_size=1, max_size=12),
    st.one_of(
        st.text(max_size=3),
        st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),
    ),
)
def test_an_array_step_is_an_rfc_6901_index_or_nothing(array: list[int], token: str) -> None:
    escaped = token.replace("~", "~0").replace("/", "~1")
    valid = re.fullmatch(r"0|[1-9][0-9]*", token) is not None and int(token) < len(array)
    assert resolve_pointer(array, "/" + escaped) == (array[int(token)] if valid else None)
