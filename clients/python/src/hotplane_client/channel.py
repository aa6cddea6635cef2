# hotplane_client.channel: gRPC channels to hotplane, plaintext or TLS, with a bearer token.
#
# The token goes in `authorization: Bearer <token>` on every call (docs/security.md). Over TLS
# it is attached as call credentials; over plaintext (a local or test server) as a metadata
# interceptor, since grpc refuses call credentials on an insecure channel.
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import grpc

Options = Sequence[Tuple[str, object]]


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call's metadata."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        md = list(details.metadata or ()) + [self._header]
        return details._replace(metadata=md) if hasattr(details, "_replace") else _Details(details, md)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, it):
        return continuation(self._with_token(details), it)

    def intercept_stream_stream(self, continuation, details, it):
        return continuation(self._with_token(details), it)


class _Details(grpc.ClientCallDetails):
    """ClientCallDetails with other metadata (grpc's own class is not a namedtuple)."""

    def __init__(self, d, metadata):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


def insecure_channel(target: str, token: Optional[str] = None, options: Options = ()) -> grpc.Channel:
    """A plaintext channel to `target` (host:port), sending `token` as a bearer token if given."""
    ch = grpc.insecure_channel(target, options=list(options))
    return grpc.intercept_channel(ch, _BearerInterceptor(token)) if token else ch


def secure_channel(
    target: str,
    *,
    root_certificates: Optional[bytes] = None,
    token: Optional[str] = None,
    client_certificate: Optional[bytes] = None,
    client_key: Optional[bytes] = None,
    server_name: Optional[str] = None,
    options: Options = (),
) -> grpc.Channel:
    """A TLS channel to `target`.

    root_certificates: PEM of the CA that signed the server's certificate (None: the system's).
    client_certificate/client_key: PEM, for mTLS. server_name: the name to check the server's
    certificate against when it differs from target's host (e.g. `localhost` for 127.0.0.1).
    """
    creds = grpc.ssl_channel_credentials(root_certificates, client_key, client_certificate)
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    opts = list(options)
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, creds, options=opts)
