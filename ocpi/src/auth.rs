//! `Authorization: Token <token>` (transport_and_format "Authorization
//! header"). OCPI 2.1.1 sends the token as-is; 2.2 and later send the Base64
//! (RFC 4648) of its UTF-8 bytes. The 2.3.0 text notes that many
//! implementations do not encode, and leaves compatibility to configuration:
//! [`TokenEncoding::Lenient`] accepts both.

use base64::Engine as _;

/// How a peer writes tokens in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenEncoding {
    /// As-is (OCPI 2.1.1, and peers that never encode).
    Plain,
    /// Base64 of the UTF-8 bytes (OCPI 2.2, 2.2.1, 2.3.0).
    Base64,
    /// Parse Base64 when the value decodes to printable text, else take it
    /// as-is; encode as Base64.
    Lenient,
}

/// A refused `Authorization` header (answer HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not `Token <value>`.
    #[error("Authorization header is not `Token <token>`")]
    NotToken,
    /// Base64 was required and the value is not Base64 of UTF-8 text.
    #[error("token is not Base64-encoded UTF-8")]
    NotBase64,
}

/// The header value for `token`.
pub fn encode_token(token: &str, encoding: TokenEncoding) -> String {
    match encoding {
        TokenEncoding::Plain => format!("Token {token}"),
        TokenEncoding::Base64 | TokenEncoding::Lenient => {
            format!(
                "Token {}",
                base64::engine::general_purpose::STANDARD.encode(token.as_bytes())
            )
        }
    }
}

/// The token in a header value. Decoding does not "fix" what it finds: the
/// 2.3.0 example `ZXhhbXBsZS10b2tlbgo=` decodes to `example-token\n`, newline included.
///
/// # Errors
///
/// [`AuthError`]: reply HTTP 401.
pub fn parse_token(header: &str, encoding: TokenEncoding) -> Result<String, AuthError> {
    let (scheme, value) = header.trim().split_once(' ').ok_or(AuthError::NotToken)?;
    if !scheme.eq_ignore_ascii_case("token") || value.trim().is_empty() {
        return Err(AuthError::NotToken);
    }
    let value = value.trim();
    let decoded = || {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    match encoding {
        TokenEncoding::Plain => Ok(value.to_owned()),
        TokenEncoding::Base64 => decoded().ok_or(AuthError::NotBase64),
        TokenEncoding::Lenient => Ok(decoded()
            .filter(|t| !t.is_empty() && t.chars().all(|c| !c.is_control() || c == '\n'))
            .unwrap_or_else(|| value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_keeps_its_newline() {
        // OCPI 2.3.0 transport_and_format example: token "example-token".
        assert_eq!(
            parse_token("Token ZXhhbXBsZS10b2tlbgo=", TokenEncoding::Base64).unwrap(),
            "example-token\n"
        );
        // and we do not copy the mistake when encoding
        assert_eq!(
            encode_token("example-token", TokenEncoding::Base64),
            "Token ZXhhbXBsZS10b2tlbg=="
        );
    }

    #[test]
    fn versions_and_lenient_peers() {
        assert_eq!(
            parse_token(
                "Token ebf3b399-779f-4497-9b9d-ac6ad3cc44d2",
                TokenEncoding::Plain
            )
            .unwrap(),
            "ebf3b399-779f-4497-9b9d-ac6ad3cc44d2"
        );
        assert_eq!(
            parse_token(
                "Token ebf3b399-779f-4497-9b9d-ac6ad3cc44d2",
                TokenEncoding::Base64
            ),
            Err(AuthError::NotBase64)
        );
        assert_eq!(
            parse_token(
                "Token ebf3b399-779f-4497-9b9d-ac6ad3cc44d2",
                TokenEncoding::Lenient
            )
            .unwrap(),
            "ebf3b399-779f-4497-9b9d-ac6ad3cc44d2"
        );
        assert_eq!(
            parse_token("Token ZXhhbXBsZS10b2tlbg==", TokenEncoding::Lenient).unwrap(),
            "example-token"
        );
        assert_eq!(
            parse_token("Bearer abc", TokenEncoding::Lenient),
            Err(AuthError::NotToken)
        );
        assert_eq!(
            parse_token("Token ", TokenEncoding::Lenient),
            Err(AuthError::NotToken)
        );
    }
}
