//! The built-in rules of `guard scan`: what each one looks for, how bad it
//! is, and the checks that turn a regex match into a finding (placeholders,
//! public keys, hashes, checksums, entropy).
//!
//! Every rule is *line-local* unless said otherwise: the keyword prefilter
//! finds a line, and the rule's regex runs on that line only. That keeps the
//! cost proportional to the lines that mention a keyword, not to the file.
//! The Nix-aware rule (`nix-password`) instead parses the whole file with
//! rnix, and only when one of its keywords occurs (see `super::nix`).

use crate::report::Severity;

/// How a rule finds candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regex on each line that holds one of the keywords.
    Line,
    /// The Nix AST of `.nix` files whose text holds one of the keywords.
    NixAst,
    /// A regex over the whole file (user rules without keywords).
    File,
}

/// Extra validation of a regex match. The regex finds the shape; the check
/// decides whether it is a secret (or says where the secret really ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// No check beyond "not a placeholder".
    Plain,
    /// A provider token: not a placeholder, and random enough to have been
    /// generated (a documentation `npm_aaaa…` is not).
    Token,
    /// A JWT: header and payload must decode to JSON objects.
    Jwt,
    /// `AGE-SECRET-KEY-1…`: Bech32 checksum must be valid.
    AgeKey,
    /// A PEM block header: a base64 body must follow; the secret spans the
    /// whole block (so two different keys get different fingerprints).
    PemBlock,
    /// A WireGuard key: 32 bytes of canonical base64.
    WgKey,
    /// A Nix signing secret key `name:base64(64 bytes)`.
    NixSigningKey,
    /// `name = value` where the name must say "secret" (suffix list) and
    /// the value must be a literal, not a reference or placeholder.
    SecretName,
    /// A name that mentions a secret and a value with high entropy.
    HighEntropy,
    /// `scheme://user:password@host`.
    BasicAuth,
    /// Crypt(3) hash.
    CryptHash,
    /// The rule only applies in files whose name contains `netrc`.
    NetrcFile,
}

/// One built-in rule (a rule id may have several entries: several shapes
/// of the same secret).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleDef {
    pub id: &'static str,
    pub severity: Severity,
    /// One line: what was found.
    pub title: &'static str,
    /// Why it matters, for SARIF's fullDescription.
    pub description: &'static str,
    /// How to fix it (the generic allow hint is appended by the scanner).
    pub fix: &'static str,
    pub kind: Kind,
    /// ASCII, matched case-insensitively by the prefilter.
    pub keywords: &'static [&'static str],
    /// `(?P<s>…)` (or `s2`, `s3`) is the secret; `(?P<n>…)` the name, if any.
    pub pattern: &'static str,
    pub check: Check,
    /// When two findings overlap, the higher priority wins (a GitHub token
    /// in `token = "ghp_…"` is a github-token, not a nix-password).
    pub priority: u8,
}

/// Fix hint for plaintext values in configuration.
pub(crate) const FIX_SECRIX: &str = "move the value into a secrix secret \
(`secrix.services.<svc>.secrets.<name>.encrypted.file = ./secrets/<name>.age;`) and point the \
option at `config.secrix.services.<svc>.secrets.<name>.decrypted.path`, or use the option's \
`*File` variant; rotate the value if it was ever pushed";

const FIX_KEY: &str = "remove the key from the repository, rotate it, and deploy it as an \
age-encrypted secrix secret (`…encrypted.file`) read from `…decrypted.path`";

const FIX_TOKEN: &str = "revoke the token at the provider, then store the new one as a secrix \
secret (`secrix.services.<svc>.secrets.<name>.encrypted.file`) and reference its \
`…decrypted.path` (or an `EnvironmentFile`/`*File` option)";

const SECRET_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "psk",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "privatekey",
    "private_key",
    "private-key",
    "secretkey",
    "secret_key",
    "authkey",
    "auth_key",
    "credential",
    "passphrase",
    "pw",
    "authtok",
    "encryptionkey",
    "encryption_key",
    "masterkey",
    "master_key",
    "hmackey",
    "hmac_key",
    "sharedkey",
    "shared_key",
    "licensekey",
    "license_key",
];

/// Every built-in rule.
pub(crate) const BUILTIN: &[RuleDef] = &[
    // ---------------------------------------------------------------- keys
    RuleDef {
        id: "age-secret-key",
        severity: Severity::Error,
        title: "age private key (AGE-SECRET-KEY-1…)",
        description: "An age identity decrypts every secret encrypted to its recipient; it must \
never be committed.",
        fix: FIX_KEY,
        kind: Kind::Line,
        keywords: &["age-secret-key-"],
        pattern: r"(?P<s>AGE-SECRET-KEY-(?:PQ-)?1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58,})",
        check: Check::AgeKey,
        priority: 3,
    },
    RuleDef {
        id: "age-plugin-identity",
        severity: Severity::Warning,
        title: "age plugin identity (AGE-PLUGIN-…)",
        description: "Plugin identities usually point at hardware, but some embed key material.",
        fix: "check that the identity holds no key material; otherwise remove and rotate it",
        kind: Kind::Line,
        keywords: &["age-plugin-"],
        pattern: r"(?P<s>AGE-PLUGIN-[A-Z0-9-]+-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{20,})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "ssh-private-key",
        severity: Severity::Error,
        title: "SSH / PEM private key block",
        description: "A private key block (OpenSSH, RSA, EC, DSA or PKCS#8). SSH host keys \
decrypt every secret encrypted to the host.",
        fix: FIX_KEY,
        kind: Kind::Line,
        keywords: &["private key-----"],
        pattern: r"(?P<s>-----BEGIN (?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----)",
        check: Check::PemBlock,
        priority: 3,
    },
    RuleDef {
        id: "pgp-private-key",
        severity: Severity::Error,
        title: "PGP private key block",
        description: "A PGP secret key (sops and pass use these to decrypt).",
        fix: FIX_KEY,
        kind: Kind::Line,
        keywords: &["pgp private key block"],
        pattern: r"(?P<s>-----BEGIN PGP PRIVATE KEY BLOCK-----)",
        check: Check::PemBlock,
        priority: 3,
    },
    RuleDef {
        id: "wireguard-private-key",
        severity: Severity::Error,
        title: "WireGuard private (or preshared) key",
        description: "A WireGuard private or preshared key: whoever has it can join the mesh as \
this host. Public keys of the same shape are not reported.",
        fix: "generate a new key pair, store the private key as a secrix secret and set \
`privateKeyFile = config.secrix.system.secrets.<name>.decrypted.path;`",
        kind: Kind::Line,
        keywords: &[
            "privatekey",
            "private_key",
            "private-key",
            "private key",
            "presharedkey",
            "preshared_key",
            "preshared-key",
        ],
        pattern: r#"(?i)(?:private|preshared)[_ -]?key["']?[ \t]*[:=][ \t]*["']?(?P<s>[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)"#,
        check: Check::WgKey,
        priority: 3,
    },
    RuleDef {
        id: "nix-signing-key",
        severity: Severity::Error,
        title: "Nix binary-cache signing secret key",
        description: "A `name:base64` Nix signing secret key: whoever has it can sign store paths \
every host trusts.",
        fix: "generate a new key with `nix-store --generate-binary-cache-key`, keep the secret \
half in a secrix secret and point `nix.settings.secret-key-files` at its `decrypted.path`",
        kind: Kind::Line,
        keywords: &["=="],
        pattern: r"(?P<n>[A-Za-z0-9][A-Za-z0-9._-]*):(?P<s>[A-Za-z0-9+/]{85}[AQgw]==)",
        check: Check::NixSigningKey,
        priority: 3,
    },
    // -------------------------------------------------------------- tokens
    RuleDef {
        id: "github-token",
        severity: Severity::Error,
        title: "GitHub token",
        description: "A GitHub personal access, OAuth, app or refresh token.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        pattern: r"(?:^|[^A-Za-z0-9_])(?P<s>(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "gitlab-token",
        severity: Severity::Error,
        title: "GitLab token",
        description: "A GitLab personal, deploy, runner or CI token.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &[
            "glpat-", "gldt-", "glrt-", "glptt-", "glcbt-", "gloas-", "glsoat-", "glft-",
        ],
        pattern: r"(?:^|[^A-Za-z0-9_])(?P<s>gl(?:pat|dt|rt|ptt|cbt|oas|soat|ft)-[A-Za-z0-9_-]{20,})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "aws-access-key-id",
        severity: Severity::Error,
        title: "AWS access key id",
        description: "An AWS access key id; its secret half is usually nearby.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &["akia", "asia", "abia", "acca"],
        pattern: r"(?:^|[^A-Za-z0-9])(?P<s>(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?:[^A-Za-z0-9]|$)",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "aws-secret-access-key",
        severity: Severity::Error,
        title: "AWS secret access key",
        description: "An AWS secret access key.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &[
            "secret_access_key",
            "secretaccesskey",
            "secret-access-key",
            "aws_secret",
            "awssecret",
        ],
        pattern: r#"(?i)(?:aws_?secret_?access_?key|secret_?access_?key|secret-access-key|aws_?secret_?key)["']?[ \t]*[:=][ \t]*["']?(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+]|$)"#,
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "cloudflare-api-token",
        severity: Severity::Error,
        title: "Cloudflare API token or key",
        description: "A Cloudflare API token (40 characters) or global API key (37 hex).",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &[
            "cloudflare",
            "cf_api",
            "cf_dns",
            "cf-api",
            "cf_zone",
            "cfapi",
            "cf_token",
        ],
        pattern: r#"(?i)(?:cloudflare|cf)[a-z0-9_-]*(?:token|key)["']?[ \t]*[:=][ \t]*["']?(?P<s>[A-Za-z0-9_-]{40}|[a-f0-9]{37})(?:[^A-Za-z0-9_-]|$)"#,
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "hetzner-token",
        severity: Severity::Error,
        title: "Hetzner Cloud / DNS API token",
        description: "A Hetzner Cloud (64 characters) or DNS (32 characters) API token.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &["hcloud", "hetzner"],
        pattern: r#"(?i)(?:hcloud|hetzner)[a-z0-9_-]*["']?[ \t]*[:=][ \t]*["']?(?P<s>[A-Za-z0-9]{64}|[A-Za-z0-9]{32})(?:[^A-Za-z0-9]|$)"#,
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "digitalocean-token",
        severity: Severity::Error,
        title: "DigitalOcean token",
        description: "A DigitalOcean personal access, OAuth or refresh token.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &["dop_v1_", "doo_v1_", "dor_v1_"],
        pattern: r"(?P<s>do[opr]_v1_[a-f0-9]{64})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "tailscale-key",
        severity: Severity::Error,
        title: "Tailscale auth / API key",
        description: "A Tailscale auth key, API key or OAuth client secret: it joins machines \
to the tailnet or controls it.",
        fix: "revoke the key in the Tailscale admin console, store the new one as a secrix \
secret and set `services.tailscale.authKeyFile` to its `decrypted.path`",
        kind: Kind::Line,
        keywords: &["tskey-"],
        pattern: r"(?P<s>tskey-(?:[a-z]+-)?[A-Za-z0-9]{6,}-[A-Za-z0-9]{10,})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "slack-token",
        severity: Severity::Error,
        title: "Slack token",
        description: "A Slack bot, user, app or configuration token.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &[
            "xoxb-", "xoxp-", "xoxa-", "xoxe-", "xoxe.", "xoxo-", "xoxr-", "xoxs-",
        ],
        // Real tokens carry numeric team / user ids of 8+ digits
        // (`xoxb-<id>-<id>-<random>`); `xoxp-0-stub-token` does not.
        pattern: r"(?P<s>xox[abeoprs]-(?:[0-9]+-)*[0-9]{8,}-[A-Za-z0-9-]{10,}|xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{100,})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "slack-webhook",
        severity: Severity::Error,
        title: "Slack incoming webhook URL",
        description: "Anyone with the URL can post to the channel.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &["hooks.slack.com"],
        pattern: r"(?P<s>https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,})",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "telegram-bot-token",
        severity: Severity::Error,
        title: "Telegram bot token",
        description: "A Telegram bot token: whoever has it controls the bot.",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &[":aa"],
        pattern: r"(?:^|[^0-9])(?P<s>[0-9]{8,10}:AA[A-Za-z0-9_-]{33})(?:[^A-Za-z0-9_-]|$)",
        check: Check::Plain,
        priority: 3,
    },
    RuleDef {
        id: "jwt",
        severity: Severity::Error,
        title: "JSON Web Token",
        description: "A signed JWT (a bearer credential until it expires).",
        fix: FIX_TOKEN,
        kind: Kind::Line,
        keywords: &["eyj"],
        pattern: r"(?:^|[^A-Za-z0-9_-])(?P<s>eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})",
        check: Check::Jwt,
        priority: 3,
    },
    RuleDef {
        id: "nix-access-token",
        severity: Severity::Error,
        title: "Nix access token (access-tokens = host=token)",
        description: "`nix.settings.access-tokens` / `extraOptions` tokens authenticate Nix to \
forges and caches.",
        fix: "put the `access-tokens = …` line in a secrix secret and include it with \
`nix.extraOptions = \"!include ${config.secrix.system.secrets.<name>.decrypted.path}\";`",
        kind: Kind::Line,
        keywords: &["access-tokens"],
        pattern: r#"access-tokens[ \t]*=[ \t]*(?:\[[ \t]*)?["']?(?P<s>[A-Za-z0-9.-]+=[^\s"';\]]{8,})"#,
        check: Check::Plain,
        priority: 3,
    },
    // --------------------------------------------------- credentials, generic
    RuleDef {
        id: "netrc-credentials",
        severity: Severity::Error,
        title: "netrc password",
        description: "A `machine … login … password …` entry.",
        fix: "keep the netrc in a secrix secret and point `nix.settings.netrc-file` (or the \
tool's option) at its `decrypted.path`",
        kind: Kind::Line,
        keywords: &["machine"],
        pattern: r"(?:^|[\s'\x22])machine[ \t]+\S+(?:[ \t]+login[ \t]+\S+)?[ \t]+password[ \t]+(?P<s>[^\s'\x22]+)",
        check: Check::Plain,
        priority: 2,
    },
    RuleDef {
        id: "netrc-credentials",
        severity: Severity::Error,
        title: "netrc password",
        description: "A `machine … login … password …` entry.",
        fix: "keep the netrc in a secrix secret and point `nix.settings.netrc-file` (or the \
tool's option) at its `decrypted.path`",
        kind: Kind::Line,
        keywords: &["password"],
        pattern: r"^[ \t]*password[ \t]+(?P<s>\S+)",
        check: Check::NetrcFile,
        priority: 2,
    },
    RuleDef {
        id: "basic-auth-url",
        severity: Severity::Error,
        title: "password in a URL (scheme://user:password@host)",
        description: "A URL with embedded basic-auth credentials.",
        fix: "take the credentials out of the URL: most NixOS options have a separate \
`passwordFile`/`credentialsFile` (point it at a secrix `decrypted.path`)",
        kind: Kind::Line,
        keywords: &["://"],
        pattern: r#"[A-Za-z][A-Za-z0-9+.-]{1,20}://(?P<n>[^\s:/@"'<>{}$]{1,64}):(?P<s>[^\s/@"'<>]{3,128})@[A-Za-z0-9.\[_-]"#,
        check: Check::BasicAuth,
        priority: 2,
    },
    RuleDef {
        id: "hashed-password",
        severity: Severity::Warning,
        title: "password hash (crypt)",
        description: "A crypt(3) password hash can be cracked offline once it is public.",
        fix: "use `hashedPasswordFile` pointing at a secrix secret's `decrypted.path` instead \
of `hashedPassword`",
        kind: Kind::Line,
        keywords: &[
            "$1$", "$2a$", "$2b$", "$2y$", "$5$", "$6$", "$7$", "$y$", "$gy$", "$argon2", "$sha1$",
            "$md5$", "$pbkdf2", "$scrypt$",
        ],
        pattern: r"(?P<s>\$(?:1|2[abxy]|5|6|7|y|gy|argon2(?:id|i|d)|sha1|md5|pbkdf2-sha(?:256|512)|scrypt)\$[A-Za-z0-9./$=,+-]{8,})",
        check: Check::CryptHash,
        priority: 2,
    },
    RuleDef {
        id: "nix-password",
        severity: Severity::Error,
        title: "Nix attribute with a secret name bound to a plaintext string",
        description: "A Nix attribute whose name says secret (password, psk, token, apiKey, \
privateKey, …) is set to a literal string, which ends up world-readable in the Nix store.",
        fix: FIX_SECRIX,
        kind: Kind::NixAst,
        keywords: SECRET_WORDS,
        pattern: "",
        check: Check::SecretName,
        priority: 2,
    },
    RuleDef {
        id: "secret-assignment",
        severity: Severity::Error,
        title: "secret-named key assigned a plaintext value",
        description: "A key whose name says secret (password, token, api_key, …) assigned a \
literal in YAML, JSON, INI, TOML, dotenv or an `EnvironmentFile`-style `KEY=value` string.",
        fix: FIX_SECRIX,
        kind: Kind::Line,
        keywords: SECRET_WORDS,
        pattern: r#"(?:^|[^A-Za-z0-9_.-])(?P<n>(?:[A-Za-z_][A-Za-z0-9_.-]*?)?(?i:pass(?:word|wd|phrase)?|pw|pwd|psk(?:raw)?|secrets?|tokens?|credentials?|authtok|(?:api|private|secret|auth|preauth|encryption|master|hmac|shared|preshared|license|secret[_.-]?access)[_.-]?keys?|secret[_.-]?key[_.-]?base))["']?(?P<sp>[ \t]*)(?:=|:|:=|=>)[ \t]*(?:"(?P<s>[^"\\\r\n]*)"|'(?P<s2>[^'\r\n]*)'|(?P<s3>[^\s"',;#}\])]+))"#,
        check: Check::SecretName,
        priority: 2,
    },
    RuleDef {
        id: "high-entropy-secret",
        severity: Severity::Error,
        title: "high-entropy value assigned to a secret-looking name",
        description: "A random-looking value (Shannon entropy ≥ 4 bits/char) assigned to a name \
that mentions a secret, token, password, key or credential.",
        fix: FIX_SECRIX,
        kind: Kind::Line,
        keywords: &[
            "secret",
            "token",
            "pass",
            "pwd",
            "apikey",
            "api_key",
            "api-key",
            "auth",
            "credential",
            "private",
            "key",
        ],
        pattern: r#"(?:^|[^A-Za-z0-9_.-])(?P<n>[A-Za-z0-9_.-]*(?i:secret|token|passw|pwd|api_?key|api-key|auth|credential|private|key)[A-Za-z0-9_.-]*)["']?[ \t]*(?:=|:)[ \t]*(?:"(?P<s>[^"\s]{20,})"|'(?P<s2>[^'\s]{20,})'|(?P<s3>[A-Za-z0-9+/=_.~-]{20,}))"#,
        check: Check::HighEntropy,
        priority: 1,
    },
];

/// Normalises a key name for the suffix lists: lowercase ASCII letters and
/// digits only (`initial_Password` and `initialPassword` are the same).
pub(crate) fn normalize_name(name: &[u8]) -> String {
    name.iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

/// What a key name says about its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameClass {
    /// A plaintext secret (`password`, `psk`, `apiKey`, …).
    Secret,
    /// A password hash (`hashedPassword`).
    Hashed,
    /// Nothing secret.
    Other,
}

/// Name suffixes (normalised) that mark a secret. A *suffix*, so that
/// `passwordFile`, `tokenEndpoint` or `secretsDir` are not secrets.
const SECRET_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pw",
    "psk",
    "pskraw",
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "apikeys",
    "privatekey",
    "secretkey",
    "secretaccesskey",
    "authkey",
    "encryptionkey",
    "masterkey",
    "hmackey",
    "sharedkey",
    "presharedkey",
    "licensekey",
    "secretkeybase",
    "credential",
    "credentials",
    "adminpass",
    "authtok",
];

/// Names that end like a secret but are not one.
const NOT_SECRET_SUFFIXES: &[&str] = &[
    "bypass",
    "compass",
    "overpass",
    "surpass",
    "trespass",
    "signingkey",
    "publickey",
    "loadcredential",
    "nopasswd",
    // Settings named after tokens of a language, not credentials.
    "semantictokens",
    "commenttokens",
    "maxtokens",
];

/// Classifies the last segment of an attribute path or a config key.
pub(crate) fn classify_name(name: &[u8]) -> NameClass {
    let n = normalize_name(name);
    if n.is_empty() {
        return NameClass::Other;
    }
    if [
        "hashedpassword",
        "hashedpasswd",
        "passwordhash",
        "hashedpass",
    ]
    .iter()
    .any(|s| n.ends_with(s))
    {
        return NameClass::Hashed;
    }
    if NOT_SECRET_SUFFIXES.iter().any(|s| n.ends_with(s)) {
        return NameClass::Other;
    }
    let Some(suffix) = SECRET_SUFFIXES.iter().find(|s| n.ends_with(*s)) else {
        return NameClass::Other;
    };
    // Short suffixes are words of their own (`db_pass`, `rootPW`), not the
    // tail of another word (`twopass`, `multipass`, `topw`, `NOPASSWD`).
    if SHORT_SUFFIXES.contains(suffix) && n.len() > suffix.len() {
        let last = last_word(name);
        if last != *suffix && !COMPOUND_SECRET_WORDS.contains(&last.as_str()) {
            return NameClass::Other;
        }
    }
    NameClass::Secret
}

/// Suffixes too short to be matched inside another word.
const SHORT_SUFFIXES: &[&str] = &["pass", "pw", "pwd", "psk", "passwd"];

/// One-word names that do end in a short secret suffix.
const COMPOUND_SECRET_WORDS: &[&str] = &[
    "rootpw",
    "rootpass",
    "rootpwd",
    "adminpass",
    "adminpw",
    "userpass",
    "dbpass",
    "dbpw",
    "smtppass",
    "mailpass",
    "wifipass",
    "rpcpass",
    "vncpass",
    "pskraw",
];

/// The last word of a name, lowercase: words are split at non-alphanumeric
/// characters and at lower-to-upper case changes (`olcRootPW` → `pw`,
/// `nvenc_twopass` → `twopass`, `NOPASSWD` → `nopasswd`).
pub(crate) fn last_word(name: &[u8]) -> String {
    let mut start = 0;
    let mut end = name.len();
    while end > 0 && !name[end - 1].is_ascii_alphanumeric() {
        end -= 1;
    }
    for i in (0..end).rev() {
        let b = name[i];
        if !b.is_ascii_alphanumeric() {
            start = i + 1;
            break;
        }
        if i > 0 && b.is_ascii_uppercase() && name[i - 1].is_ascii_lowercase() {
            start = i;
            break;
        }
    }
    name[start..end]
        .iter()
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

/// Words of a value, for the "is it a name?" check: lowercase identifier
/// parts split at `_`, `-`, `.`, `/`.
fn value_words(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| matches!(b, b'_' | b'-' | b'.' | b'/'))
        .filter(|w| !w.is_empty())
}

/// Context checks of a value under a secret name, beyond placeholders and
/// references: whether it is something other than a credential. `name` is
/// the (last) key name. Each case is a shape seen on real repositories:
///
/// - the value names a secret instead of holding one (`sshAgeSecret =
///   "restic-ssh-privkey"`, `secret: "orion_luks"`, `:'role_password'`);
/// - it repeats its own name (`EVENT_PASS = "pass"`);
/// - it is a command line (`lock-secrets = "fusermount -u ~/Vaults/x"`,
///   `LUKS_PASS=" --disk-encryption-keys /tmp/key"`);
/// - it is an IP address (`ipv6AcceptRAConfig.Token = "::1a:2b"`);
/// - it is base64 of a JSON object of parameters (OpenTofu's pbkdf2
///   key-provider metadata: salt and iterations, no secret).
pub(crate) fn value_is_not_a_credential(name: &[u8], value: &[u8]) -> bool {
    let v = trim(value);
    if v.is_empty() {
        return true;
    }
    let lw = last_word(name);
    if !lw.is_empty() && v.eq_ignore_ascii_case(lw.as_bytes()) {
        return true;
    }
    names_a_secret(v) || is_command_line(v) || is_ip_address(v) || is_encoded_parameters(v)
}

/// A lowercase identifier of two or more words without digits whose last
/// word says what kind of secret it names: a name, not a value (real
/// passwords are not spelled `role_password` or `restic-ssh-privkey`).
pub(crate) fn names_a_secret(v: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"pass",
        b"pw",
        b"secret",
        b"secrets",
        b"key",
        b"privkey",
        b"token",
        b"luks",
        b"psk",
        b"credential",
        b"credentials",
        b"creds",
        b"passphrase",
        b"apikey",
    ];
    if !v
        .iter()
        .all(|b| b.is_ascii_lowercase() || b"_-.".contains(b))
        || !v.iter().any(|b| b"_-.".contains(b))
    {
        return false;
    }
    let words: Vec<&[u8]> = value_words(v).collect();
    words.len() >= 2 && words.last().is_some_and(|w| WORDS.contains(w))
}

/// A command line: several words, one of them an option (`-u`, `--keys`),
/// a path, or a pipe.
pub(crate) fn is_command_line(v: &[u8]) -> bool {
    let words: Vec<&[u8]> = v
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() < 2 {
        return false;
    }
    words.iter().any(|w| {
        (w.len() >= 2 && w[0] == b'-' && (w[1].is_ascii_alphabetic() || w[1] == b'-'))
            || w.starts_with(b"~/")
            || w.starts_with(b"/")
            || w.starts_with(b"./")
            || *w == b"|"
            || *w == b"&&"
    })
}

/// An IPv4 or IPv6 address (with an optional prefix length).
pub(crate) fn is_ip_address(v: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    let s = s.split_once('/').map_or(s, |(a, _)| a);
    s.contains(['.', ':']) && s.parse::<std::net::IpAddr>().is_ok()
}

/// Base64 of a JSON object none of whose keys names a secret.
pub(crate) fn is_encoded_parameters(v: &[u8]) -> bool {
    if !v.starts_with(b"eyJ") || v.len() > 4096 {
        return false;
    }
    let Some(decoded) = decode_b64_any(v) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&decoded) {
        Ok(serde_json::Value::Object(map)) => map.keys().all(|k| {
            classify_name(k.as_bytes()) == NameClass::Other
                && !k.eq_ignore_ascii_case("auth")
                && !k.eq_ignore_ascii_case("key")
        }),
        _ => false,
    }
}

/// Decodes standard or URL-safe base64, padded or not.
pub(crate) fn decode_b64_any(v: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    STANDARD
        .decode(v)
        .or_else(|_| STANDARD_NO_PAD.decode(v))
        .or_else(|_| URL_SAFE.decode(v))
        .or_else(|_| URL_SAFE_NO_PAD.decode(v))
        .ok()
}

/// Whether a JWT's header and payload decode to JSON objects (a string of
/// the shape `eyJ….eyJ….x` that does not is not a token).
pub(crate) fn is_jwt(v: &[u8]) -> bool {
    let mut parts = v.split(|&b| b == b'.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return false;
    };
    [h, p].iter().all(|part| {
        decode_b64_any(part).is_some_and(|d| {
            matches!(
                serde_json::from_slice::<serde_json::Value>(&d),
                Ok(serde_json::Value::Object(_))
            )
        })
    })
}

/// Whether a name mentions something public or a digest, so a random-looking
/// value under it is not a secret (`publicKey`, `narHash`, `sha256`, `rev`).
pub(crate) fn name_is_public_or_digest(name: &[u8]) -> bool {
    let n = normalize_name(name);
    const WORDS: &[&str] = &[
        "public",
        "pub",
        "hash",
        "sha",
        "md5",
        "checksum",
        "digest",
        "fingerprint",
        "integrity",
        "rev",
        "commit",
        "nonce",
        "salt",
        "iv",
        "cert",
        "certificate",
        "recipient",
        "hostkey",
        "knownhost",
        "authorizedkey",
        "keyid",
        "keyfile",
        "keyring",
        "id",
    ];
    WORDS.iter().any(|w| {
        if *w == "id" || *w == "iv" || *w == "pub" || *w == "rev" {
            n.ends_with(w)
        } else {
            n.contains(w)
        }
    })
}

/// Values that are not secrets even under a secret name: placeholders,
/// references to where the secret lives, templating, encrypted blobs.
pub(crate) fn is_placeholder_or_reference(value: &[u8]) -> bool {
    let v = trim(value);
    v.len() < 4 || is_placeholder(v) || is_reference(v)
}

/// Documentation placeholders and templating: `changeme`, `<password>`,
/// `xxxx`, `${VAR}`, `{{ var }}`, `@var@`, one repeated character. Safe to
/// apply to any token shape (unlike [`is_reference`], which would mistake a
/// base64 key starting with `/` for a path).
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    let v = trim(value);
    if v.is_empty() {
        return true;
    }
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    let l = lower.as_slice();
    const EXACT: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"secret",
        b"token",
        b"changeme",
        b"changeit",
        b"placeholder",
        b"example",
        b"dummy",
        b"redacted",
        b"none",
        b"null",
        b"undefined",
        b"todo",
        b"fixme",
        b"true",
        b"false",
        b"test",
        b"mypassword",
        b"yourpassword",
        b"your-password",
        b"secretpassword",
        b"required",
        b"optional",
        b"string",
        b"hunter2-example",
        b"pass",
        // GitHub workflow `permissions:` levels (`id-token: write`).
        b"read",
        b"write",
    ];
    if EXACT.contains(&l) {
        return true;
    }
    const CONTAINS: &[&[u8]] = &[
        b"changeme",
        b"change_me",
        b"change-me",
        b"change this",
        b"replace_me",
        b"replace-me",
        b"replaceme",
        b"placeholder",
        b"example",
        b"your_",
        b"your-",
        b"<your",
        b"xxxx",
        b"****",
        b"...",
        "…".as_bytes(),
        b"${",
        b"$(",
        b"{{",
        b"%(",
        b"%{",
        b"__file{",
        b"__env{",
        b"%d/",
        b"enc[",
        b"redacted",
        b"not-a-secret",
        b"notasecret",
        b"dummy",
    ];
    if CONTAINS
        .iter()
        .any(|c| memchr::memmem::find(l, c).is_some())
    {
        return true;
    }
    // A value that is one character repeated ("aaaaaaaa", "00000000").
    if v.iter().all(|&b| b == v[0]) {
        return true;
    }
    // printf conversions (`printf 'PASSWORD=%s\n' "$x"`).
    if v[0] == b'%' && v.len() >= 2 && b"sdqvx".contains(&v[1]) {
        return true;
    }
    // `<PREVIOUS RESULT>`, `<SOPS:…>` cut at a space or quote.
    if v[0] == b'<' && v.len() >= 2 && (v[1].is_ascii_alphabetic() || v[1] == b'_') {
        return true;
    }
    let first = v[0];
    let last = v[v.len() - 1];
    // <password>, @password@ (substituteAll), {password}, [secret]
    if (first == b'<' && last == b'>')
        || (first == b'@' && last == b'@')
        || (first == b'{' && last == b'}')
        || (first == b'[' && last == b']')
    {
        return true;
    }
    false
}

/// References to where a secret lives: `$VAR`, `%VAR%`, paths, secret-store
/// URIs, YAML tags that load a value from elsewhere.
pub(crate) fn is_reference(value: &[u8]) -> bool {
    let v = trim(value);
    if v.is_empty() {
        return false;
    }
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    let l = lower.as_slice();
    let first = v[0];
    let last = v[v.len() - 1];
    // $VAR, %VAR%, environment or template references.
    if first == b'$' && v.len() > 1 && (v[1].is_ascii_alphabetic() || v[1] == b'_' || v[1] == b'{')
    {
        return true;
    }
    if first == b'%' && last == b'%' {
        return true;
    }
    // Paths and references to secret stores.
    const PREFIXES: &[&[u8]] = &[
        b"/",
        b"./",
        b"../",
        b"~/",
        b"file:",
        b"env:",
        b"vault:",
        b"ref+",
        // networking.wireless: `psk = "ext:name"` reads `name` from secretsFile.
        b"ext:",
        b"op://",
        b"sops:",
        b"age:",
        b"secret://",
        b"keyring:",
        b"awssm:",
        b"gcpsm:",
    ];
    // A random base64 value may start with `/`: a path is not random. The
    // other prefixes cannot start base64 (`op://Private/x/credential` is a
    // reference however random its item name looks).
    if PREFIXES.iter().any(|p| l.starts_with(p))
        && !v.contains(&b' ')
        && (first != b'/' || !is_high_entropy(v))
    {
        return true;
    }
    // A relative path to a file (`secrets/ssh.yaml`).
    if is_relative_file_path(v) {
        return true;
    }
    // YAML tags that load the value from elsewhere (Home Assistant, Ansible).
    [&b"!secret "[..], b"!vault", b"!env_var ", b"!env "]
        .iter()
        .any(|p| l.starts_with(p))
}

/// `dir/name.ext` with a file extension seen in repositories: a path.
fn is_relative_file_path(v: &[u8]) -> bool {
    const EXT: &[&str] = &[
        "yaml", "yml", "json", "toml", "age", "key", "pem", "txt", "env", "nix", "gpg", "asc",
        "conf", "ini", "crt", "pub", "sops", "enc",
    ];
    if v.contains(&b' ') || !v.contains(&b'/') {
        return false;
    }
    let Some((_, ext)) = v.rsplit(|&b| b == b'/').next().and_then(|n| {
        let n = std::str::from_utf8(n).ok()?;
        n.rsplit_once('.')
    }) else {
        return false;
    };
    EXT.contains(&ext.to_ascii_lowercase().as_str())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-@+".contains(b))
}

/// Whether the value has the shape of something public or derived: an SSH
/// or age public key, a Nix public signing key, an SRI hash, a store path,
/// a URL. With `digests`, also hex and Nix base32 hashes and UUIDs (under a
/// name that clearly says secret a hex string is a secret, so callers pass
/// `false` there).
pub(crate) fn looks_public_or_digest(value: &[u8], digests: bool) -> bool {
    let v = trim(value);
    const PUBLIC_PREFIXES: &[&[u8]] = &[
        b"ssh-",
        b"ecdsa-",
        b"sk-ssh-",
        b"sk-ecdsa-",
        b"age1",
        b"sha1-",
        b"sha256-",
        b"sha384-",
        b"sha512-",
        b"sha1:",
        b"sha256:",
        b"sha512:",
        b"md5-",
        b"/nix/store/",
        b"http://",
        b"https://",
        b"git+",
        b"github:",
        b"gitlab:",
        b"path:",
    ];
    if PUBLIC_PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    // Nix public signing key `name:base64(32 bytes)`.
    if let Some(colon) = v.iter().position(|&b| b == b':') {
        let key = &v[colon + 1..];
        if key.len() == 44 && is_wg_key(key) && colon > 0 {
            return true;
        }
    }
    if !digests {
        return false;
    }
    // Hex digests and ids (git sha, sha256, md5, gpg fingerprints).
    if v.len() >= 16 && v.iter().all(u8::is_ascii_hexdigit) {
        return matches!(v.len(), 16 | 32 | 40 | 56 | 64 | 96 | 128);
    }
    // Nix base32 hashes (32 or 52 characters, no e/o/u/t).
    if matches!(v.len(), 32 | 52)
        && v.iter()
            .all(|b| b"0123456789abcdfghijklmnpqrsvwxyz".contains(b))
    {
        return true;
    }
    // UUID
    if v.len() == 36 && v.iter().filter(|&&b| b == b'-').count() == 4 {
        return true;
    }
    false
}

/// A WireGuard key (public or private): 32 bytes, canonical base64.
pub(crate) fn is_wg_key(v: &[u8]) -> bool {
    v.len() == 44
        && v[43] == b'='
        && b"AEIMQUYcgkosw048".contains(&v[42])
        && v[..42].iter().all(|b| is_b64(*b))
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a value is random enough to be a generated secret.
pub(crate) fn is_high_entropy(v: &[u8]) -> bool {
    let v = trim(v);
    if v.len() < 20 || v.contains(&b' ') {
        return false;
    }
    let classes = [
        v.iter().any(u8::is_ascii_lowercase),
        v.iter().any(u8::is_ascii_uppercase),
        v.iter().any(u8::is_ascii_digit),
    ]
    .iter()
    .filter(|&&c| c)
    .count();
    let e = entropy(v);
    // Hex-only values (max 4 bits/char) need length; mixed values entropy.
    if v.iter().all(u8::is_ascii_hexdigit) {
        return v.len() >= 32 && e >= 3.5 && classes >= 2;
    }
    classes >= 2 && e >= 4.0
}

/// Bech32 checksum (BIP-173, not bech32m) of `hrp1data`, case-insensitive.
pub(crate) fn bech32_valid(s: &[u8]) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let lower: Vec<u8> = s.iter().map(u8::to_ascii_lowercase).collect();
    let Some(sep) = lower.iter().rposition(|&b| b == b'1') else {
        return false;
    };
    let (hrp, data) = (&lower[..sep], &lower[sep + 1..]);
    if hrp.is_empty() || data.len() < 6 {
        return false;
    }
    let mut values = Vec::with_capacity(hrp.len() * 2 + 1 + data.len());
    values.extend(hrp.iter().map(|b| b >> 5));
    values.push(0);
    values.extend(hrp.iter().map(|b| b & 31));
    for b in data {
        match CHARSET.iter().position(|c| c == b) {
            Some(p) => values.push(p as u8),
            None => return false,
        }
    }
    bech32_polymod(&values) == 1
}

pub(crate) fn bech32_polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk: u32 = 1;
    for &v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// `s` without surrounding ASCII whitespace.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn names() {
        for secret in [
            "password",
            "initialPassword",
            "bindPassword",
            "adminpass",
            "passphrase",
            "psk",
            "pskRaw",
            "secret",
            "clientSecret",
            "registration_shared_secret",
            "token",
            "access-tokens",
            "apiKey",
            "api_key",
            "privateKey",
            "olcRootPW",
            "rootpw",
            "DB_PASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "authKey",
            "presharedKey",
            "secret_key_base",
        ] {
            assert_eq!(
                classify_name(secret.as_bytes()),
                NameClass::Secret,
                "{secret}"
            );
        }
        for other in [
            "passwordFile",
            "privateKeyFile",
            "environmentFile",
            "tokenEndpoint",
            "secretsDir",
            "passwordCommand",
            "publicKey",
            "bypass",
            "PasswordAuthentication",
            "PermitRootLogin",
            "signingKey",
            "keyPath",
            "sshKey",
            "key",
            "username",
        ] {
            assert_eq!(classify_name(other.as_bytes()), NameClass::Other, "{other}");
        }
        assert_eq!(classify_name(b"hashedPassword"), NameClass::Hashed);
        assert_eq!(classify_name(b"initialHashedPassword"), NameClass::Hashed);
    }

    #[test]
    fn placeholders() {
        for p in [
            "",
            "CHANGEME",
            "changeme",
            "<password>",
            "${DB_PASSWORD}",
            "$DB_PASSWORD",
            "@password@",
            "xxxxxxxx",
            "********",
            "/run/secrets/db",
            "ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]",
            "$__file{/run/keys/x}",
            "%d/password",
            "your-api-key-here",
            "!secret db_password",
            "{{ vault_password }}",
            "ext:psk_fleet_iot",
        ] {
            assert!(is_placeholder_or_reference(p.as_bytes()), "{p:?}");
        }
        for real in [
            "hunter22",
            "correct horse battery",
            "Tr0ub4dor&3",
            "s3cr3t-v4lue",
        ] {
            assert!(!is_placeholder_or_reference(real.as_bytes()), "{real:?}");
        }
    }

    #[test]
    fn public_and_digest_shapes() {
        for v in [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIWIrVTXam/PYr9bDTqLqwHtTwRuXo7cnVqvsnXSbR3w",
            "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs",
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
            "0c5b9d1e9a3cbb4d2d6a1d3d1b3c5f7e9a1b3c5d",
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
        ] {
            assert!(looks_public_or_digest(v.as_bytes(), true), "{v}");
        }
        assert!(!looks_public_or_digest(
            b"kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0=",
            true
        ));
        // Under a name that says "password", hex is a secret, not a digest.
        assert!(!looks_public_or_digest(
            b"0c5b9d1e9a3cbb4d2d6a1d3d1b3c5f7e9a1b3c5d",
            false
        ));
    }

    #[test]
    fn wg_key_shape() {
        assert!(is_wg_key(b"kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0="));
        // 43rd character must leave the unused low bits zero.
        assert!(!is_wg_key(b"kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH1="));
        assert!(!is_wg_key(b"short="));
    }

    #[test]
    fn entropy_separates_random_from_words() {
        assert!(is_high_entropy(b"kd8Hq2LmZ0pX7vR4tY9wB3nC6sF1gJ5e"));
        assert!(!is_high_entropy(b"this_is_not_random_at_all"));
        assert!(!is_high_entropy(b"aaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    /// Encodes `data` (5-bit groups) as Bech32 with `hrp`, for test fixtures.
    pub(crate) fn bech32_encode(hrp: &str, data: &[u8]) -> String {
        const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let h = hrp.as_bytes();
        let mut values: Vec<u8> = h.iter().map(|b| b >> 5).collect();
        values.push(0);
        values.extend(h.iter().map(|b| b & 31));
        values.extend_from_slice(data);
        values.extend([0u8; 6]);
        let pm = bech32_polymod(&values) ^ 1;
        let mut s = format!("{hrp}1");
        for &d in data {
            s.push(CHARSET[d as usize] as char);
        }
        for i in 0..6 {
            s.push(CHARSET[((pm >> (5 * (5 - i))) & 31) as usize] as char);
        }
        s
    }

    /// A checksum-valid age identity derived from `seed` (not a real key).
    pub(crate) fn age_key(seed: u8) -> String {
        let data: Vec<u8> = (0..52u8)
            .map(|i| (i.wrapping_mul(7).wrapping_add(seed)) % 32)
            .collect();
        bech32_encode("age-secret-key-", &data).to_ascii_uppercase()
    }

    #[test]
    fn bech32_checksum() {
        let k = age_key(3);
        assert!(k.starts_with("AGE-SECRET-KEY-1"));
        assert_eq!(k.len(), 74);
        assert!(bech32_valid(k.as_bytes()));
        let mut bad = k.into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'Q' { b'P' } else { b'Q' };
        assert!(!bech32_valid(&bad));
    }
}
