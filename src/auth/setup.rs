//! The security pieces of a config, made once at start: the auth layer (credentials read, rate
//! limits set) and the TLS settings (PEM files read). Every file is read here, so a bad path
//! stops start-up with a message naming the flag.

use std::{net::SocketAddr, sync::Arc};

use tracing::{info, warn};

use super::{AuthConfig, AuthLayer, Authenticator, RateLimiter, ServerTls};

/// The auth layer and TLS settings of `auth`, for a server listening on `listen`.
pub fn setup(
    auth: &AuthConfig,
    listen: SocketAddr,
    limiter: Arc<RateLimiter>,
) -> anyhow::Result<(AuthLayer, Option<Arc<ServerTls>>)> {
    let authenticator = Authenticator::from_config(auth)?;
    if !authenticator.has_credentials() {
        info!(
            "no credentials configured: read RPCs are open, state-changing RPCs accepted only from loopback"
        );
        if !listen.ip().is_loopback() {
            warn!(
                %listen,
                "listening beyond loopback without credentials: state-changing RPCs from the network are refused until --auth-tokens-file, --auth-jwt-* or --tls-client-ca-file is set"
            );
        }
    }
    let layer = AuthLayer::new(Arc::new(authenticator), limiter);
    let tls = ServerTls::from_config(auth)?;
    Ok((layer, tls))
}
