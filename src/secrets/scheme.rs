//! Which secret-management scheme a repository already uses, so that the
//! fix a finding suggests is the one its owners would write: a sops-nix
//! repository is told about `config.sops.secrets.<name>.path`, not secrix.

use std::sync::OnceLock;

use regex::Regex;

use crate::git::{BStr, Snapshot};

/// A repository's way of deploying secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Secrix,
    SopsNix,
    Agenix,
    ClanVars,
    /// None found: the advice lists the common ones.
    Unknown,
}

impl Scheme {
    /// Looks at the flake's inputs and at the files each scheme keeps.
    pub fn detect(snapshot: &Snapshot, flake_dir: &str) -> Scheme {
        let join = |name: &str| {
            if flake_dir.is_empty() {
                name.to_string()
            } else {
                format!("{flake_dir}/{name}")
            }
        };
        let flake = snapshot
            .read(BStr::new(&join("flake.nix")))
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let input = |name: &str| {
            Regex::new(&format!(
                r"(?m)(^|[^A-Za-z0-9_-]){}([^A-Za-z0-9_-]|$)",
                regex::escape(name)
            ))
            .is_ok_and(|r| r.is_match(&flake))
        };
        if input("secrix") {
            Scheme::Secrix
        } else if input("clan-core") {
            Scheme::ClanVars
        } else if input("sops-nix") || snapshot.get(BStr::new(&join(".sops.yaml"))).is_some() {
            Scheme::SopsNix
        } else if input("agenix") || input("ragenix") || input("agenix-rekey") {
            Scheme::Agenix
        } else {
            Scheme::Unknown
        }
    }

    /// `text` (a rule's fix, written for secrix) in this scheme's terms.
    pub fn adapt(self, text: &str) -> String {
        let (name, decl, path) = match self {
            Scheme::Secrix => return text.to_string(),
            Scheme::Unknown => {
                return if text.contains("secrix") {
                    format!(
                        "{text} (with sops-nix: `config.sops.secrets.<name>.path`; \
                         with agenix: `config.age.secrets.<name>.path`)"
                    )
                } else {
                    text.to_string()
                };
            }
            Scheme::SopsNix => (
                "sops-nix",
                "sops.secrets.<name> = { };",
                "config.sops.secrets.<name>.path",
            ),
            Scheme::Agenix => (
                "agenix",
                "age.secrets.<name>.file = ./secrets/<name>.age;",
                "config.age.secrets.<name>.path",
            ),
            Scheme::ClanVars => (
                "clan vars",
                "clan.core.vars.generators.<gen>.files.<name> = { };",
                "config.clan.core.vars.generators.<gen>.files.<name>.path",
            ),
        };
        let mut out = text.to_string();
        for (re, with) in patterns().iter().zip([path, decl, decl, path, path]) {
            out = re.replace_all(&out, regex::NoExpand(with)).into_owned();
        }
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        out.replace("age-encrypted secrix", name)
            .replace("a secrix", &format!("{article} {name}"))
            .replace("secrix", name)
    }
}

/// The secrix option paths the fix texts use, most specific first; replaced
/// by (path, declaration, declaration, path, path).
fn patterns() -> &'static [Regex; 5] {
    static P: OnceLock<[Regex; 5]> = OnceLock::new();
    P.get_or_init(|| {
        [
            r"config\.secrix\.(?:services\.<svc>|system)\.secrets\.<name>\.decrypted\.path",
            r"secrix\.services\.<svc>\.secrets\.<name>\.encrypted\.file(?: = \./secrets/<name>\.age;)?",
            r"…encrypted\.file",
            r"…decrypted\.path",
            r"decrypted\.path",
        ]
        .map(|p| Regex::new(p).expect("a valid built-in pattern"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::scan::rules::FIX_SECRIX;

    #[test]
    fn fixes_speak_the_repository_scheme() {
        let sops = Scheme::SopsNix.adapt(FIX_SECRIX);
        assert!(!sops.contains("secrix"), "{sops}");
        assert!(sops.contains("`config.sops.secrets.<name>.path`"), "{sops}");
        assert!(sops.contains("`sops.secrets.<name> = { };`"), "{sops}");
        let age = Scheme::Agenix
            .adapt("store it as a secrix secret and point it at a secrix `decrypted.path`");
        assert_eq!(
            age,
            "store it as an agenix secret and point it at an agenix `config.age.secrets.<name>.path`"
        );
        assert_eq!(Scheme::Secrix.adapt(FIX_SECRIX), FIX_SECRIX);
        let none = Scheme::Unknown.adapt(FIX_SECRIX);
        assert!(
            none.contains("sops-nix") && none.contains("agenix"),
            "{none}"
        );
    }
}
