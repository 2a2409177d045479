//! C2SP tlog-policy: which logs are trusted and which witness cosignatures
//! make a quorum.

use std::collections::HashSet;

use crate::{Checkpoint, Error, KeyType, Note, VerifierKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug)]
struct Witness {
    name: String,
    key: VerifierKey,
    url: Option<String>,
}

#[derive(Clone, Debug)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// A parsed trust policy.
#[derive(Clone, Debug)]
pub struct Policy {
    logs: Vec<(VerifierKey, Option<String>)>,
    witnesses: Vec<Witness>,
    groups: Vec<Group>,
    /// `None` is `quorum none`.
    quorum: Option<Member>,
}

impl Policy {
    /// A policy trusting one log and requiring no cosignatures (`quorum none`).
    #[must_use]
    pub fn for_log(log: VerifierKey) -> Policy {
        Policy {
            logs: vec![(log, None)],
            witnesses: vec![],
            groups: vec![],
            quorum: None,
        }
    }

    /// Parses a policy file (tlog-policy §Policy file syntax and structure).
    /// Names are compared as exact strings; the file must be UTF-8.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedPolicy`] naming the line and the problem.
    pub fn parse(text: &str) -> Result<Policy, Error> {
        let mut p = Policy {
            logs: vec![],
            witnesses: vec![],
            groups: vec![],
            quorum: None,
        };
        let mut quorum_seen = false;
        for (i, raw) in text.split('\n').enumerate() {
            let bad = |reason: String| Error::MalformedPolicy {
                line: i + 1,
                reason,
            };
            // §Character set: only tab and newline among control characters.
            if raw.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(bad("control character".into()));
            }
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let Some((&keyword, args)) = words.split_first() else {
                continue;
            };
            if keyword.starts_with('#') {
                continue;
            }
            match (keyword, args) {
                ("log", [vkey, rest @ ..]) if rest.len() <= 1 => {
                    let key = parse_key(vkey, KeyType::Ed25519).map_err(bad)?;
                    if p.logs
                        .iter()
                        .any(|(k, _)| k.public_key() == key.public_key())
                    {
                        return Err(bad("duplicate log key".into()));
                    }
                    p.logs.push((key, rest.first().map(|u| (*u).to_string())));
                }
                ("witness", [name, vkey, rest @ ..]) if rest.len() <= 1 => {
                    p.check_new_name(name).map_err(bad)?;
                    let key = parse_key(vkey, KeyType::CosignatureV1).map_err(bad)?;
                    if p.witnesses
                        .iter()
                        .any(|w| w.key.public_key() == key.public_key())
                    {
                        return Err(bad("duplicate witness key".into()));
                    }
                    let url = rest.first().map(|u| (*u).to_string());
                    p.witnesses.push(Witness {
                        name: (*name).to_string(),
                        key,
                        url,
                    });
                }
                ("group", [name, k, members @ ..]) if !members.is_empty() => {
                    p.check_new_name(name).map_err(bad)?;
                    let mut list = Vec::new();
                    for m in members {
                        let member = p
                            .lookup(m)
                            .ok_or_else(|| bad(format!("{m:?} is not defined above")))?;
                        if list.contains(&member) {
                            return Err(bad(format!("{m:?} is listed twice")));
                        }
                        list.push(member);
                    }
                    let n = list.len();
                    let threshold = match *k {
                        "all" => n,
                        "any" => 1,
                        k => k
                            .parse::<usize>()
                            .ok()
                            .filter(|t| (1..=n).contains(t) && !k.starts_with('0'))
                            .ok_or_else(|| {
                                bad(format!("threshold {k:?} is not all, any or 1..={n}"))
                            })?,
                    };
                    p.groups.push(Group {
                        name: (*name).to_string(),
                        threshold,
                        members: list,
                    });
                }
                ("quorum", [name]) => {
                    if quorum_seen {
                        return Err(bad("a second quorum line".into()));
                    }
                    quorum_seen = true;
                    if *name != "none" {
                        p.quorum = Some(
                            p.lookup(name)
                                .ok_or_else(|| bad(format!("{name:?} is not defined above")))?,
                        );
                    }
                }
                ("log" | "witness" | "group" | "quorum", _) => {
                    return Err(bad(format!("wrong number of fields for {keyword}")));
                }
                _ => return Err(bad(format!("unknown keyword {keyword:?}"))),
            }
        }
        if !quorum_seen {
            return Err(Error::MalformedPolicy {
                line: 0,
                reason: "no quorum line".into(),
            });
        }
        Ok(p)
    }

    fn check_new_name(&self, name: &str) -> Result<(), String> {
        if name == "none" || self.lookup(name).is_some() {
            return Err(format!("name {name:?} is reserved or already defined"));
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Member> {
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(Member::Witness(i));
        }
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(Member::Group)
    }

    /// The trusted log keys.
    pub fn log_keys(&self) -> impl Iterator<Item = &VerifierKey> {
        self.logs.iter().map(|(k, _)| k)
    }

    /// The witnesses: (policy name, key, URL).
    pub fn witnesses(&self) -> impl Iterator<Item = (&str, &VerifierKey, Option<&str>)> {
        self.witnesses
            .iter()
            .map(|w| (w.name.as_str(), &w.key, w.url.as_deref()))
    }

    fn witnessed(&self, m: Member, cosigned: &HashSet<usize>) -> bool {
        match m {
            Member::Witness(i) => cosigned.contains(&i),
            Member::Group(g) => {
                let g = &self.groups[g];
                g.members
                    .iter()
                    .filter(|&&m| self.witnessed(m, cosigned))
                    .count()
                    >= g.threshold
            }
        }
    }

    /// Whether cosignatures from the witnesses with these vkeys meet the quorum.
    #[must_use]
    pub fn quorum_met<'a>(&self, cosigners: impl IntoIterator<Item = &'a VerifierKey>) -> bool {
        let set: HashSet<usize> = cosigners
            .into_iter()
            .filter_map(|k| self.witnesses.iter().position(|w| &w.key == k))
            .collect();
        self.quorum.is_none_or(|q| self.witnessed(q, &set))
    }

    /// Verifies a signed checkpoint under this policy: signed by a listed log
    /// whose key name is the origin, and cosigned by witnesses meeting the
    /// quorum. A cosignature by a listed witness that fails to verify rejects
    /// the note (signed-note §Signatures).
    ///
    /// # Errors
    ///
    /// Any parse or signature failure, or [`Error::QuorumNotMet`].
    pub fn verify_checkpoint(&self, signed: &[u8]) -> Result<(Checkpoint, Note), Error> {
        let note = Note::parse(signed)?;
        let checkpoint = Checkpoint::parse(note.text())?;
        let logs: Vec<VerifierKey> = self
            .log_keys()
            .filter(|k| k.name() == checkpoint.origin)
            .cloned()
            .collect();
        if logs.is_empty() {
            return Err(Error::WrongKey(format!(
                "no trusted log has origin {:?}",
                checkpoint.origin
            )));
        }
        note.verify(&logs)?;
        let keys: Vec<VerifierKey> = self.witnesses.iter().map(|w| w.key.clone()).collect();
        let cosigners: Vec<VerifierKey> = match note.verify(&keys) {
            Ok(v) => v.into_iter().map(|v| v.key.clone()).collect(),
            Err(Error::UnverifiedNote) => Vec::new(),
            Err(e) => return Err(e),
        };
        if !self.quorum_met(&cosigners) {
            let names: Vec<&str> = cosigners.iter().map(VerifierKey::name).collect();
            return Err(Error::QuorumNotMet(format!(
                "{} valid cosignature(s) ({}) do not satisfy the policy",
                names.len(),
                names.join(", ")
            )));
        }
        Ok((checkpoint, note))
    }
}

fn parse_key(vkey: &str, want: KeyType) -> Result<VerifierKey, String> {
    let key = VerifierKey::parse(vkey).map_err(|e| e.to_string())?;
    if key.kind() != want {
        return Err(format!(
            "key {} has signature type {:#04x}, want {:#04x}",
            key.name(),
            key.kind().byte(),
            want.byte()
        ));
    }
    Ok(key)
}
