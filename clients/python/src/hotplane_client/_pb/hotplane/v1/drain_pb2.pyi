import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DrainStatus(_message.Message):
    __slots__ = ("draining", "since", "reason", "in_flight_requests", "open_streams")
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAMS_FIELD_NUMBER: _ClassVar[int]
    draining: bool
    since: _timestamp_pb2.Timestamp
    reason: str
    in_flight_requests: int
    open_streams: int
    def __init__(self, draining: bool = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., in_flight_requests: _Optional[int] = ..., open_streams: _Optional[int] = ...) -> None: ...

class StartDrainRequest(_message.Message):
    __slots__ = ("reason", "grace", "wait")
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    grace: _duration_pb2.Duration
    wait: bool
    def __init__(self, reason: _Optional[str] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait: bool = ...) -> None: ...

class StartDrainResponse(_message.Message):
    __slots__ = ("status", "completed", "still_running")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    STILL_RUNNING_FIELD_NUMBER: _ClassVar[int]
    status: DrainStatus
    completed: bool
    still_running: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[_Union[DrainStatus, _Mapping]] = ..., completed: bool = ..., still_running: _Optional[_Iterable[str]] = ...) -> None: ...

class StopDrainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopDrainResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: DrainStatus
    def __init__(self, status: _Optional[_Union[DrainStatus, _Mapping]] = ...) -> None: ...

class GetDrainStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDrainStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: DrainStatus
    def __init__(self, status: _Optional[_Union[DrainStatus, _Mapping]] = ...) -> None: ...
