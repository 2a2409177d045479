//! The MCP gateway's drivers (`tollgate mcp stdio|http`): the I/O around the
//! sans-IO rules of the `mcp` crate.
//!
//! - [`stdio`]: the MCP server as a child process, MCP on this process's
//!   stdin/stdout;
//! - [`http`]: a reverse proxy for MCP's streamable HTTP transport, with
//!   sessions bound to the caller's token and actor;
//! - [`decider`]: the one way both ask for a decision — a remote gate through
//!   the Rust SDK (verified answers), or the gate in this process;
//! - [`oauth`]: `tollgate mcp http --oauth`, the OAuth 2.1 resource server
//!   (RFC 9728 metadata, JWT access tokens checked against the
//!   authorization server's JWKS, tokens mapped to principals).
//!
//! `cmd/tollgate` keeps only the flags (`clap`) and turns them into
//! [`stdio::StdioOptions`] and [`http::HttpOptions`].

pub mod decider;
pub mod http;
pub mod oauth;
pub mod stdio;

pub use http::HttpOptions;
pub use stdio::StdioOptions;
