# hotplane_client.details on errors built here (no server): every detail kind hotplane sends
# is decoded, unknown ones are skipped, and an error without details decodes to empty fields.
import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2 as ed, status_pb2

import hotplane_client as hc


class FakeError(grpc.RpcError):
    def __init__(self, code, message, details=()):
        self._code, self._message = code, message
        status = status_pb2.Status(code=code.value[0], message=message)
        for d in details:
            a = any_pb2.Any()
            a.Pack(d)
            status.details.append(a)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),) if details else ()

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers


def test_every_detail_kind_is_decoded_and_unknown_ones_are_skipped():
    err = FakeError(grpc.StatusCode.UNAVAILABLE, "busy", [
        ed.BadRequest(field_violations=[ed.BadRequest.FieldViolation(field="query", description="too long")]),
        ed.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
        ed.ErrorInfo(reason="STORE_UNAVAILABLE", domain="hotplane.dev", metadata={"k": "v"}),
        ed.PreconditionFailure(violations=[ed.PreconditionFailure.Violation(type="GENERATION", subject="min_generation")]),
        ed.ResourceInfo(resource_type="pattern", resource_name="7"),
        ed.Help(),  # not one hotplane sends: skipped
    ])
    d = hc.details(err)
    assert d.code == grpc.StatusCode.UNAVAILABLE and d.message == "busy"
    assert d.violation("query") == hc.FieldViolation("query", "too long")
    assert d.retry_delay == 1.5
    assert d.reason == "STORE_UNAVAILABLE" and d.error_info.metadata == {"k": "v"}
    assert d.precondition_failures[0].subject == "min_generation"
    assert d.resource_info.resource_name == "7"


def test_an_error_without_details_decodes_to_empty_fields():
    d = hc.details(FakeError(grpc.StatusCode.INTERNAL, "boom"))
    assert (d.field_violations, d.retry_delay, d.error_info, d.reason) == ([], None, None, None)
