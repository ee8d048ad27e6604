"""Domain errors and their wire form: google.rpc.Status with ErrorInfo / BadRequest.

Domain code raises these; the chassis interceptor turns them into rich gRPC statuses
(which Envoy renders as JSON). Anything else becomes a bare INTERNAL error: no SQL, no
stack trace, no constraint name ever reaches a caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "hygoshop.io"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field: a path like `listing.variants[0].price` and why."""

    field: str
    description: str


class DomainError(Exception):
    """An expected failure with a stable machine-readable reason (UPPER_SNAKE)."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(
            code=self.grpc_code.value[0], message=self.message, details=self.details()
        )


class InvalidArgument(DomainError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one field violation")
        self.violations = list(violations)
        first = self.violations[0]
        summary = message or f"invalid {first.field}: {first.description}"
        if len(self.violations) > 1 and message is None:
            summary += f" (and {len(self.violations) - 1} more)"
        super().__init__(summary)

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return [*super().details(), packed]


class NotFound(DomainError):
    """Also what another tenant's resource answers: the same bytes as a missing one."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrent change won (etag mismatch); the caller may re-read and retry."""

    grpc_code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class Unauthenticated(DomainError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    """A dependency (object storage, ...) is down or overloaded; the caller may retry."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


def internal_status() -> status_pb2.Status:
    """What an unexpected failure looks like from outside: nothing about its cause."""
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def unavailable_status() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.UNAVAILABLE, message="temporarily unavailable, retry later"
    )


def require(violations: list[FieldViolation]) -> None:
    """Raise InvalidArgument when validation collected any violation."""
    if violations:
        raise InvalidArgument(violations)
