//! Token formats of providers with a recognisable shape: a fixed prefix
//! (the prefilter keyword, so a rule costs nothing on lines without it)
//! followed by a body of known alphabet and length. Written from the
//! providers' published token formats; every rule has a synthetic sample
//! and a look-alike in the unit tests (`provider_rules_find_their_shape`).
//!
//! All rules here are line rules of priority 3 (they win over the
//! name-based rules on the same span) checked by [`Check::Token`]: not a
//! placeholder, and random enough to be generated.

use super::rules::{Check, Kind, RuleDef};
use crate::report::Severity;

const FIX: &str = "revoke the token at the provider, then store the new one as a secrix \
secret (`secrix.services.<svc>.secrets.<name>.encrypted.file`) and reference its \
`…decrypted.path` (or an `EnvironmentFile`/`*File` option)";

/// One provider rule: a credential of `title`, found by `pattern` (secret in
/// group `s`) on lines holding one of `keywords`.
const fn token(
    id: &'static str,
    title: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
) -> RuleDef {
    RuleDef {
        id,
        severity: Severity::Error,
        title,
        description: title,
        fix: FIX,
        kind: Kind::Line,
        keywords,
        pattern,
        check: Check::Token,
        priority: 3,
    }
}

// `(?:^|[^A-Za-z0-9_])` before and `(?:[^A-Za-z0-9_]|$)` after a token keep a
// prefix inside a longer identifier from matching.
macro_rules! bounded {
    ($body:literal) => {
        concat!(r"(?:^|[^A-Za-z0-9_])(?P<s>", $body, r")(?:[^A-Za-z0-9_]|$)")
    };
}

/// Every provider rule.
pub(crate) const PROVIDERS: &[RuleDef] = &[
    // ------------------------------------------------------------ cloud
    token(
        "gcp-api-key",
        "Google Cloud / Firebase API key",
        &["aiza"],
        bounded!(r"AIza[0-9A-Za-z_-]{35}"),
    ),
    token(
        "gcp-oauth-client-secret",
        "Google OAuth client secret",
        &["gocspx-"],
        bounded!(r"GOCSPX-[0-9A-Za-z_-]{28}"),
    ),
    token(
        "azure-storage-key",
        "Azure storage account key in a connection string",
        &["accountkey="],
        r"(?i:AccountKey)=(?P<s>[A-Za-z0-9+/]{86}==)",
    ),
    token(
        "alibaba-access-key-id",
        "Alibaba Cloud access key id",
        &["ltai"],
        bounded!(r"LTAI[A-Za-z0-9]{20}"),
    ),
    token(
        "cloudflare-origin-ca-key",
        "Cloudflare Origin CA key",
        &["v1.0-"],
        bounded!(r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}"),
    ),
    token(
        "flyio-token",
        "Fly.io access token",
        &["fm1_", "fm2_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3})",
    ),
    token(
        "heroku-api-key",
        "Heroku platform API key",
        &["hrku-"],
        bounded!(r"HRKU-AA[0-9A-Za-z_-]{58}"),
    ),
    token(
        "databricks-token",
        "Databricks personal access token",
        &["dapi"],
        bounded!(r"dapi[a-f0-9]{32}(?:-[0-9])?"),
    ),
    token(
        "scalingo-token",
        "Scalingo API token",
        &["tk-us-"],
        bounded!(r"tk-us-[A-Za-z0-9_-]{48}"),
    ),
    // ------------------------------------------- CI, forges, registries
    token(
        "bitbucket-app-password",
        "Bitbucket / Atlassian app password",
        &["atbb"],
        bounded!(r"ATBB[A-Za-z0-9_=.-]{32}"),
    ),
    token(
        "atlassian-api-token",
        "Atlassian API token",
        &["atatt3"],
        bounded!(r"ATATT3[A-Za-z0-9_=-]{180,190}"),
    ),
    token(
        "circleci-token",
        "CircleCI personal API token",
        &["ccipat_"],
        bounded!(r"CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}"),
    ),
    token(
        "npm-token",
        "npm access token",
        &["npm_"],
        bounded!(r"npm_[A-Za-z0-9]{36}"),
    ),
    token(
        "pypi-token",
        "PyPI upload token",
        &["pypi-ageichlwas5vcmc"],
        bounded!(r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    ),
    token(
        "rubygems-api-key",
        "RubyGems API key",
        &["rubygems_"],
        bounded!(r"rubygems_[a-f0-9]{48}"),
    ),
    token(
        "clojars-token",
        "Clojars deploy token",
        &["clojars_"],
        bounded!(r"CLOJARS_[a-z0-9]{60}"),
    ),
    token(
        "nuget-api-key",
        "NuGet API key",
        &["oy2"],
        bounded!(r"oy2[a-z0-9]{43}"),
    ),
    token(
        "docker-hub-token",
        "Docker Hub personal access token",
        &["dckr_pat_", "dckr_oat_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,32})(?:[^A-Za-z0-9_-]|$)",
    ),
    token(
        "artifactory-api-key",
        "JFrog Artifactory API key",
        &["akcp"],
        bounded!(r"AKCp[A-Za-z0-9]{69}"),
    ),
    token(
        "hashicorp-vault-token",
        "HashiCorp Vault service or batch token",
        &["hvs.", "hvb."],
        r"(?:^|[^A-Za-z0-9_])(?P<s>hv[sb]\.[A-Za-z0-9_-]{90,})",
    ),
    token(
        "terraform-cloud-token",
        "Terraform Cloud / Enterprise API token",
        &["atlasv1"],
        bounded!(r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}"),
    ),
    token(
        "doppler-token",
        "Doppler token",
        &[
            "dp.pt.",
            "dp.st.",
            "dp.ct.",
            "dp.sa.",
            "dp.scim.",
            "dp.audit.",
        ],
        bounded!(r"dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,44}"),
    ),
    token(
        "pulumi-token",
        "Pulumi access token",
        &["pul-"],
        bounded!(r"pul-[a-f0-9]{40}"),
    ),
    token(
        "sourcegraph-token",
        "Sourcegraph access token",
        &["sgp_"],
        bounded!(r"sgp_(?:[a-fA-F0-9]{16}_)?[a-fA-F0-9]{40}"),
    ),
    token(
        "prefect-api-key",
        "Prefect API key",
        &["pnu_"],
        bounded!(r"pnu_[A-Za-z0-9]{36}"),
    ),
    token(
        "infracost-api-key",
        "Infracost API key",
        &["ico-"],
        bounded!(r"ico-[A-Za-z0-9]{32}"),
    ),
    token(
        "onepassword-service-account-token",
        "1Password service account token",
        &["ops_eyj"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>ops_eyJ[A-Za-z0-9+/=_-]{250,})",
    ),
    // ------------------------------------------------- monitoring, SaaS
    token(
        "grafana-token",
        "Grafana Cloud or service account token",
        &["glc_", "glsa_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})(?:[^A-Za-z0-9_+/=]|$)",
    ),
    token(
        "newrelic-api-key",
        "New Relic user API key",
        &["nrak-"],
        bounded!(r"NRAK-[A-Z0-9]{27}"),
    ),
    token(
        "sentry-token",
        "Sentry auth token",
        &["sntrys_", "sntryu_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>sntrys_eyJ[A-Za-z0-9+/=_-]{60,}|sntryu_[a-f0-9]{64})(?:[^A-Za-z0-9_+/=-]|$)",
    ),
    token(
        "dynatrace-token",
        "Dynatrace API token",
        &["dt0c01."],
        bounded!(r"dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}"),
    ),
    token(
        "postman-api-key",
        "Postman API key",
        &["pmak-"],
        bounded!(r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    ),
    token(
        "linear-api-key",
        "Linear API key",
        &["lin_api_"],
        bounded!(r"lin_api_[A-Za-z0-9]{40}"),
    ),
    token(
        "notion-token",
        "Notion integration token",
        &["ntn_"],
        bounded!(r"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    ),
    token(
        "readme-api-key",
        "ReadMe API key",
        &["rdme_"],
        bounded!(r"rdme_[a-z0-9]{70}"),
    ),
    token(
        "typeform-token",
        "Typeform personal access token",
        &["tfp_"],
        bounded!(r"tfp_[A-Za-z0-9_.=-]{59}"),
    ),
    token(
        "planetscale-token",
        "PlanetScale token or password",
        &["pscale_tkn_", "pscale_pw_", "pscale_oauth_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64})(?:[^A-Za-z0-9_.=-]|$)",
    ),
    token(
        "supabase-key",
        "Supabase access token or secret key",
        &["sbp_", "sb_secret_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>sbp_[a-f0-9]{40}|sb_secret_[A-Za-z0-9_-]{31,})(?:[^A-Za-z0-9_-]|$)",
    ),
    token(
        "mapbox-secret-token",
        "Mapbox secret access token",
        &["sk.eyj"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>sk\.eyJ[A-Za-z0-9_-]{50,}\.[A-Za-z0-9_-]{20,})",
    ),
    // ----------------------------------------------------- chat, email
    token(
        "discord-webhook",
        "Discord webhook URL",
        &["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"],
        r"(?P<s>https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,})",
    ),
    token(
        "teams-webhook",
        "Microsoft Teams incoming webhook URL",
        &["webhook.office.com/webhookb2/"],
        r"(?P<s>https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[a-f0-9-]{36}@[a-f0-9-]{36}/IncomingWebhook/[A-Za-z0-9]{32}/[a-f0-9-]{36}(?:/[A-Za-z0-9_-]+)?)",
    ),
    token(
        "sendgrid-api-key",
        "SendGrid API key",
        &["sg."],
        bounded!(r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    ),
    token(
        "mailchimp-api-key",
        "Mailchimp API key",
        &["-us"],
        bounded!(r"[a-f0-9]{32}-us[0-9]{1,2}"),
    ),
    // ---------------------------------------------------------- payment
    token(
        "stripe-key",
        "Stripe secret or restricted key",
        &["sk_live_", "rk_live_", "sk_test_", "rk_test_"],
        bounded!(r"[sr]k_(?:live|test)_[A-Za-z0-9]{24,247}"),
    ),
    token(
        "stripe-webhook-secret",
        "Stripe webhook signing secret",
        &["whsec_"],
        bounded!(r"whsec_[A-Za-z0-9]{32,}"),
    ),
    token(
        "square-token",
        "Square access token or OAuth secret",
        &["sq0atp-", "sq0csp-"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>sq0atp-[0-9A-Za-z_-]{22}|sq0csp-[0-9A-Za-z_-]{43})(?:[^A-Za-z0-9_-]|$)",
    ),
    token(
        "braintree-token",
        "Braintree / PayPal production access token",
        &["access_token$production$"],
        r"(?P<s>access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32})",
    ),
    token(
        "shopify-token",
        "Shopify access token or shared secret",
        &["shpat_", "shpca_", "shppa_", "shpss_"],
        bounded!(r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ),
    token(
        "easypost-api-key",
        "EasyPost API key",
        &["ezak"],
        bounded!(r"EZAK[a-z0-9]{54}"),
    ),
    token(
        "flutterwave-secret-key",
        "Flutterwave secret key",
        &["flwseck"],
        bounded!(r"FLWSECK(?:_TEST)?-[a-h0-9]{32}-X"),
    ),
    token(
        "duffel-token",
        "Duffel API token",
        &["duffel_test_", "duffel_live_"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>duffel_(?:test|live)_[A-Za-z0-9_=-]{43})(?:[^A-Za-z0-9_=-]|$)",
    ),
    token(
        "shippo-token",
        "Shippo API token",
        &["shippo_live_", "shippo_test_"],
        bounded!(r"shippo_(?:live|test)_[a-f0-9]{40}"),
    ),
    // ------------------------------------------------------ AI providers
    token(
        "openai-api-key",
        "OpenAI API key",
        &["t3blbkfj"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,74}T3BlbkFJ[A-Za-z0-9_-]{20,74})(?:[^A-Za-z0-9_-]|$)",
    ),
    token(
        "anthropic-api-key",
        "Anthropic API key",
        &["sk-ant-"],
        r"(?:^|[^A-Za-z0-9_])(?P<s>sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA)(?:[^A-Za-z0-9_-]|$)",
    ),
    token(
        "huggingface-token",
        "Hugging Face access token",
        &["hf_"],
        bounded!(r"hf_[A-Za-z]{34}"),
    ),
    token(
        "groq-api-key",
        "Groq API key",
        &["gsk_"],
        bounded!(r"gsk_[A-Za-z0-9]{52}"),
    ),
    token(
        "replicate-token",
        "Replicate API token",
        &["r8_"],
        bounded!(r"r8_[A-Za-z0-9]{37}"),
    ),
    token(
        "perplexity-api-key",
        "Perplexity API key",
        &["pplx-"],
        bounded!(r"pplx-[A-Za-z0-9]{48}"),
    ),
    token(
        "xai-api-key",
        "xAI API key",
        &["xai-"],
        bounded!(r"xai-[A-Za-z0-9]{80}"),
    ),
    token(
        "openrouter-api-key",
        "OpenRouter API key",
        &["sk-or-v1-"],
        bounded!(r"sk-or-v1-[a-f0-9]{64}"),
    ),
];
