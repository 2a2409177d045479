//! Serving the router on a listener with the limits an internet-facing
//! service needs: at most `max_connections` open at once (beyond that a new
//! connection is closed at once, so the gate's memory and file descriptors
//! stay bounded), a deadline for each request head (`header_read_timeout`:
//! a client that sends no complete head in time — a slow one, or an idle
//! keep-alive one — is disconnected), and a deadline for each body
//! (`body_read_timeout`, enforced where bodies are read). Graceful
//! shutdown: stop accepting, let requests in flight finish, close the rest.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt as _;

use crate::http::{TlsPeer, UnixPeer};

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a complete request head, idle time included.
    pub header_read: Duration,
}

/// A listener the gate serves on.
pub trait Listen: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection, and on a Unix socket its peer.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, Option<UnixPeer>)>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, Option<UnixPeer>)> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        Ok((stream, None))
    }
}

impl Listen for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, Option<UnixPeer>)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        let peer = UnixPeer {
            uid: stream.peer_cred().ok().map(|c| c.uid()),
        };
        Ok((stream, Some(peer)))
    }
}

/// Serves `app` on `listener` within `limits` until `stop` turns true, then
/// drains the requests in flight. With `tls`, every connection first
/// completes a TLS handshake (within the head deadline); a verified client
/// certificate's subject common name goes with each of its requests.
///
/// # Errors
///
/// None so far: accept errors (such as running out of file descriptors) are
/// logged and retried after a pause.
pub async fn serve<L: Listen>(
    listener: L,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (io, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // At the cap: close it now rather than queue it.
            tracing::debug!(
                max = limits.max_connections,
                "connection refused: at the cap"
            );
            drop(io);
            continue;
        };
        let (app, http, watcher, tls) =
            (app.clone(), http.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(&http, io, app, peer, None, watcher).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read, acceptor.accept(io)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let subject = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(tls::subject_cn);
                            let subject = subject.map(|cn| TlsPeer { subject_cn: cn });
                            connection(&http, stream, app, peer, subject, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Serves one connection's requests, each carrying what is known of the peer.
async fn connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    app: Router,
    unix: Option<UnixPeer>,
    tls: Option<TlsPeer>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(Body::new);
        if let Some(p) = unix {
            req.extensions_mut().insert(ConnectInfo(p));
        }
        if let Some(p) = &tls {
            req.extensions_mut().insert(ConnectInfo(p.clone()));
        }
        app.clone().oneshot(req)
    });
    let _ = watcher
        .watch(http.serve_connection(TokioIo::new(io), service))
        .await;
}

/// Binds the Unix socket at `path` for the gate: its directory is created
/// (0750) if missing and must belong to the gate's user, a stale socket of a
/// previous run is replaced (never another kind of file), and the socket is
/// made 0660 and given to `group` (a name or a gid) if one is named, so only
/// the gate's user and that group can connect.
///
/// # Errors
///
/// A message naming the path and the step that failed.
pub fn bind_unix(
    path: &std::path::Path,
    group: Option<&str>,
) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::{
        DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
    };
    let err = |what: &str, e: &dyn std::fmt::Display| {
        format!("unix socket {}: {what}: {e}", path.display())
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("unix socket {}: no directory", path.display()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| err("creating its directory", &e))?;
    }
    let me = nix::unistd::getuid().as_raw();
    let owner = std::fs::metadata(dir)
        .map_err(|e| err("its directory", &e))?
        .uid();
    if owner != me {
        return Err(format!(
            "unix socket {}: its directory {} belongs to uid {owner}, not to the gate (uid {me}); \
             use a directory the gate owns",
            path.display(),
            dir.display()
        ));
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path).map_err(|e| err("removing a stale socket", &e))?;
    }
    let gid = match group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => nix::unistd::Group::from_name(g)
                .map_err(|e| err("looking up its group", &e))?
                .ok_or_else(|| format!("unix socket {}: no group {g:?}", path.display()))?
                .gid
                .as_raw(),
        }),
    };
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| err("binding", &e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err("setting mode 0660", &e))?;
    if gid.is_some() {
        std::os::unix::fs::chown(path, None, gid).map_err(|e| err("giving it to its group", &e))?;
    }
    Ok(listener)
}
