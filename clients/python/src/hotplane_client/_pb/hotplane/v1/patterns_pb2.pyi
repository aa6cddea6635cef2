import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PatternStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATTERN_STATUS_UNSPECIFIED: _ClassVar[PatternStatus]
    PATTERN_STATUS_PENDING: _ClassVar[PatternStatus]
    PATTERN_STATUS_APPROVED: _ClassVar[PatternStatus]
    PATTERN_STATUS_DISABLED: _ClassVar[PatternStatus]
PATTERN_STATUS_UNSPECIFIED: PatternStatus
PATTERN_STATUS_PENDING: PatternStatus
PATTERN_STATUS_APPROVED: PatternStatus
PATTERN_STATUS_DISABLED: PatternStatus

class Pattern(_message.Message):
    __slots__ = ("id", "pattern", "normalized_pattern", "category", "confidence", "times_used", "times_correct", "accuracy", "created_at", "last_used_at", "created_by", "enabled", "status", "metadata", "updated_at", "revision", "metadata_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_PATTERN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIMES_USED_FIELD_NUMBER: _ClassVar[int]
    TIMES_CORRECT_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    pattern: str
    normalized_pattern: str
    category: str
    confidence: float
    times_used: int
    times_correct: int
    accuracy: float
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    created_by: str
    enabled: bool
    status: PatternStatus
    metadata: _struct_pb2.Struct
    updated_at: _timestamp_pb2.Timestamp
    revision: int
    metadata_json: str
    def __init__(self, id: _Optional[int] = ..., pattern: _Optional[str] = ..., normalized_pattern: _Optional[str] = ..., category: _Optional[str] = ..., confidence: _Optional[float] = ..., times_used: _Optional[int] = ..., times_correct: _Optional[int] = ..., accuracy: _Optional[float] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., enabled: bool = ..., status: _Optional[_Union[PatternStatus, str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class MatchedPattern(_message.Message):
    __slots__ = ("id", "normalized_pattern", "category", "confidence", "accuracy", "metadata", "metadata_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_PATTERN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    normalized_pattern: str
    category: str
    confidence: float
    accuracy: float
    metadata: _struct_pb2.Struct
    metadata_json: str
    def __init__(self, id: _Optional[int] = ..., normalized_pattern: _Optional[str] = ..., category: _Optional[str] = ..., confidence: _Optional[float] = ..., accuracy: _Optional[float] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class MatchPatternRequest(_message.Message):
    __slots__ = ("query", "min_confidence", "min_generation", "metadata_as_json")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    query: str
    min_confidence: float
    min_generation: int
    metadata_as_json: bool
    def __init__(self, query: _Optional[str] = ..., min_confidence: _Optional[float] = ..., min_generation: _Optional[int] = ..., metadata_as_json: bool = ...) -> None: ...

class MatchPatternResponse(_message.Message):
    __slots__ = ("matched", "pattern", "normalized_query", "generation")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_QUERY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    matched: bool
    pattern: MatchedPattern
    normalized_query: str
    generation: int
    def __init__(self, matched: bool = ..., pattern: _Optional[_Union[MatchedPattern, _Mapping]] = ..., normalized_query: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class BatchMatchPatternsRequest(_message.Message):
    __slots__ = ("queries", "min_confidence", "min_generation", "metadata_as_json")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedScalarFieldContainer[str]
    min_confidence: float
    min_generation: int
    metadata_as_json: bool
    def __init__(self, queries: _Optional[_Iterable[str]] = ..., min_confidence: _Optional[float] = ..., min_generation: _Optional[int] = ..., metadata_as_json: bool = ...) -> None: ...

class MatchResult(_message.Message):
    __slots__ = ("matched", "pattern", "normalized_query")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_QUERY_FIELD_NUMBER: _ClassVar[int]
    matched: bool
    pattern: MatchedPattern
    normalized_query: str
    def __init__(self, matched: bool = ..., pattern: _Optional[_Union[MatchedPattern, _Mapping]] = ..., normalized_query: _Optional[str] = ...) -> None: ...

class BatchMatchPatternsResponse(_message.Message):
    __slots__ = ("results", "generation")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MatchResult]
    generation: int
    def __init__(self, results: _Optional[_Iterable[_Union[MatchResult, _Mapping]]] = ..., generation: _Optional[int] = ...) -> None: ...

class LearnPatternRequest(_message.Message):
    __slots__ = ("query", "category", "confidence", "metadata", "created_by", "metadata_json", "metadata_as_json")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    query: str
    category: str
    confidence: float
    metadata: _struct_pb2.Struct
    created_by: str
    metadata_json: str
    metadata_as_json: bool
    def __init__(self, query: _Optional[str] = ..., category: _Optional[str] = ..., confidence: _Optional[float] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_by: _Optional[str] = ..., metadata_json: _Optional[str] = ..., metadata_as_json: bool = ...) -> None: ...

class LearnPatternResponse(_message.Message):
    __slots__ = ("pattern", "created", "updated", "served", "generation", "publish_error")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    pattern: Pattern
    created: bool
    updated: bool
    served: bool
    generation: int
    publish_error: str
    def __init__(self, pattern: _Optional[_Union[Pattern, _Mapping]] = ..., created: bool = ..., updated: bool = ..., served: bool = ..., generation: _Optional[int] = ..., publish_error: _Optional[str] = ...) -> None: ...

class GetPatternRequest(_message.Message):
    __slots__ = ("id", "metadata_as_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    metadata_as_json: bool
    def __init__(self, id: _Optional[int] = ..., metadata_as_json: bool = ...) -> None: ...

class GetPatternResponse(_message.Message):
    __slots__ = ("pattern", "served")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    pattern: Pattern
    served: bool
    def __init__(self, pattern: _Optional[_Union[Pattern, _Mapping]] = ..., served: bool = ...) -> None: ...

class ListPatternsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status", "category", "metadata_as_json")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: PatternStatus
    category: str
    metadata_as_json: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[PatternStatus, str]] = ..., category: _Optional[str] = ..., metadata_as_json: bool = ...) -> None: ...

class ListPatternsResponse(_message.Message):
    __slots__ = ("patterns", "next_page_token")
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    patterns: _containers.RepeatedCompositeFieldContainer[Pattern]
    next_page_token: str
    def __init__(self, patterns: _Optional[_Iterable[_Union[Pattern, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ApprovePatternRequest(_message.Message):
    __slots__ = ("id", "reason", "metadata_as_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    metadata_as_json: bool
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ..., metadata_as_json: bool = ...) -> None: ...

class ApprovePatternResponse(_message.Message):
    __slots__ = ("pattern", "generation", "publish_error")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    pattern: Pattern
    generation: int
    publish_error: str
    def __init__(self, pattern: _Optional[_Union[Pattern, _Mapping]] = ..., generation: _Optional[int] = ..., publish_error: _Optional[str] = ...) -> None: ...

class DisablePatternRequest(_message.Message):
    __slots__ = ("id", "reason", "metadata_as_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_AS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    metadata_as_json: bool
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ..., metadata_as_json: bool = ...) -> None: ...

class DisablePatternResponse(_message.Message):
    __slots__ = ("pattern", "generation", "publish_error")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    pattern: Pattern
    generation: int
    publish_error: str
    def __init__(self, pattern: _Optional[_Union[Pattern, _Mapping]] = ..., generation: _Optional[int] = ..., publish_error: _Optional[str] = ...) -> None: ...

class DeletePatternRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class DeletePatternResponse(_message.Message):
    __slots__ = ("id", "generation", "publish_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    generation: int
    publish_error: str
    def __init__(self, id: _Optional[int] = ..., generation: _Optional[int] = ..., publish_error: _Optional[str] = ...) -> None: ...
