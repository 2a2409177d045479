//! `Tollgate-On-Behalf-Of`: the principal a caller says it acts for, when
//! the caller authenticated that principal itself — the MCP gateway, for
//! an MCP client that presented an OAuth access token. The gate records it
//! in the receipt (`derived.caller.on_behalf_of`) beside the caller that
//! asked, and policies see it there; it grants nothing: the caller still
//! speaks only for its own actors.

use serde::{Deserialize, Serialize};

/// The header's name.
pub const ON_BEHALF_OF_HEADER: &str = "tollgate-on-behalf-of";
/// How the principal authenticated to the caller: an OAuth 2.1 access token.
pub const VIA_OAUTH: &str = "oauth";
/// The longest issuer, subject or client recorded.
pub const MAX_PRINCIPAL_CHARS: usize = 512;

/// Who a caller acts for (the header's value is this as compact JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnBehalfOf {
    /// How the principal authenticated: [`VIA_OAUTH`].
    pub via: String,
    /// The token's issuer (`iss`).
    pub issuer: String,
    /// The token's subject (`sub`).
    pub subject: String,
    /// The OAuth client the token was issued to (`client_id`), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl OnBehalfOf {
    /// An OAuth principal; `Err` names a value that cannot be recorded.
    ///
    /// # Errors
    ///
    /// A value that is empty, longer than [`MAX_PRINCIPAL_CHARS`], or not
    /// printable ASCII (header values are).
    pub fn oauth(issuer: &str, subject: &str, client: Option<&str>) -> Result<OnBehalfOf, String> {
        let p = OnBehalfOf {
            via: VIA_OAUTH.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            client: client.map(str::to_string),
        };
        p.check()?;
        Ok(p)
    }

    /// Parses and checks the header's value.
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn parse_header(value: &str) -> Result<OnBehalfOf, String> {
        let p: OnBehalfOf = serde_json::from_str(value)
            .map_err(|e| format!("{ON_BEHALF_OF_HEADER}: not the principal's JSON: {e}"))?;
        p.check()?;
        Ok(p)
    }

    /// The header's value: compact JSON (printable ASCII, as checked).
    #[must_use]
    pub fn header_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), String> {
        if self.via != VIA_OAUTH {
            return Err(format!(
                "{ON_BEHALF_OF_HEADER}: via {:?}: only {VIA_OAUTH:?} is known",
                self.via
            ));
        }
        let fields = [
            ("issuer", Some(&self.issuer)),
            ("subject", Some(&self.subject)),
        ];
        for (name, value) in fields.into_iter().chain([("client", self.client.as_ref())]) {
            let Some(v) = value else { continue };
            if v.is_empty()
                || v.len() > MAX_PRINCIPAL_CHARS
                || !v
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                return Err(format!(
                    "{ON_BEHALF_OF_HEADER}: {name} must be 1 to {MAX_PRINCIPAL_CHARS} printable \
                     ASCII characters without quotes or backslashes"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_round_trips_through_its_header() {
        let p = OnBehalfOf::oauth("https://as.example", "user-7", Some("desktop")).unwrap();
        assert_eq!(
            p.header_value(),
            r#"{"via":"oauth","issuer":"https://as.example","subject":"user-7","client":"desktop"}"#
        );
        assert_eq!(OnBehalfOf::parse_header(&p.header_value()).unwrap(), p);
    }

    #[test]
    fn what_a_header_cannot_carry_or_the_gate_does_not_know_is_refused() {
        assert!(OnBehalfOf::oauth("https://as.example", "", None).is_err());
        assert!(OnBehalfOf::oauth("https://as.example", "jörg", None).is_err());
        assert!(OnBehalfOf::oauth("https://as.example", "a\"b", None).is_err());
        assert!(OnBehalfOf::oauth(&"x".repeat(513), "s", None).is_err());
        for bad in [
            r#"{"via":"saml","issuer":"i","subject":"s"}"#,
            r#"{"via":"oauth","issuer":"i","subject":"s","roles":["admin"]}"#,
            r#"{"via":"oauth","issuer":"i"}"#,
            "oauth",
        ] {
            assert!(OnBehalfOf::parse_header(bad).is_err(), "{bad}");
        }
    }
}
