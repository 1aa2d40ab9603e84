//! `guard secrets`: the age/secrix/agenix checks of a change (or of
//! everything), identity leaks in the change, and the optional decrypt
//! proof. The analyses live in `crate::secrets::age`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::Context;
use super::pipeline::Pipeline;
use crate::cli::{Format, Selector};
use crate::git;
use crate::report::{self, Report};
use crate::secrets::age::{self, Identity};
use crate::secrets::scan::Scanner;

/// The environment variable that may hold an identity's text (how CI
/// passes secrets), used when `--identity` is not given.
pub const IDENTITY_ENV: &str = "GUARD_AGE_IDENTITY";

/// `guard secrets`.
pub fn secrets(
    ctx: &Context,
    selector: &Selector,
    format: Format,
    identity: Option<&Path>,
) -> Result<i32> {
    // Load the identity first: a bad one is a usage error before any work.
    let identity = load_identity(identity)?;
    let sel = selector.resolve(git::Selector::Worktree);
    let p = Pipeline::new(ctx, sel)?.with_age();
    let outcome = p.age()?;
    let changes = &p.changes;
    let mut findings = outcome.findings;
    findings.findings.extend(p.identity_leaks(None)?);
    let leak_rules: Vec<&str> = age::IDENTITY_RULES
        .into_iter()
        .filter(|id| !ctx.config.secrets.disable.iter().any(|d| d == id))
        .collect();

    if let Some(id) = &identity {
        let commit = changes.new.commit().map(|c| c.to_string());
        let (proof, stats) = age::prove(
            &changes.new,
            &outcome.model,
            &outcome.scope,
            id,
            commit.as_deref(),
        )
        .context("decrypting with the identity")?;
        let failed = proof.len();
        findings.findings.extend(proof);
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "decrypt proof: {} secret(s) decrypted with {} ({} plaintext bytes read and discarded), {failed} failed",
            stats.decrypted,
            id.describe(),
            stats.bytes
        )?;
    }

    let report = Report {
        secrets: Some(findings),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => report::write_json(&report, &mut out)?,
        Format::Human => report::write_human(&report, ctx.style, &mut out)?,
        Format::Github => report::write_github(&report, ctx.style, &mut out)?,
        Format::Sarif => {
            let scan = Scanner::with_rules(&ctx.config, &leak_rules)?.rule_infos();
            report::write_sarif(&report, &super::pipeline::rules(scan, None), &mut out)?;
        }
    }
    out.flush()?;
    Ok(report.exit_code())
}

/// The identity from `--identity <file>`, else from $GUARD_AGE_IDENTITY.
fn load_identity(path: Option<&Path>) -> Result<Option<Identity>> {
    let (text, source) = match path {
        Some(p) => (
            zeroize::Zeroizing::new(
                std::fs::read(p)
                    .with_context(|| format!("cannot read the identity file {}", p.display()))?,
            ),
            p.display().to_string(),
        ),
        None => match std::env::var_os(IDENTITY_ENV) {
            Some(v) if !v.is_empty() => (
                zeroize::Zeroizing::new(v.into_encoded_bytes()),
                format!("${IDENTITY_ENV}"),
            ),
            _ => return Ok(None),
        },
    };
    Ok(Some(Identity::parse(&text, &source)?))
}
