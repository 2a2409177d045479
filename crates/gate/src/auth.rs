//! Authentication: a request's credentials → the caller it is, and how
//! (receipts record it). A bearer token (looked up by its SHA-256 among
//! the live callers), else a verified TLS client certificate's subject
//! mapped in `tls_callers`, else on the Unix socket the peer's uid mapped
//! in `unix_callers`; the admin token for the admin API; `public_read` for
//! the read API. Only this service makes an `Authorized` value (with the
//! role checked), which the operations that decide or evaluate take.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::callers::{Authorized, Caller, Callers, Role};
use crate::http::Credentials;
use crate::GateError;

/// Credentials → caller.
pub(crate) struct Authentication {
    admin_token: String,
    public_read: bool,
    /// Client certificate subjects (common names) and the callers they
    /// authenticate as.
    tls_callers: BTreeMap<String, String>,
    /// Unix-socket peer uids and the callers they authenticate as.
    unix_callers: HashMap<u32, String>,
    /// The live callers, by token digest (`callers.rs`).
    pub(crate) callers: Callers,
}

impl Authentication {
    pub(crate) fn new(
        admin_token: String,
        public_read: bool,
        tls_callers: BTreeMap<String, String>,
        unix_callers: HashMap<u32, String>,
        callers: Callers,
    ) -> Authentication {
        Authentication {
            admin_token,
            public_read,
            tls_callers,
            unix_callers,
            callers,
        }
    }

    /// The caller a request authenticates as, if it holds `role`, and how.
    ///
    /// # Errors
    ///
    /// [`GateError::Unauthorized`] saying what is missing: no credential, a
    /// token that is no live caller's, an unmapped uid or subject;
    /// [`GateError::Forbidden`] for a caller without `role`.
    pub(crate) fn authenticate(
        &self,
        creds: &Credentials,
        role: Role,
    ) -> Result<(Arc<Caller>, &'static str), GateError> {
        Ok(self.authorize(creds, role)?.into_parts())
    }

    /// [`Authentication::authenticate`], as the value the operations that
    /// decide or evaluate take, with the principal the caller says it acts
    /// for (`Tollgate-On-Behalf-Of`) if it says one.
    ///
    /// # Errors
    ///
    /// As [`Authentication::authenticate`]; [`GateError::BadInput`] for a
    /// malformed principal.
    pub(crate) fn authorize(
        &self,
        creds: &Credentials,
        role: Role,
    ) -> Result<Authorized, GateError> {
        let (caller, via) = self.identify(creds, Some(role))?;
        let who = Authorized::new(caller, via, role)?;
        match &creds.on_behalf_of {
            None => Ok(who),
            Some(header) => protocol::OnBehalfOf::parse_header(header)
                .map(|p| who.on_behalf_of(p))
                .map_err(GateError::BadInput),
        }
    }

    /// Caller `name` as it is now (a gateway running the gate in its own
    /// process: a revocation or a role taken away binds the next call),
    /// authorized for `role`.
    ///
    /// # Errors
    ///
    /// [`GateError::Unauthorized`] if no live caller has that name;
    /// [`GateError::Forbidden`] if it lacks `role`.
    pub(crate) fn in_process(&self, name: &str, role: Role) -> Result<Authorized, GateError> {
        let caller = self.callers.live(name).ok_or_else(|| {
            GateError::Unauthorized(format!("caller {name:?} is no longer live (revoked)"))
        })?;
        Authorized::new(caller, protocol::VIA_IN_PROCESS, role)
    }

    /// The live caller whose token this is (a gateway in this process that
    /// authenticates its own clients by their tokens), authorized for `role`.
    ///
    /// # Errors
    ///
    /// As [`Authentication::in_process`].
    pub(crate) fn by_token(&self, token: &str, role: Role) -> Result<Authorized, GateError> {
        let caller = self.callers.authenticate(token).ok_or_else(|| {
            GateError::Unauthorized("the token is no longer a live caller's".into())
        })?;
        Authorized::new(caller, protocol::VIA_IN_PROCESS, role)
    }

    /// Who makes an admin call (`admin-token`, or `caller:<name>` with the
    /// `admin` role), for the log's governance entries.
    ///
    /// # Errors
    ///
    /// [`GateError::Unauthorized`] or [`GateError::Forbidden`].
    pub(crate) fn admin(&self, creds: &Credentials) -> Result<String, GateError> {
        if creds
            .bearer
            .as_ref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.admin_token.as_bytes())))
        {
            return Ok("admin-token".into());
        }
        match self.authenticate(creds, Role::Admin) {
            Ok((caller, _)) => Ok(format!("caller:{}", caller.name)),
            Err(e) => {
                tracing::warn!("admin call refused: {e}");
                Err(e)
            }
        }
    }

    /// Whether the request may read what reveals decisions: a caller with
    /// `read`, or anyone with `public_read = true`.
    ///
    /// # Errors
    ///
    /// As [`Authentication::authenticate`].
    pub(crate) fn may_read(&self, creds: &Credentials) -> Result<(), GateError> {
        if self.public_read {
            return Ok(());
        }
        self.authenticate(creds, Role::Read).map(|_| ())
    }

    /// The caller a request authenticates as, whatever its roles, and how;
    /// `role` is the one the route needs, for the error without a credential.
    pub(crate) fn identify(
        &self,
        creds: &Credentials,
        role: Option<Role>,
    ) -> Result<(Arc<Caller>, &'static str), GateError> {
        Ok(match (&creds.bearer, creds.peer_uid) {
            (Some(token), _) => {
                let caller = self.callers.authenticate(token).ok_or_else(|| {
                    GateError::Unauthorized(
                        "the token is not a live caller's (wrong, rotated or revoked)".into(),
                    )
                })?;
                (caller, protocol::VIA_TOKEN)
            }
            (None, _) if creds.tls_subject.is_some() => {
                let cn = creds.tls_subject.as_deref().unwrap_or_default();
                let name = self.tls_callers.get(cn).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "no bearer token, and the client certificate's subject {cn:?} is \
                         mapped to no caller (tls_callers)"
                    ))
                })?;
                let caller = self.callers.live(name).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "subject {cn:?} is mapped to caller {name:?}, which does not exist or is revoked"
                    ))
                })?;
                (caller, protocol::VIA_MTLS)
            }
            (None, Some(uid)) => {
                let name = self.unix_callers.get(&uid).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "no bearer token, and the socket peer's uid {uid} is mapped to no \
                         caller (unix_callers)"
                    ))
                })?;
                let caller = self.callers.live(name).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "uid {uid} is mapped to caller {name:?}, which does not exist or is revoked"
                    ))
                })?;
                (caller, protocol::VIA_PEER_UID)
            }
            (None, None) => {
                let needed = role.map_or_else(String::new, |r| format!(" with the {r} role"));
                return Err(GateError::Unauthorized(format!(
                    "no bearer token: this route needs a caller{needed} \
                     (Authorization: Bearer <token>)"
                )));
            }
        })
    }
}
