//! TLS for `wss://` relays: rustls with the ring provider named explicitly (a build with two
//! providers, or none, would fail at run time), the system's roots (rustls-native-certs,
//! which honours `SSL_CERT_FILE`), and an extra CA per relay for a relay with its own
//! certificate authority (`meridian workspace relay add URL --ca FILE`).
//!
//! Certificate failures are turned into what a person can act on: which relay, what was
//! wrong with its certificate, and what to do.

use std::sync::{Arc, OnceLock};

use anyhow::{Result, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The system's trusted roots, read and parsed once per process (reading them lists a
/// directory, and parsing a hundred certificates is not free either).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!("skipping a system root certificate: {error}");
        }
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        roots
    })
}

/// The certificates in a PEM file's bytes, or an error saying why there are none. `what`
/// names the file in the message.
pub fn ca_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        match cert {
            Ok(cert) => certs.push(cert),
            Err(e) => bail!("{what} is not a readable PEM certificate file: {e}"),
        }
    }
    if certs.is_empty() {
        bail!(
            "{what} holds no certificate: give the CA certificate in PEM (the file that begins `-----BEGIN CERTIFICATE-----`)"
        );
    }
    Ok(certs)
}

/// The TLS settings to reach a relay: the system's roots, and `extra_ca` (PEM) when the
/// relay's certificate comes from a CA of its own.
pub fn client_config(extra_ca: Option<&[u8]>) -> Result<Arc<ClientConfig>> {
    let mut roots = system_roots().clone();
    if let Some(pem) = extra_ca {
        for cert in ca_certificates(pem, "the relay's CA file")? {
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!("the relay's CA certificate cannot be used as a root: {e}")
            })?;
        }
    }
    // ring, named explicitly: rustls 0.23.48 deprecates it for lacking post-quantum key
    // exchange, but aws-lc-rs (the alternative) needs cmake and a C toolchain setup this
    // project does not ask of a builder. Sealed envelopes stay end-to-end encrypted either
    // way; TLS guards the relay's metadata and the connection.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What went wrong reaching `relay` over TLS, in words a person can act on, if `error`
/// (or an error it wraps) is a TLS failure.
pub fn explain(relay: &str, error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(relay, tls));
        }
        use tokio_tungstenite::tungstenite::{Error as WsError, error::TlsError};
        // tokio-rustls reports a failed handshake as an I/O error wrapping rustls's, whose
        // `source()` skips the wrapped error itself: look inside.
        let io = match e.downcast_ref::<WsError>() {
            Some(WsError::Tls(TlsError::Rustls(tls))) => return Some(explain_rustls(relay, tls)),
            Some(WsError::Io(io)) => Some(io),
            _ => e.downcast_ref::<std::io::Error>(),
        };
        if let Some(tls) = io
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(explain_rustls(relay, tls));
        }
        // A plain server hangs up on a ClientHello it cannot read.
        if let Some(io) = io
            && io.kind() == std::io::ErrorKind::UnexpectedEof
            && io.to_string().contains("tls handshake")
        {
            return Some(not_tls(relay));
        }
        source = e.source();
    }
    None
}

fn explain_rustls(relay: &str, error: &rustls::Error) -> String {
    let host = host_of(relay);
    let trust = format!(
        "if the relay's certificate comes from its own CA, give that CA's certificate: `meridian workspace relay add {relay} --ca CA.pem` (or point SSL_CERT_FILE at it)"
    );
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => format!(
                "{relay}'s certificate comes from an issuer this device does not trust: {trust}"
            ),
            CertificateError::BadSignature | CertificateError::BadEncoding => format!(
                "{relay}'s certificate does not verify (bad signature or encoding): its operator must fix it, or {trust}"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "{relay}'s certificate has expired{}: its operator must renew it (if it looks current, check this device's clock)",
                match certificate {
                    CertificateError::ExpiredContext { not_after, .. } =>
                        format!(" ({})", unix_date(not_after.as_secs())),
                    _ => String::new(),
                }
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "{relay}'s certificate is not valid yet: check this device's clock, or ask the relay's operator"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let names = match certificate {
                    CertificateError::NotValidForNameContext { presented, .. }
                        if !presented.is_empty() =>
                    {
                        let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
                        format!(" (it names {})", names.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "{relay}'s certificate is not for {host}{names}: check the relay's address, or ask its operator for a certificate that names {host}"
                )
            }
            CertificateError::Revoked => {
                format!("{relay}'s certificate has been revoked: ask the relay's operator")
            }
            other => format!("{relay}'s certificate was refused ({other:?}): {trust}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            not_tls(relay)
        }
        rustls::Error::AlertReceived(alert) => {
            format!("{relay} ended the TLS handshake ({alert:?}): ask the relay's operator")
        }
        other => format!("TLS with {relay} failed: {other}"),
    }
}

fn not_tls(relay: &str) -> String {
    format!(
        "{relay} does not answer in TLS on that port: if it serves plain websockets, use ws:// instead of wss://, or check the port"
    )
}

/// A name a certificate presents as rustls reports it (`DnsName("relay.example.org")`),
/// without the wrapping.
fn plain_name(name: &str) -> &str {
    match name.split_once("(\"") {
        Some((_, rest)) => rest.trim_end_matches("\")"),
        None => name,
    }
}

/// The host part of a relay URL, for messages.
fn host_of(relay: &str) -> &str {
    let rest = relay.split_once("://").map_or(relay, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// A UTC date of seconds since the epoch, for a certificate's expiry.
fn unix_date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(
            || "an unreadable date".to_string(),
            |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_what_to_give() {
        let error = ca_certificates(b"hello", "ca.pem").unwrap_err().to_string();
        assert!(error.contains("ca.pem holds no certificate"), "{error}");
        let error = ca_certificates(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            "ca.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("not a readable PEM"), "{error}");
    }

    #[test]
    fn certificate_errors_say_what_to_do() {
        let relay = "wss://relay.example.org:8443";
        let says =
            |e: CertificateError| explain_rustls(relay, &rustls::Error::InvalidCertificate(e));
        assert!(says(CertificateError::UnknownIssuer).contains("--ca CA.pem"));
        assert!(says(CertificateError::Expired).contains("has expired"));
        assert!(
            says(CertificateError::NotValidForName)
                .contains("is not for relay.example.org: check the relay's address")
        );
        assert_eq!(host_of("wss://[::1]:8443/meridian"), "[::1]");
        assert_eq!(
            plain_name("DnsName(\"relay.example.org\")"),
            "relay.example.org"
        );
        assert_eq!(plain_name("relay.example.org"), "relay.example.org");
    }
}
