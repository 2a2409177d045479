//! A small blocking client for the admin API.

use anyhow::{bail, Result};
use serde_json::Value;

fn answer(r: Result<ureq::Response, ureq::Error>) -> Result<Value> {
    match r {
        Ok(resp) => Ok(resp.into_json()?),
        Err(ureq::Error::Status(code, resp)) => {
            let body: Value = resp.into_json().unwrap_or(Value::Null);
            bail!(
                "the gate answered {code}: {}",
                body["message"].as_str().unwrap_or("(no message)")
            )
        }
        Err(e) => bail!("{e}"),
    }
}

/// An agent for the gate at `url`: https verified against `ca_file`, or
/// the system's roots without one.
pub(crate) fn agent(ca_file: Option<&std::path::Path>) -> Result<ureq::Agent> {
    Ok(tls::agent(ca_file, std::time::Duration::from_secs(60))?)
}

pub(crate) fn post(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Value> {
    answer(
        agent
            .post(url)
            .set("authorization", &format!("Bearer {token}"))
            .set("content-type", content_type)
            .send_bytes(body),
    )
}

pub(crate) fn get(agent: &ureq::Agent, url: &str, token: &str) -> Result<Value> {
    answer(
        agent
            .get(url)
            .set("authorization", &format!("Bearer {token}"))
            .call(),
    )
}

/// `value` (an answer read as JSON) as the type the API answers with.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}
