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

pub(crate) fn post(url: &str, token: &str, content_type: &str, body: &[u8]) -> Result<Value> {
    answer(
        ureq::post(url)
            .set("authorization", &format!("Bearer {token}"))
            .set("content-type", content_type)
            .send_bytes(body),
    )
}

pub(crate) fn get(url: &str, token: &str) -> Result<Value> {
    answer(
        ureq::get(url)
            .set("authorization", &format!("Bearer {token}"))
            .call(),
    )
}
