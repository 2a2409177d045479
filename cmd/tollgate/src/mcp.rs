//! `tollgate mcp stdio|http`: the flags. The gateway itself (the drivers,
//! sessions and the one decider) is the `mcpgate` crate, over the sans-IO
//! rules of the `mcp` crate.

use std::path::PathBuf;

/// The gate asked for decisions (both modes), unless `--data-dir` runs one
/// in this process.
#[derive(clap::Args)]
pub(crate) struct RemoteGate {
    /// The gate's URL (`--gate`, its old spelling, still works).
    #[arg(
        long = "url",
        alias = "gate",
        default_value = "http://127.0.0.1:8080",
        env = "TOLLGATE_URL"
    )]
    url: String,
    /// The log's checkpoint key (vkey): answers must verify with it.
    #[arg(long, env = "TOLLGATE_LOG_KEY", required_unless_present = "data_dir")]
    log_key: Option<String>,
    /// The gate's receipt key (vkey): answers must verify with it.
    #[arg(long, env = "TOLLGATE_GATE_KEY", required_unless_present = "data_dir")]
    gate_key: Option<String>,
    /// With an https gate URL: the CA certificate(s) (PEM) to verify it against.
    #[arg(long, env = "TOLLGATE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct StdioArgs {
    /// The server's name: the surface its tools' decisions are asked for.
    #[arg(long)]
    server: String,
    /// The actor every call is decided for (the agent behind this client).
    #[arg(long, env = "TOLLGATE_MCP_ACTOR")]
    actor: String,
    #[command(flatten)]
    remote: RemoteGate,
    /// File holding the bearer token of a caller that may decide for the actor.
    #[arg(
        long,
        env = "TOLLGATE_TOKEN_FILE",
        required_unless_present = "data_dir"
    )]
    token_file: Option<PathBuf>,
    /// Run the gate inside this process on this data directory (as `tollgate
    /// serve --data-dir` would, which must not be running on it) instead of
    /// asking one at --url. Receipts name --caller, `via: in_process`.
    #[arg(long, conflicts_with_all = ["token_file", "log_key", "gate_key", "ca_file"])]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the caller (created with `tollgate caller add`, bound
    /// to the actor) the decisions are asked as.
    #[arg(long, requires = "data_dir", default_value = "mcp")]
    caller: String,
    /// `tools/list` answers omit the tools the policy denies this actor
    /// outright (each evaluated with the arguments unknown and
    /// `context.listing = true`, never logged); calls are decided as always.
    #[arg(long)]
    hide_denied: bool,
    /// The MCP server's command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

impl From<StdioArgs> for mcpgate::StdioOptions {
    fn from(a: StdioArgs) -> mcpgate::StdioOptions {
        mcpgate::StdioOptions {
            server: a.server,
            actor: a.actor,
            gate: a.remote.url,
            token_file: a.token_file,
            log_key: a.remote.log_key,
            gate_key: a.remote.gate_key,
            data_dir: a.data_dir,
            caller: a.caller,
            ca_file: a.remote.ca_file,
            hide_denied: a.hide_denied,
            command: a.command,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct HttpArgs {
    /// The server's name: the surface its tools' decisions are asked for.
    #[arg(long)]
    server: String,
    /// The MCP server's streamable HTTP endpoint (http:// or https://host:port/path).
    #[arg(long)]
    upstream: String,
    /// With an https upstream: the CA certificate(s) (PEM) to verify it
    /// against (default: the system's roots).
    #[arg(long)]
    upstream_ca_file: Option<PathBuf>,
    /// Where MCP clients connect; the endpoint's path is the upstream's.
    /// (8081: beside the gate's 8080; `witness serve` takes 8090.)
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The actor when the client sends no `Tollgate-Actor` header (default:
    /// the caller's actor, if it is bound to exactly one).
    #[arg(long, env = "TOLLGATE_MCP_ACTOR")]
    actor: Option<String>,
    #[command(flatten)]
    remote: RemoteGate,
    /// Run the gate inside this process on this data directory (which
    /// `tollgate serve` must not be running on) instead of asking one at
    /// --url; clients' tokens are its callers'. Receipts say `via: in_process`.
    #[arg(long, conflicts_with_all = ["log_key", "gate_key", "ca_file"])]
    data_dir: Option<PathBuf>,
    /// `tools/list` answers omit the tools the policy denies the client's
    /// actor outright (each evaluated with the arguments unknown and
    /// `context.listing = true`, never logged); calls are decided as always.
    #[arg(long)]
    hide_denied: bool,
    /// Also accept OAuth 2.1 access tokens (JWTs) as this TOML file says:
    /// the authorization server (`issuer`, `jwks_uri`, `ca_file`), this
    /// resource's URL (`resource`: tokens' audience), required `scopes`, and
    /// `[[principal]]` rules mapping tokens (by `client_id`, `sub` or a
    /// claim) to the actors they may speak for. Serves the RFC 9728 metadata
    /// at /.well-known/oauth-protected-resource. Callers' tokens keep working.
    #[arg(long, value_name = "FILE")]
    oauth: Option<PathBuf>,
    /// With --oauth and a gate at --url: the file holding the gateway's own
    /// caller's token (decide, bound to the actors the principals speak
    /// for); OAuth clients' decisions are asked as it, on their behalf.
    #[arg(long, requires = "oauth", conflicts_with = "data_dir")]
    token_file: Option<PathBuf>,
    /// With --oauth and --data-dir: the gateway's own caller, by name.
    #[arg(long, requires = "data_dir", default_value = "mcp")]
    caller: String,
}

impl From<HttpArgs> for mcpgate::HttpOptions {
    fn from(a: HttpArgs) -> mcpgate::HttpOptions {
        mcpgate::HttpOptions {
            server: a.server,
            upstream: a.upstream,
            upstream_ca_file: a.upstream_ca_file,
            listen: a.listen,
            actor: a.actor,
            gate: a.remote.url,
            log_key: a.remote.log_key,
            gate_key: a.remote.gate_key,
            ca_file: a.remote.ca_file,
            data_dir: a.data_dir,
            hide_denied: a.hide_denied,
            oauth: a.oauth,
            token_file: a.token_file,
            caller: a.caller,
        }
    }
}
