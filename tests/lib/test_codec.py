import msgspec
import pytest

from hivewire import codec
from hivewire.errors import HiveError
from hivewire.wire.broker import Message, SendRequest


def test_message_uses_from_on_the_wire() -> None:
    m = Message(id="1", sender="alice", to="bob", body="hi", sent_at=1.5)
    raw = codec.encode(m)
    assert b'"from":"alice"' in raw
    assert codec.decode(raw, Message) == m


def test_empty_payload_means_empty_object() -> None:
    from hivewire.wire.broker import RecvRequest

    assert codec.decode(b"", RecvRequest) == RecvRequest()


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{", b"[]", b'{"to": 3, "body": "x"}', b'{"body":"x"}', b"null"])
def test_garbage_is_a_bad_request(raw: bytes) -> None:
    with pytest.raises(HiveError) as err:
        codec.decode(raw, SendRequest)
    assert err.value.code == "bad_request"


def test_error_round_trip() -> None:
    data, headers = codec.error_payload(HiveError("forbidden", "no"))
    assert headers[codec.ERROR_CODE_HEADER] == "403"
    assert msgspec.json.decode(data) == {"error": {"code": "forbidden", "message": "no"}}
    with pytest.raises(HiveError) as err:
        codec.parse_reply(data, headers, SendRequest)
    assert (err.value.code, err.value.message) == ("forbidden", "no")
    # without headers too (e.g. relayed through a tool that drops them)
    with pytest.raises(HiveError):
        codec.parse_reply(data, {}, SendRequest)
