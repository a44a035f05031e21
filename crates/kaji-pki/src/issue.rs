//! Issuing and inspecting certificates: the CA, the serving cert, the admin cert.
//!
//! Pure functions over PEM strings; nothing here touches the filesystem.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::authn::{ADMIN_USER, MASTERS_GROUP};
use crate::PkiError;

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// How long the serving and admin certificates are valid.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate with less than this left is renewed on the next load.
pub(crate) const RENEW_BEFORE_DAYS: i64 = 30;
/// Backdating of `notBefore`, so a client whose clock is slightly behind
/// accepts a freshly issued certificate.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub(crate) struct Pair {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A subject alternative name, normalized so that a requested name and the
/// same name read back from a certificate compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum San {
    /// A lower-case DNS name without a trailing dot.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl San {
    /// Parses a name as given on the command line: an IP address (IPv6 may be
    /// bracketed) or a DNS name. Empty names and unspecified addresses
    /// (`0.0.0.0`, `::`, which mean "listen everywhere", not a name to dial)
    /// give `Ok(None)`.
    ///
    /// # Errors
    /// [`PkiError::InvalidSan`] for a name with characters a DNS name cannot have.
    pub(crate) fn parse(raw: &str) -> Result<Option<San>, PkiError> {
        let s = raw.trim();
        let s = s
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(s);
        if s.is_empty() {
            return Ok(None);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok((!ip.is_unspecified()).then_some(San::Ip(ip)));
        }
        let dns = s.trim_end_matches('.').to_ascii_lowercase();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*');
        if dns.is_empty() || dns.len() > 253 || !dns.chars().all(valid_char) {
            return Err(PkiError::InvalidSan {
                san: raw.to_owned(),
                reason: "neither an IP address nor a DNS name",
            });
        }
        Ok(Some(San::Dns(dns)))
    }

    fn to_rcgen(&self) -> Result<SanType, PkiError> {
        Ok(match self {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(name) => {
                SanType::DnsName(name.as_str().try_into().map_err(|_| PkiError::InvalidSan {
                    san: name.clone(),
                    reason: "not ASCII",
                })?)
            }
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The names the serving certificate must cover: localhost, the loopback
/// addresses, this machine's hostname (when it has a usable one) and `extra`.
///
/// # Errors
/// [`PkiError::InvalidSan`] when an entry of `extra` is not a valid name.
pub(crate) fn wanted_sans(extra: &[String]) -> Result<BTreeSet<San>, PkiError> {
    let mut sans = BTreeSet::from([
        San::Dns("localhost".to_owned()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]);
    if let Some(Ok(Some(host))) = machine_hostname().map(|h| San::parse(&h)) {
        sans.insert(host);
    }
    for raw in extra {
        sans.extend(San::parse(raw)?);
    }
    Ok(sans)
}

/// The kernel's hostname, falling back to `$HOSTNAME`.
fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and of full length, as RFC 5280 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn new_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| PkiError::Generate { what, source })
}

fn base_params(common_name: &str, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // rcgen's timestamps are `time::OffsetDateTime`; building "now" from
    // rcgen's own constructor keeps `time` out of our dependencies.
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.use_authority_key_identifier_extension = true;
    params
}

/// Generates a new CA: ECDSA P-256, valid ten years, `CN=kaji-ca`.
pub(crate) fn new_ca() -> Result<Pair, PkiError> {
    const WHAT: &str = "CA certificate";
    let key = new_key(WHAT)?;
    let mut params = base_params("kaji-ca", CA_VALIDITY);
    params.use_authority_key_identifier_extension = false;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|source| PkiError::Generate { what: WHAT, source })?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Builds an issuer from a CA pair that [`check_ca`] accepted.
fn issuer(ca: &Pair, what: &'static str) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key =
        KeyPair::from_pem(&ca.key_pem).map_err(|source| PkiError::Generate { what, source })?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key)
        .map_err(|source| PkiError::Generate { what, source })
}

/// Issues the API server's serving certificate for `sans`, signed by `ca`.
pub(crate) fn serving_cert(ca: &Pair, sans: &BTreeSet<San>) -> Result<Pair, PkiError> {
    const WHAT: &str = "serving certificate";
    let key = new_key(WHAT)?;
    let mut params = base_params("kaji-apiserver", LEAF_VALIDITY);
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &issuer(ca, WHAT)?)
        .map_err(|source| PkiError::Generate { what: WHAT, source })?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues the admin client certificate (`CN=kaji-admin, O=system:masters`).
pub(crate) fn admin_cert(ca: &Pair) -> Result<Pair, PkiError> {
    const WHAT: &str = "admin client certificate";
    let key = new_key(WHAT)?;
    let mut params = base_params(ADMIN_USER, LEAF_VALIDITY);
    params
        .distinguished_name
        .push(DnType::OrganizationName, MASTERS_GROUP);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &issuer(ca, WHAT)?)
        .map_err(|source| PkiError::Generate { what: WHAT, source })?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The first certificate of a PEM string, as DER.
pub(crate) fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    match rustls_pemfile::certs(&mut pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(format!("bad PEM: {e}")),
        None => Err("no CERTIFICATE block".to_owned()),
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("unparseable certificate: {e}"))
}

/// Checks that a pair is well formed: the certificate parses and the key is
/// the one it certifies.
fn check_pair(pair: &Pair, der: &[u8]) -> Result<(), String> {
    let cert = parse(der)?;
    let key = KeyPair::from_pem(&pair.key_pem).map_err(|e| format!("unreadable key: {e}"))?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err("the private key does not match the certificate".to_owned());
    }
    Ok(())
}

fn days_left(cert: &X509Certificate<'_>) -> i64 {
    cert.validity()
        .time_to_expiration()
        .map_or(-1, |left| left.whole_days())
}

/// Checks a CA loaded from disk.
///
/// # Errors
/// `Err(reason)` when the pair cannot be used to sign.
pub(crate) fn check_ca(ca: &Pair) -> Result<CaState, String> {
    let der = first_cert_der(&ca.cert_pem)?;
    check_pair(ca, &der)?;
    let cert = parse(&der)?;
    if !cert.is_ca() {
        return Err("not a CA certificate".to_owned());
    }
    issuer(ca, "CA issuer").map_err(|e| e.to_string())?;
    Ok(if days_left(&cert) < RENEW_BEFORE_DAYS {
        CaState::Expiring
    } else {
        CaState::Good
    })
}

/// Whether a loaded CA is still good to use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CaState {
    /// Valid for more than [`RENEW_BEFORE_DAYS`].
    Good,
    /// Expired or about to: replace it (and everything it signed).
    Expiring,
}

/// Checks a leaf certificate loaded from disk against the CA and, for the
/// serving certificate, the names it must cover.
///
/// # Errors
/// `Err(reason)` when the leaf should be reissued: unparseable, key mismatch,
/// not signed by `ca_der`, expiring within [`RENEW_BEFORE_DAYS`], or missing
/// one of `wanted`.
pub(crate) fn check_leaf(
    leaf: &Pair,
    ca_der: &[u8],
    wanted: Option<&BTreeSet<San>>,
) -> Result<(), String> {
    let der = first_cert_der(&leaf.cert_pem)?;
    check_pair(leaf, &der)?;
    let cert = parse(&der)?;
    let ca = parse(ca_der)?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| "not signed by the current CA".to_owned())?;
    if days_left(&cert) < RENEW_BEFORE_DAYS {
        return Err(format!("expires in less than {RENEW_BEFORE_DAYS} days"));
    }
    if let Some(wanted) = wanted {
        let present = sans_of(&cert);
        let missing: Vec<String> = wanted
            .difference(&present)
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(format!("lacks SANs {}", missing.join(", ")));
        }
    }
    Ok(())
}

fn sans_of(cert: &X509Certificate<'_>) -> BTreeSet<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => San::parse(dns).ok().flatten(),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The SANs of the serving certificate in `pem`, for reporting.
pub(crate) fn sans_of_pem(pem: &str) -> Vec<String> {
    first_cert_der(pem)
        .ok()
        .and_then(|der| parse(&der).ok().map(|c| sans_of(&c)))
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_parsing_should_normalize_and_skip_unspecified_addresses() {
        assert_eq!(
            San::parse(" Example.COM. ").unwrap(),
            Some(San::Dns("example.com".into()))
        );
        assert_eq!(
            San::parse("[::1]").unwrap(),
            Some(San::Ip("::1".parse().unwrap()))
        );
        assert_eq!(San::parse("0.0.0.0").unwrap(), None);
        assert_eq!(San::parse("::").unwrap(), None);
        assert_eq!(San::parse("").unwrap(), None);
        assert!(San::parse("not a name").is_err());
    }

    #[test]
    fn wanted_sans_should_always_include_the_loopback_names() {
        let sans = wanted_sans(&["10.1.2.3".into()]).unwrap();
        for s in ["localhost", "127.0.0.1", "::1", "10.1.2.3"] {
            assert!(sans.contains(&San::parse(s).unwrap().unwrap()), "{s}");
        }
    }

    #[test]
    fn an_issued_serving_cert_should_pass_its_own_check_and_fail_a_wider_one() {
        let ca = new_ca().unwrap();
        assert_eq!(check_ca(&ca), Ok(CaState::Good));
        let ca_der = first_cert_der(&ca.cert_pem).unwrap();
        let sans = wanted_sans(&[]).unwrap();
        let leaf = serving_cert(&ca, &sans).unwrap();
        assert_eq!(check_leaf(&leaf, &ca_der, Some(&sans)), Ok(()));

        let wider = wanted_sans(&["kaji.example".into()]).unwrap();
        let err = check_leaf(&leaf, &ca_der, Some(&wider)).unwrap_err();
        assert!(err.contains("kaji.example"), "{err}");
    }

    #[test]
    fn a_leaf_signed_by_another_ca_should_be_rejected() {
        let ca = new_ca().unwrap();
        let other = new_ca().unwrap();
        let leaf = admin_cert(&other).unwrap();
        let ca_der = first_cert_der(&ca.cert_pem).unwrap();
        assert!(check_leaf(&leaf, &ca_der, None).is_err());
    }

    #[test]
    fn a_pair_with_a_foreign_key_should_be_rejected() {
        let ca = new_ca().unwrap();
        let a = admin_cert(&ca).unwrap();
        let b = admin_cert(&ca).unwrap();
        let mixed = Pair {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        let ca_der = first_cert_der(&ca.cert_pem).unwrap();
        let err = check_leaf(&mixed, &ca_der, None).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }
}
