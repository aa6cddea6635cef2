import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Target(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_UNSPECIFIED: _ClassVar[Target]
    TARGET_PATTERNS: _ClassVar[Target]
    TARGET_CONFIG: _ClassVar[Target]
    TARGET_STORE: _ClassVar[Target]
    TARGET_BUS: _ClassVar[Target]

class ReloadSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELOAD_SOURCE_UNSPECIFIED: _ClassVar[ReloadSource]
    RELOAD_SOURCE_STARTUP: _ClassVar[ReloadSource]
    RELOAD_SOURCE_GRPC: _ClassVar[ReloadSource]
    RELOAD_SOURCE_BUS: _ClassVar[ReloadSource]
    RELOAD_SOURCE_POLL: _ClassVar[ReloadSource]
    RELOAD_SOURCE_SIGNAL: _ClassVar[ReloadSource]
    RELOAD_SOURCE_WRITE: _ClassVar[ReloadSource]
    RELOAD_SOURCE_ROLLBACK: _ClassVar[ReloadSource]

class LoadMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOAD_MODE_UNSPECIFIED: _ClassVar[LoadMode]
    LOAD_MODE_FULL: _ClassVar[LoadMode]
    LOAD_MODE_DELTA: _ClassVar[LoadMode]
    LOAD_MODE_SINGLE: _ClassVar[LoadMode]
    LOAD_MODE_NOOP: _ClassVar[LoadMode]
    LOAD_MODE_INVALIDATE: _ClassVar[LoadMode]
TARGET_UNSPECIFIED: Target
TARGET_PATTERNS: Target
TARGET_CONFIG: Target
TARGET_STORE: Target
TARGET_BUS: Target
RELOAD_SOURCE_UNSPECIFIED: ReloadSource
RELOAD_SOURCE_STARTUP: ReloadSource
RELOAD_SOURCE_GRPC: ReloadSource
RELOAD_SOURCE_BUS: ReloadSource
RELOAD_SOURCE_POLL: ReloadSource
RELOAD_SOURCE_SIGNAL: ReloadSource
RELOAD_SOURCE_WRITE: ReloadSource
RELOAD_SOURCE_ROLLBACK: ReloadSource
LOAD_MODE_UNSPECIFIED: LoadMode
LOAD_MODE_FULL: LoadMode
LOAD_MODE_DELTA: LoadMode
LOAD_MODE_SINGLE: LoadMode
LOAD_MODE_NOOP: LoadMode
LOAD_MODE_INVALIDATE: LoadMode

class GenerationInfo(_message.Message):
    __slots__ = ("generation", "content_hash", "store_revision", "loaded_at", "source", "load_duration", "item_count", "mode", "reason", "store_position", "content_hash_scheme")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    STORE_REVISION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOAD_DURATION_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STORE_POSITION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_SCHEME_FIELD_NUMBER: _ClassVar[int]
    generation: int
    content_hash: str
    store_revision: int
    loaded_at: _timestamp_pb2.Timestamp
    source: ReloadSource
    load_duration: _duration_pb2.Duration
    item_count: int
    mode: LoadMode
    reason: str
    store_position: str
    content_hash_scheme: int
    def __init__(self, generation: _Optional[int] = ..., content_hash: _Optional[str] = ..., store_revision: _Optional[int] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[ReloadSource, str]] = ..., load_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., item_count: _Optional[int] = ..., mode: _Optional[_Union[LoadMode, str]] = ..., reason: _Optional[str] = ..., store_position: _Optional[str] = ..., content_hash_scheme: _Optional[int] = ...) -> None: ...

class TargetStatus(_message.Message):
    __slots__ = ("target", "current", "last_success_at", "last_error", "last_error_at", "consecutive_failures", "loads_total", "failures_total", "loading", "retained", "pinned", "pending_changes", "coalesced_total", "quarantined", "quarantined_total")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LOADS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LOADING_FIELD_NUMBER: _ClassVar[int]
    RETAINED_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGES_FIELD_NUMBER: _ClassVar[int]
    COALESCED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    target: Target
    current: GenerationInfo
    last_success_at: _timestamp_pb2.Timestamp
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    consecutive_failures: int
    loads_total: int
    failures_total: int
    loading: bool
    retained: _containers.RepeatedCompositeFieldContainer[GenerationInfo]
    pinned: bool
    pending_changes: int
    coalesced_total: int
    quarantined: _containers.RepeatedCompositeFieldContainer[QuarantinedPattern]
    quarantined_total: int
    def __init__(self, target: _Optional[_Union[Target, str]] = ..., current: _Optional[_Union[GenerationInfo, _Mapping]] = ..., last_success_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consecutive_failures: _Optional[int] = ..., loads_total: _Optional[int] = ..., failures_total: _Optional[int] = ..., loading: bool = ..., retained: _Optional[_Iterable[_Union[GenerationInfo, _Mapping]]] = ..., pinned: bool = ..., pending_changes: _Optional[int] = ..., coalesced_total: _Optional[int] = ..., quarantined: _Optional[_Iterable[_Union[QuarantinedPattern, _Mapping]]] = ..., quarantined_total: _Optional[int] = ...) -> None: ...

class QuarantinedPattern(_message.Message):
    __slots__ = ("pattern_id", "reason")
    PATTERN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pattern_id: int
    reason: str
    def __init__(self, pattern_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
