# hotplane_client.errors: the google.rpc details of a hotplane error, as dataclasses.
#
# hotplane puts a google.rpc.Status in the grpc-status-details-bin trailer of every error a
# client may act on (docs/api.md, "Error details"). details(err) decodes it; branch on
# ErrorInfo.reason (stable strings, listed in docs/api.md), never on the message.
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import grpc
from google.rpc import error_details_pb2, status_pb2

#: ErrorInfo.domain of every hotplane reason.
DOMAIN = "hotplane.dev"
_TRAILER = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One field at fault in a BadRequest: `field` is the request's field path (`queries[3]`)."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorInfo:
    """Why, as a stable `reason` (GENERATION_BEHIND, ...), with string `metadata`."""

    reason: str
    domain: str
    metadata: Dict[str, str]


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition (type GENERATION, subject min_generation, ...)."""

    type: str
    subject: str
    description: str


@dataclass(frozen=True)
class ResourceInfo:
    """The resource a NOT_FOUND is about (type `pattern`, name its id)."""

    resource_type: str
    resource_name: str
    owner: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """Every detail hotplane sends, decoded; fields are empty or None when not sent."""

    code: grpc.StatusCode
    message: str
    field_violations: List[FieldViolation] = field(default_factory=list)
    #: Seconds to wait before retrying (RetryInfo), when the server offers a retry.
    retry_delay: Optional[float] = None
    error_info: Optional[ErrorInfo] = None
    precondition_failures: List[PreconditionViolation] = field(default_factory=list)
    resource_info: Optional[ResourceInfo] = None

    @property
    def reason(self) -> Optional[str]:
        """ErrorInfo.reason, or None when the error carries no ErrorInfo."""
        return self.error_info.reason if self.error_info else None

    def violation(self, name: str) -> Optional[FieldViolation]:
        """The BadRequest violation naming field `name`, if any."""
        return next((v for v in self.field_violations if v.field == name), None)


def details(err: grpc.RpcError) -> ErrorDetails:
    """Decodes the google.rpc details of `err` (a failed call). Unknown details are skipped."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    out = ErrorDetails(code=code, message=message or "")
    raw = None
    for key, value in (err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else ():
        if key == _TRAILER:
            raw = value
    if raw is None:
        return out
    status = status_pb2.Status.FromString(raw)
    for any_ in status.details:
        _decode_one(out, any_)
    return out


def _decode_one(out: ErrorDetails, any_) -> None:
    # ErrorDetails is frozen for callers; filled here once, before it is returned.
    put = object.__setattr__
    if any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
        m = error_details_pb2.BadRequest()
        any_.Unpack(m)
        out.field_violations.extend(FieldViolation(v.field, v.description) for v in m.field_violations)
    elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
        m = error_details_pb2.RetryInfo()
        any_.Unpack(m)
        put(out, "retry_delay", m.retry_delay.seconds + m.retry_delay.nanos / 1e9)
    elif any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        m = error_details_pb2.ErrorInfo()
        any_.Unpack(m)
        put(out, "error_info", ErrorInfo(m.reason, m.domain, dict(m.metadata)))
    elif any_.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
        m = error_details_pb2.PreconditionFailure()
        any_.Unpack(m)
        out.precondition_failures.extend(
            PreconditionViolation(v.type, v.subject, v.description) for v in m.violations
        )
    elif any_.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
        m = error_details_pb2.ResourceInfo()
        any_.Unpack(m)
        put(out, "resource_info", ResourceInfo(m.resource_type, m.resource_name, m.owner, m.description))
