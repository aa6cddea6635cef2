import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hotplane_client._pb.hotplane.v1 import audit_pb2 as _audit_pb2
from hotplane_client._pb.hotplane.v1 import common_pb2 as _common_pb2
from hotplane_client._pb.hotplane.v1 import drain_pb2 as _drain_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_SNAPSHOT: _ClassVar[EventKind]
    EVENT_KIND_RELOAD_STARTED: _ClassVar[EventKind]
    EVENT_KIND_RELOAD_SUCCEEDED: _ClassVar[EventKind]
    EVENT_KIND_RELOAD_FAILED: _ClassVar[EventKind]
    EVENT_KIND_ROLLBACK: _ClassVar[EventKind]
    EVENT_KIND_PIN: _ClassVar[EventKind]
    EVENT_KIND_UNPIN: _ClassVar[EventKind]
    EVENT_KIND_DRAIN_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_BUS_CONNECTED: _ClassVar[EventKind]
    EVENT_KIND_BUS_DISCONNECTED: _ClassVar[EventKind]
    EVENT_KIND_PATTERN_LEARNED: _ClassVar[EventKind]
    EVENT_KIND_PATTERN_APPROVED: _ClassVar[EventKind]
    EVENT_KIND_PATTERN_DISABLED: _ClassVar[EventKind]
    EVENT_KIND_PATTERN_DELETED: _ClassVar[EventKind]
    EVENT_KIND_FLEET_MEMBER_JOINED: _ClassVar[EventKind]
    EVENT_KIND_FLEET_MEMBER_LEFT: _ClassVar[EventKind]
    EVENT_KIND_HEARTBEAT: _ClassVar[EventKind]
    EVENT_KIND_ROLLBACK_FAILED: _ClassVar[EventKind]
    EVENT_KIND_PATTERN_QUARANTINED: _ClassVar[EventKind]
    EVENT_KIND_PATTERN_RELEASED: _ClassVar[EventKind]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_SNAPSHOT: EventKind
EVENT_KIND_RELOAD_STARTED: EventKind
EVENT_KIND_RELOAD_SUCCEEDED: EventKind
EVENT_KIND_RELOAD_FAILED: EventKind
EVENT_KIND_ROLLBACK: EventKind
EVENT_KIND_PIN: EventKind
EVENT_KIND_UNPIN: EventKind
EVENT_KIND_DRAIN_CHANGED: EventKind
EVENT_KIND_BUS_CONNECTED: EventKind
EVENT_KIND_BUS_DISCONNECTED: EventKind
EVENT_KIND_PATTERN_LEARNED: EventKind
EVENT_KIND_PATTERN_APPROVED: EventKind
EVENT_KIND_PATTERN_DISABLED: EventKind
EVENT_KIND_PATTERN_DELETED: EventKind
EVENT_KIND_FLEET_MEMBER_JOINED: EventKind
EVENT_KIND_FLEET_MEMBER_LEFT: EventKind
EVENT_KIND_HEARTBEAT: EventKind
EVENT_KIND_ROLLBACK_FAILED: EventKind
EVENT_KIND_PATTERN_QUARANTINED: EventKind
EVENT_KIND_PATTERN_RELEASED: EventKind

class ReloadRequest(_message.Message):
    __slots__ = ("target", "pattern_id", "reason", "validate_only", "full", "broadcast", "wait_for_fleet", "database_url", "redis_url")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PATTERN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_FLEET_FIELD_NUMBER: _ClassVar[int]
    DATABASE_URL_FIELD_NUMBER: _ClassVar[int]
    REDIS_URL_FIELD_NUMBER: _ClassVar[int]
    target: _common_pb2.Target
    pattern_id: int
    reason: str
    validate_only: bool
    full: bool
    broadcast: bool
    wait_for_fleet: _duration_pb2.Duration
    database_url: str
    redis_url: str
    def __init__(self, target: _Optional[_Union[_common_pb2.Target, str]] = ..., pattern_id: _Optional[int] = ..., reason: _Optional[str] = ..., validate_only: bool = ..., full: bool = ..., broadcast: bool = ..., wait_for_fleet: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., database_url: _Optional[str] = ..., redis_url: _Optional[str] = ...) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("target", "generation_before", "generation_after", "changed", "added", "updated", "removed", "duration", "mode", "validate_only", "coalesced", "current", "publish_error", "fleet", "fleet_converged", "fleet_error", "redis_url", "previous_redis_url", "config_applied", "config_restart_required", "config_path", "config_pinned")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    GENERATION_BEFORE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_AFTER_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    FLEET_CONVERGED_FIELD_NUMBER: _ClassVar[int]
    FLEET_ERROR_FIELD_NUMBER: _ClassVar[int]
    REDIS_URL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REDIS_URL_FIELD_NUMBER: _ClassVar[int]
    CONFIG_APPLIED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_RESTART_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PINNED_FIELD_NUMBER: _ClassVar[int]
    target: _common_pb2.Target
    generation_before: int
    generation_after: int
    changed: bool
    added: int
    updated: int
    removed: int
    duration: _duration_pb2.Duration
    mode: _common_pb2.LoadMode
    validate_only: bool
    coalesced: bool
    current: _common_pb2.GenerationInfo
    publish_error: str
    fleet: _containers.RepeatedCompositeFieldContainer[FleetMember]
    fleet_converged: bool
    fleet_error: str
    redis_url: str
    previous_redis_url: str
    config_applied: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    config_restart_required: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    config_path: str
    config_pinned: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    def __init__(self, target: _Optional[_Union[_common_pb2.Target, str]] = ..., generation_before: _Optional[int] = ..., generation_after: _Optional[int] = ..., changed: bool = ..., added: _Optional[int] = ..., updated: _Optional[int] = ..., removed: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.LoadMode, str]] = ..., validate_only: bool = ..., coalesced: bool = ..., current: _Optional[_Union[_common_pb2.GenerationInfo, _Mapping]] = ..., publish_error: _Optional[str] = ..., fleet: _Optional[_Iterable[_Union[FleetMember, _Mapping]]] = ..., fleet_converged: bool = ..., fleet_error: _Optional[str] = ..., redis_url: _Optional[str] = ..., previous_redis_url: _Optional[str] = ..., config_applied: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ..., config_restart_required: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ..., config_path: _Optional[str] = ..., config_pinned: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ...) -> None: ...

class ConfigChange(_message.Message):
    __slots__ = ("key", "old_value", "new_value", "restart_reason", "pinned_by")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    RESTART_REASON_FIELD_NUMBER: _ClassVar[int]
    PINNED_BY_FIELD_NUMBER: _ClassVar[int]
    key: str
    old_value: str
    new_value: str
    restart_reason: str
    pinned_by: str
    def __init__(self, key: _Optional[str] = ..., old_value: _Optional[str] = ..., new_value: _Optional[str] = ..., restart_reason: _Optional[str] = ..., pinned_by: _Optional[str] = ...) -> None: ...

class ConfigStatus(_message.Message):
    __slots__ = ("path", "log_filter", "normalize_profile", "stop_words", "learn_min_confidence", "learn_min_chars", "learn_auto_approve", "poll_interval", "fleet_heartbeat", "fleet_ttl", "restart_pending", "admin_rate", "admin_burst", "pinned")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LOG_FILTER_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    STOP_WORDS_FIELD_NUMBER: _ClassVar[int]
    LEARN_MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LEARN_MIN_CHARS_FIELD_NUMBER: _ClassVar[int]
    LEARN_AUTO_APPROVE_FIELD_NUMBER: _ClassVar[int]
    POLL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FLEET_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    FLEET_TTL_FIELD_NUMBER: _ClassVar[int]
    RESTART_PENDING_FIELD_NUMBER: _ClassVar[int]
    ADMIN_RATE_FIELD_NUMBER: _ClassVar[int]
    ADMIN_BURST_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    path: str
    log_filter: str
    normalize_profile: str
    stop_words: _containers.RepeatedScalarFieldContainer[str]
    learn_min_confidence: float
    learn_min_chars: int
    learn_auto_approve: bool
    poll_interval: _duration_pb2.Duration
    fleet_heartbeat: _duration_pb2.Duration
    fleet_ttl: _duration_pb2.Duration
    restart_pending: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    admin_rate: float
    admin_burst: int
    pinned: _containers.RepeatedCompositeFieldContainer[ConfigChange]
    def __init__(self, path: _Optional[str] = ..., log_filter: _Optional[str] = ..., normalize_profile: _Optional[str] = ..., stop_words: _Optional[_Iterable[str]] = ..., learn_min_confidence: _Optional[float] = ..., learn_min_chars: _Optional[int] = ..., learn_auto_approve: bool = ..., poll_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fleet_heartbeat: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fleet_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., restart_pending: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ..., admin_rate: _Optional[float] = ..., admin_burst: _Optional[int] = ..., pinned: _Optional[_Iterable[_Union[ConfigChange, _Mapping]]] = ...) -> None: ...

class FleetMember(_message.Message):
    __slots__ = ("instance_id", "addr", "generation", "content_hash", "store_revision", "item_count", "draining", "last_error", "updated_at", "converged", "rollback_error", "store_position", "content_hash_scheme")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    STORE_REVISION_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_ERROR_FIELD_NUMBER: _ClassVar[int]
    STORE_POSITION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_SCHEME_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    addr: str
    generation: int
    content_hash: str
    store_revision: int
    item_count: int
    draining: bool
    last_error: str
    updated_at: _timestamp_pb2.Timestamp
    converged: bool
    rollback_error: str
    store_position: str
    content_hash_scheme: int
    def __init__(self, instance_id: _Optional[str] = ..., addr: _Optional[str] = ..., generation: _Optional[int] = ..., content_hash: _Optional[str] = ..., store_revision: _Optional[int] = ..., item_count: _Optional[int] = ..., draining: bool = ..., last_error: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., converged: bool = ..., rollback_error: _Optional[str] = ..., store_position: _Optional[str] = ..., content_hash_scheme: _Optional[int] = ...) -> None: ...

class FleetStatus(_message.Message):
    __slots__ = ("members", "converged", "read_at", "error", "truncated")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[FleetMember]
    converged: bool
    read_at: _timestamp_pb2.Timestamp
    error: str
    truncated: bool
    def __init__(self, members: _Optional[_Iterable[_Union[FleetMember, _Mapping]]] = ..., converged: bool = ..., read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., truncated: bool = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("target", "to_generation", "broadcast", "reason", "wait_for_fleet")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_GENERATION_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_FLEET_FIELD_NUMBER: _ClassVar[int]
    target: _common_pb2.Target
    to_generation: int
    broadcast: bool
    reason: str
    wait_for_fleet: _duration_pb2.Duration
    def __init__(self, target: _Optional[_Union[_common_pb2.Target, str]] = ..., to_generation: _Optional[int] = ..., broadcast: bool = ..., reason: _Optional[str] = ..., wait_for_fleet: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("generation_before", "current", "pinned", "publish_error", "fleet", "fleet_converged", "fleet_error")
    GENERATION_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    FLEET_CONVERGED_FIELD_NUMBER: _ClassVar[int]
    FLEET_ERROR_FIELD_NUMBER: _ClassVar[int]
    generation_before: int
    current: _common_pb2.GenerationInfo
    pinned: bool
    publish_error: str
    fleet: _containers.RepeatedCompositeFieldContainer[FleetMember]
    fleet_converged: bool
    fleet_error: str
    def __init__(self, generation_before: _Optional[int] = ..., current: _Optional[_Union[_common_pb2.GenerationInfo, _Mapping]] = ..., pinned: bool = ..., publish_error: _Optional[str] = ..., fleet: _Optional[_Iterable[_Union[FleetMember, _Mapping]]] = ..., fleet_converged: bool = ..., fleet_error: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("instance_id", "version", "started_at", "targets", "store", "drain", "bus", "fleet", "audit", "config")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    BUS_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    version: str
    started_at: _timestamp_pb2.Timestamp
    targets: _containers.RepeatedCompositeFieldContainer[_common_pb2.TargetStatus]
    store: StoreStatus
    drain: _drain_pb2.DrainStatus
    bus: BusStatus
    fleet: FleetStatus
    audit: _audit_pb2.AuditStatus
    config: ConfigStatus
    def __init__(self, instance_id: _Optional[str] = ..., version: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., targets: _Optional[_Iterable[_Union[_common_pb2.TargetStatus, _Mapping]]] = ..., store: _Optional[_Union[StoreStatus, _Mapping]] = ..., drain: _Optional[_Union[_drain_pb2.DrainStatus, _Mapping]] = ..., bus: _Optional[_Union[BusStatus, _Mapping]] = ..., fleet: _Optional[_Union[FleetStatus, _Mapping]] = ..., audit: _Optional[_Union[_audit_pb2.AuditStatus, _Mapping]] = ..., config: _Optional[_Union[ConfigStatus, _Mapping]] = ...) -> None: ...

class BusStatus(_message.Message):
    __slots__ = ("enabled", "connected", "channel", "redis_url", "signed", "connected_since", "last_error", "last_error_at", "next_retry_at", "reconnects", "messages_received", "messages_applied", "rejected", "self_skipped", "last_message_at", "published", "publish_failures", "last_publish_error", "swaps", "swapped_at", "handover_duplicates", "rollbacks_followed", "rollbacks_failed", "last_rollback_error", "memory_releases", "node", "node_changes")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REDIS_URL_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SINCE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    SELF_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_PUBLISH_ERROR_FIELD_NUMBER: _ClassVar[int]
    SWAPS_FIELD_NUMBER: _ClassVar[int]
    SWAPPED_AT_FIELD_NUMBER: _ClassVar[int]
    HANDOVER_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    ROLLBACKS_FOLLOWED_FIELD_NUMBER: _ClassVar[int]
    ROLLBACKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_ROLLBACK_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RELEASES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NODE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    connected: bool
    channel: str
    redis_url: str
    signed: bool
    connected_since: _timestamp_pb2.Timestamp
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    next_retry_at: _timestamp_pb2.Timestamp
    reconnects: int
    messages_received: int
    messages_applied: int
    rejected: _containers.ScalarMap[str, int]
    self_skipped: int
    last_message_at: _timestamp_pb2.Timestamp
    published: int
    publish_failures: int
    last_publish_error: str
    swaps: int
    swapped_at: _timestamp_pb2.Timestamp
    handover_duplicates: int
    rollbacks_followed: int
    rollbacks_failed: int
    last_rollback_error: str
    memory_releases: int
    node: str
    node_changes: int
    def __init__(self, enabled: bool = ..., connected: bool = ..., channel: _Optional[str] = ..., redis_url: _Optional[str] = ..., signed: bool = ..., connected_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reconnects: _Optional[int] = ..., messages_received: _Optional[int] = ..., messages_applied: _Optional[int] = ..., rejected: _Optional[_Mapping[str, int]] = ..., self_skipped: _Optional[int] = ..., last_message_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published: _Optional[int] = ..., publish_failures: _Optional[int] = ..., last_publish_error: _Optional[str] = ..., swaps: _Optional[int] = ..., swapped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., handover_duplicates: _Optional[int] = ..., rollbacks_followed: _Optional[int] = ..., rollbacks_failed: _Optional[int] = ..., last_rollback_error: _Optional[str] = ..., memory_releases: _Optional[int] = ..., node: _Optional[str] = ..., node_changes: _Optional[int] = ...) -> None: ...

class StoreStatus(_message.Message):
    __slots__ = ("backend", "url", "schema", "hit_flush_failures", "hit_flush_last_error", "hits_pending")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    HIT_FLUSH_FAILURES_FIELD_NUMBER: _ClassVar[int]
    HIT_FLUSH_LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    HITS_PENDING_FIELD_NUMBER: _ClassVar[int]
    backend: str
    url: str
    schema: str
    hit_flush_failures: int
    hit_flush_last_error: str
    hits_pending: int
    def __init__(self, backend: _Optional[str] = ..., url: _Optional[str] = ..., schema: _Optional[str] = ..., hit_flush_failures: _Optional[int] = ..., hit_flush_last_error: _Optional[str] = ..., hits_pending: _Optional[int] = ...) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ("targets", "kinds", "after_event_id")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedScalarFieldContainer[_common_pb2.Target]
    kinds: _containers.RepeatedScalarFieldContainer[EventKind]
    after_event_id: int
    def __init__(self, targets: _Optional[_Iterable[_Union[_common_pb2.Target, str]]] = ..., kinds: _Optional[_Iterable[_Union[EventKind, str]]] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class WatchStatusResponse(_message.Message):
    __slots__ = ("event_id", "at", "kind", "resync", "target", "generation", "pattern_id", "error", "status", "fleet_member", "bus_node")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PATTERN_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FLEET_MEMBER_FIELD_NUMBER: _ClassVar[int]
    BUS_NODE_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    at: _timestamp_pb2.Timestamp
    kind: EventKind
    resync: bool
    target: _common_pb2.Target
    generation: _common_pb2.GenerationInfo
    pattern_id: int
    error: str
    status: GetStatusResponse
    fleet_member: FleetMember
    bus_node: str
    def __init__(self, event_id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[EventKind, str]] = ..., resync: bool = ..., target: _Optional[_Union[_common_pb2.Target, str]] = ..., generation: _Optional[_Union[_common_pb2.GenerationInfo, _Mapping]] = ..., pattern_id: _Optional[int] = ..., error: _Optional[str] = ..., status: _Optional[_Union[GetStatusResponse, _Mapping]] = ..., fleet_member: _Optional[_Union[FleetMember, _Mapping]] = ..., bus_node: _Optional[str] = ...) -> None: ...
