//! Authentication: from a verified client certificate or a bearer token to a user.

use rustls::pki_types::CertificateDer;

/// The user name of the admin client certificate and the admin token.
pub(crate) const ADMIN_USER: &str = "kaji-admin";
/// The group that bypasses authorization, as in Kubernetes.
pub(crate) const MASTERS_GROUP: &str = "system:masters";
/// The group every authenticated user belongs to, as in Kubernetes.
pub(crate) const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Who a request is from, as Kubernetes' `user.Info` (name and groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name: a client certificate's subject common name, or
    /// `kaji-admin` for the admin token.
    pub name: String,
    /// The groups: a client certificate's subject organizations, or
    /// `system:masters` for the admin token; always ending with
    /// `system:authenticated`.
    pub groups: Vec<String>,
}

impl UserInfo {
    pub(crate) fn admin() -> Self {
        UserInfo {
            name: ADMIN_USER.to_owned(),
            groups: vec![MASTERS_GROUP.to_owned(), AUTHENTICATED_GROUP.to_owned()],
        }
    }
}

/// The user a client certificate names: CN is the user, each O a group.
///
/// # Caveats
/// `leaf` must be a certificate rustls already verified in the handshake.
/// As a second line of defence this still checks that `leaf` is signed by
/// `ca_der` and is within its validity period, but it does not re-check the
/// chain's key usages or revocation.
pub(crate) fn user_from_cert(leaf: &CertificateDer<'_>, ca_der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).ok()?;
    cert.verify_signature(Some(ca.public_key())).ok()?;
    if !cert.validity().is_valid() {
        return None;
    }
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter(|o| *o != AUTHENTICATED_GROUP)
        .map(str::to_owned)
        .collect();
    groups.push(AUTHENTICATED_GROUP.to_owned());
    Some(UserInfo {
        name: name.to_owned(),
        groups,
    })
}

/// The token of an `Authorization: Bearer <token>` header value; the scheme
/// is case-insensitive, as RFC 9110 says.
pub(crate) fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_should_accept_any_case_and_reject_other_schemes() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn constant_time_eq_should_compare_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
