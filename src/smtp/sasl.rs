//! SASL PLAIN (RFC 4616) and LOGIN decoding. Decoding only: checking the credentials belongs to
//! the [`Authenticator`](super::Authenticator).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::session::AuthFailure;

/// A user name and password as the client sent them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One base64 client response line: `*` cancels.
pub fn decode_line(line: &str) -> Result<Vec<u8>, AuthFailure> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line == "*" {
        return Err(AuthFailure::Cancelled);
    }
    STANDARD.decode(line).map_err(|_| AuthFailure::Malformed)
}

/// A decoded LOGIN response (user name or password) as text.
pub fn decode_text(line: &str) -> Result<String, AuthFailure> {
    String::from_utf8(decode_line(line)?).map_err(|_| AuthFailure::Malformed)
}

/// `[authzid] NUL authcid NUL passwd`; an authorization identity other than the user's own is
/// refused (sesgate has no proxy authorization).
pub fn decode_plain(line: &str) -> Result<Credentials, AuthFailure> {
    let bytes = decode_line(line)?;
    let text = String::from_utf8(bytes).map_err(|_| AuthFailure::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    if username.is_empty() || (!authzid.is_empty() && authzid != username) {
        return Err(AuthFailure::Invalid);
    }
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let encode = |s: &str| STANDARD.encode(s);
        let ok = decode_plain(&encode("\0AKIAEXAMPLE\0secret")).unwrap();
        assert_eq!(
            (ok.username.as_str(), ok.password.as_str()),
            ("AKIAEXAMPLE", "secret")
        );
        assert!(decode_plain(&encode("AKIAEXAMPLE\0AKIAEXAMPLE\0secret")).is_ok());
        assert_eq!(
            decode_plain(&encode("other\0AKIAEXAMPLE\0secret")),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            decode_plain(&encode("no separators")),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(decode_plain("not base64!"), Err(AuthFailure::Malformed));
        assert_eq!(decode_plain("*"), Err(AuthFailure::Cancelled));
        assert!(!format!("{ok:?}").contains("secret"));
    }

    #[test]
    fn login_lines() {
        assert_eq!(decode_text("dXNlcg==\r\n").unwrap(), "user");
        assert_eq!(decode_text("*\r\n"), Err(AuthFailure::Cancelled));
    }
}
