"""Domain errors carry a stable reason and, for bad input, every field violation."""

import grpc
import pytest
from google.rpc import error_details_pb2

from hygoshop_platform.errors import (
    ERROR_DOMAIN,
    FieldViolation,
    InvalidArgument,
    NotFound,
    internal_status,
    require,
)


def test_not_found_packs_error_info_with_reason_and_domain() -> None:
    status = NotFound("listing not found", metadata={"resource": "listing"}).to_status()
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert status.message == "listing not found"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "NOT_FOUND",
        ERROR_DOMAIN,
        {"resource": "listing"},
    )


def test_invalid_argument_lists_every_violation_in_bad_request() -> None:
    err = InvalidArgument(
        [FieldViolation("listing.title", "must not be empty"), FieldViolation("a.b", "bad")]
    )
    status = err.to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "listing.title" in status.message
    assert "1 more" in status.message
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("listing.title", "must not be empty"),
        ("a.b", "bad"),
    ]


def test_invalid_argument_needs_a_violation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        InvalidArgument([])


def test_require_raises_only_when_something_is_wrong() -> None:
    require([])
    with pytest.raises(InvalidArgument):
        require([FieldViolation("x", "y")])


def test_internal_status_says_nothing_about_the_cause() -> None:
    status = internal_status()
    assert status.message == "internal error"
    assert not status.details
