//! The auth scheme of a request (R-INV-2), from the shared request-header facts.

use super::*;

/// Auth schemes recognised in requests (R-INV-2): the *one* scheme an endpoint's request is
/// counted under in the inventory (most specific credential wins; JWT and opaque bearer
/// tokens apart; `none` and "none, but TLS" apart). Not the same question as
/// [`apitap_labels::AuthScheme`], which lists *every* credential a request carries for the
/// weak-point checks and is part of the shipped-labels schema (so its names cannot follow
/// this one's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// No credential seen.
    None,
    /// `Authorization: Basic`.
    Basic,
    /// `Authorization: Bearer` with a JWT.
    BearerJwt,
    /// `Authorization: Bearer` with an opaque token.
    Bearer,
    /// `Authorization: Digest`.
    Digest,
    /// Another `Authorization` scheme.
    OtherAuthorization,
    /// An API key header (`X-API-Key`, …).
    ApiKeyHeader,
    /// An API key or access token in the query string.
    ApiKeyQuery,
    /// A session cookie.
    CookieSession,
    /// No HTTP credential on a TLS connection: client certificates (mTLS) cannot be observed.
    NoneTlsUnknown,
}

impl AuthScheme {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::None => "none",
            AuthScheme::Basic => "basic",
            AuthScheme::BearerJwt => "bearer_jwt",
            AuthScheme::Bearer => "bearer",
            AuthScheme::Digest => "digest",
            AuthScheme::OtherAuthorization => "authorization_other",
            AuthScheme::ApiKeyHeader => "api_key_header",
            AuthScheme::ApiKeyQuery => "api_key_query",
            AuthScheme::CookieSession => "cookie_session",
            AuthScheme::NoneTlsUnknown => "none_mtls_unknown",
        }
    }
}

pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().take(2).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// The auth scheme of a request, from its headers and query (values are inspected for their
/// scheme and shape only, never kept).
pub fn auth_scheme(event: &ApiEvent) -> AuthScheme {
    auth_scheme_with(event, &RequestHeaders::of(&event.request.headers))
}

/// [`auth_scheme`] with the headers already scanned.
pub fn auth_scheme_with(event: &ApiEvent, scan: &RequestHeaders<'_>) -> AuthScheme {
    if let Some(value) = scan.authorization {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        return if scheme.eq_ignore_ascii_case("basic") {
            AuthScheme::Basic
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if looks_like_jwt(rest.trim()) {
                AuthScheme::BearerJwt
            } else {
                AuthScheme::Bearer
            }
        } else if scheme.eq_ignore_ascii_case("digest") {
            AuthScheme::Digest
        } else {
            AuthScheme::OtherAuthorization
        };
    }
    if scan.api_key_header {
        return AuthScheme::ApiKeyHeader;
    }
    // Every API-key query name contains `key` or `token`: split the query only then.
    if let Some(q) = &event.request.query
        && (contains_ignore_case(q, "key") || contains_ignore_case(q, "token"))
        && query_pairs(q).any(|(n, _)| API_KEY_QUERY.iter().any(|k| n.eq_ignore_ascii_case(k)))
    {
        return AuthScheme::ApiKeyQuery;
    }
    if scan.session_cookie {
        return AuthScheme::CookieSession;
    }
    if event.tls {
        AuthScheme::NoneTlsUnknown
    } else {
        AuthScheme::None
    }
}
