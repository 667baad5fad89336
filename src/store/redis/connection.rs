//! How otpd reaches Redis in each topology of `[redis]`: one server, the
//! primary that Sentinel names, or a Cluster. `Connection` carries commands
//! and scripts whatever the topology; `run_all` sends many single-slot
//! commands in as few round trips as the topology allows (one pipeline on a
//! single primary, concurrent requests on Cluster, where a request may not
//! cross slots).
//!
//! Following a failover is this module's job: the Cluster client follows
//! `MOVED`/`ASK` and reloads its slot map; the Sentinel connection forgets
//! its primary after any connection failure or an answer that says the node
//! is no longer a writable primary (`READONLY`, `MASTERDOWN`, `LOADING`),
//! and asks Sentinel again, which checks `ROLE` before otpd writes, so
//! nothing is written to a demoted node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    Value,
};

use super::settings::{RedisSettings, SentinelSettings, Topology};

/// One logical connection to the deployment's writable Redis.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Sentinel(Arc<SentinelPrimary>),
    Cluster(Arc<ClusterNodes>),
}

impl Connection {
    /// Connects lazily: otpd starts (and reports not ready) while Redis is
    /// down, and connects when it comes back. `response` bounds each reply.
    pub fn open(settings: &RedisSettings, response: Duration) -> RedisResult<Self> {
        let connect = settings.timeout;
        let certificates = settings.certificates().map_err(RedisError::from)?;
        Ok(match settings.topology() {
            Topology::Single => {
                let client = match certificates {
                    Some(certificates) => {
                        redis::Client::build_with_tls(settings.url.as_str(), certificates)?
                    }
                    None => redis::Client::open(settings.url.as_str())?,
                };
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(100));
                Connection::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            Topology::Sentinel => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response));
                Connection::Sentinel(Arc::new(SentinelPrimary {
                    sentinel: tokio::sync::Mutex::new(sentinel_client(
                        &settings.sentinel,
                        certificates,
                    )?),
                    primary: Mutex::new(None),
                    config,
                }))
            }
            Topology::Cluster => {
                let mut client =
                    redis::cluster::ClusterClientBuilder::new(settings.cluster.nodes.clone())
                        .retries(2)
                        .min_retry_wait(20)
                        .max_retry_wait(200);
                if let Some(certificates) = certificates {
                    client = client.certs(certificates);
                }
                let client = client.build()?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(response);
                let connection = client.get_pending_async_connection_with_config(config.clone());
                Connection::Cluster(Arc::new(ClusterNodes {
                    client,
                    config,
                    current: Mutex::new((connection, std::time::Instant::now())),
                }))
            }
        })
    }

    /// Sends every command and answers each one's result, in order. Each
    /// command must touch one slot; commands of different slots may be
    /// sent together.
    pub async fn run_all(&self, commands: &[Cmd]) -> RedisResult<Vec<RedisResult<Value>>> {
        match self {
            Connection::Cluster(_) => Ok(join_all(commands.iter().map(|command| {
                let mut connection = self.clone();
                async move { command.query_async::<Value>(&mut connection).await }
            }))
            .await),
            Connection::Single(_) | Connection::Sentinel(_) => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for command in commands {
                    pipe.add_command(command.clone());
                }
                let mut connection = self.clone();
                pipe.query_async::<Vec<RedisResult<Value>>>(&mut connection)
                    .await
            }
        }
    }

    /// `WAIT replicas timeout` on the node that holds `key`, over this
    /// connection (which must be the one that wrote): how many replicas
    /// acknowledged every write it sent so far.
    pub async fn wait_for_replicas(
        &self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout.as_millis() as u64);
        match self {
            Connection::Cluster(cluster) => {
                let primary = Route::new(slot(key.as_bytes()), SlotAddr::Master);
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(primary));
                let reply = cluster
                    .observed(|mut connection| async move {
                        connection.route_command(wait, route).await
                    })
                    .await?;
                redis::from_redis_value(reply).map_err(RedisError::from)
            }
            Connection::Single(_) | Connection::Sentinel(_) => {
                wait.query_async(&mut self.clone()).await
            }
        }
    }
}

/// The client that asks the Sentinels for the primary: the Sentinels'
/// addresses, credentials and TLS from their URLs (the first one's
/// credentials for all), the primary's from `[redis.sentinel]`.
fn sentinel_client(
    sentinel: &SentinelSettings,
    certificates: Option<redis::TlsCertificates>,
) -> RedisResult<SentinelClient> {
    let nodes: Vec<redis::ConnectionInfo> = sentinel
        .nodes
        .iter()
        .map(|url| url.as_str().into_connection_info())
        .collect::<RedisResult<_>>()?;
    let mut builder = SentinelClientBuilder::new(
        nodes.iter().map(|node| node.addr().clone()),
        &sentinel.master_name,
        SentinelServerType::Master,
    )?;
    if let Some(first) = nodes.first() {
        if let Some(username) = first.redis_settings().username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = first.redis_settings().password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if let redis::ConnectionAddr::TcpTls { insecure, .. } = first.addr() {
            builder = builder.set_client_to_sentinel_tls_mode(tls_mode(*insecure));
        }
    }
    if !sentinel.username.is_empty() {
        builder = builder.set_client_to_redis_username(&sentinel.username);
    }
    if !sentinel.password.is_empty() {
        builder = builder.set_client_to_redis_password(&sentinel.password);
    }
    if sentinel.tls {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
    }
    if let Some(certificates) = certificates {
        builder = builder
            .set_client_to_sentinel_certificates(certificates.clone())
            .set_client_to_redis_certificates(certificates);
    }
    builder.build()
}

fn tls_mode(insecure: bool) -> redis::TlsMode {
    if insecure {
        redis::TlsMode::Insecure
    } else {
        redis::TlsMode::Secure
    }
}

/// The Cluster slot of `key`: CRC16 (XMODEM) of its `{tag}`, or of the
/// whole key without one, modulo 16384.
fn slot(key: &[u8]) -> u16 {
    let tag = key
        .iter()
        .position(|byte| *byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|byte| *byte == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tag) % 16384
}

/// The Cluster client, rebuilt from the seed nodes when a node is lost.
/// The client follows `MOVED` by itself, but a primary that dies keeps its
/// slots in the client's map (a refused connection is not a redirect), and
/// its requests wait for a reconnection to that node. A fresh connection,
/// made in the background while the old one serves, reads the map anew.
pub(super) struct ClusterNodes {
    client: redis::cluster::ClusterClient,
    config: redis::cluster::ClusterConfig,
    /// The connection and when the last rebuild began.
    current: Mutex<(ClusterConnection, std::time::Instant)>,
}

/// The least time between two rebuilds of the Cluster connection.
const CLUSTER_REBUILD_EVERY: Duration = Duration::from_millis(500);

impl ClusterNodes {
    fn connection(&self) -> ClusterConnection {
        match self.current.lock() {
            Ok(current) => current.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Runs `call` on the current connection; an error that says a node is
    /// gone, or the caller giving up before the answer, starts a rebuild.
    async fn observed<T, F>(
        self: &Arc<Self>,
        call: impl FnOnce(ClusterConnection) -> F,
    ) -> RedisResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let unanswered = Unanswered(Some(self));
        let reply = call(self.connection()).await;
        unanswered.answered();
        self.judge(reply.as_ref().err());
        reply
    }

    /// After an error that says a node is gone, connects afresh from the
    /// seed nodes in the background (at most once per
    /// `CLUSTER_REBUILD_EVERY`) and swaps the new connection in once it
    /// has read the slot map.
    fn judge(self: &Arc<Self>, error: Option<&RedisError>) {
        let lost = error.is_some_and(|error| {
            lost_primary(error) || matches!(error.code(), Some("CLUSTERDOWN" | "MOVED"))
        });
        if lost {
            self.rebuild();
        }
    }

    fn rebuild(self: &Arc<Self>) {
        match self.current.lock() {
            Ok(mut current) if current.1.elapsed() >= CLUSTER_REBUILD_EVERY => {
                current.1 = std::time::Instant::now();
            }
            _ => return,
        }
        let nodes = Arc::clone(self);
        tokio::spawn(async move {
            let fresh = nodes
                .client
                .get_async_connection_with_config(nodes.config.clone())
                .await;
            if let (Ok(fresh), Ok(mut current)) = (fresh, nodes.current.lock()) {
                current.0 = fresh;
            }
        });
    }
}

/// A Cluster request in flight. Dropped before its answer (the caller's
/// timeout gave up on it), it starts a rebuild: the client may be waiting
/// on a node that is gone.
struct Unanswered<'a>(Option<&'a Arc<ClusterNodes>>);

impl Unanswered<'_> {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(cluster) = self.0 {
            cluster.rebuild();
        }
    }
}

/// The primary that Sentinel names, connected on demand and forgotten as
/// soon as it fails or says it is not one.
pub(super) struct SentinelPrimary {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    primary: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

impl SentinelPrimary {
    fn current(&self) -> Option<MultiplexedConnection> {
        self.primary.lock().ok().and_then(|primary| primary.clone())
    }

    /// The current primary, asking Sentinel (which checks `ROLE`) when
    /// there is none.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        let mut sentinel = self.sentinel.lock().await;
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        let primary = sentinel
            .async_get_client()
            .await?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        if let Ok(mut slot) = self.primary.lock() {
            *slot = Some(primary.clone());
        }
        Ok(primary)
    }

    /// Drops the primary after an error that says it may no longer be one.
    fn judge(&self, error: &RedisError) {
        if lost_primary(error) {
            if let Ok(mut slot) = self.primary.lock() {
                *slot = None;
            }
        }
    }
}

/// Whether `error` means the node can no longer take otpd's writes: the
/// connection failed, or the node is a replica, loading, or cut off.
pub(super) fn lost_primary(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => {
                Box::pin(cluster.observed(move |mut connection| async move {
                    connection.req_packed_command(cmd).await
                }))
            }
            Connection::Sentinel(sentinel) => Box::pin(async move {
                let mut primary = sentinel.connection().await?;
                let reply = primary.req_packed_command(cmd).await;
                if let Err(error) = &reply {
                    sentinel.judge(error);
                }
                reply
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(cluster) => {
                Box::pin(cluster.observed(move |mut connection| async move {
                    connection
                        .req_packed_commands(pipeline, offset, count)
                        .await
                }))
            }
            Connection::Sentinel(sentinel) => Box::pin(async move {
                let mut primary = sentinel.connection().await?;
                let replies = primary.req_packed_commands(pipeline, offset, count).await;
                match &replies {
                    Err(error) => sentinel.judge(error),
                    Ok(values) => {
                        for value in values {
                            if let Value::ServerError(error) = value {
                                sentinel.judge(&RedisError::from(error.clone()));
                            }
                        }
                    }
                }
                replies
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // Each pair as `CLUSTER KEYSLOT` of redis-server 7.0 answers it.
        for (key, expected) in [
            ("123456789", 12739),
            ("foo", 12182),
            ("{user1000}.following", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("otpd:{003f}:v:x", 13802),
        ] {
            assert_eq!(slot(key.as_bytes()), expected, "{key}");
        }
    }
}
