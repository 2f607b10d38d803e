//! The account domain: validated emails and passwords, users. An [`Email`] is normalised (trimmed,
//! lower-cased) so that `Ada@Example.com` and `ada@example.com` are one account; a [`Password`]
//! follows OWASP ASVS 6.2 — 8 to 128 characters, no composition rules, not a common password.

use std::fmt;

use edgewatch_common::auth::Role;
use edgewatch_protocol::{Timestamp, UserId};
use serde::Serialize;

const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// A normalised email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let email = input.trim().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("must be an email address like ada@example.com");
        };
        let valid_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty()
            || local.len() > 64
            || !valid_domain
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
            || domain.contains('@')
        {
            return Err("must be an email address like ada@example.com");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that passed the rules; never logged or serialized.
pub struct Password(String);

impl Password {
    pub fn parse(input: String) -> Result<Self, &'static str> {
        let chars = input.chars().count();
        if chars < 8 {
            return Err("must be at least 8 characters");
        }
        if chars > 128 {
            return Err("must be at most 128 characters");
        }
        let lowered = input.to_lowercase();
        if COMMON_PASSWORDS.lines().any(|common| common == lowered) {
            return Err("is one of the most common passwords; choose another");
        }
        Ok(Self(input))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A display name: optional, at most 100 characters, no control characters.
pub fn parse_name(input: Option<String>) -> Result<Option<String>, &'static str> {
    let Some(name) = input.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 100 {
        return Err("must be at most 100 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(Some(name))
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: Option<String>,
    pub role: Role,
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// What a new account is made of; the repository decides the role.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub name: Option<String>,
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// The public view of an account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    #[schema(value_type = String, example = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            email: user.email.to_string(),
            name: user.name.clone(),
            role: user.role,
            created_at: user.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@example.com",
            "ada@@x.com",
            "ada@.x.com",
            "ada@x..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse("o'brien+tag@sub.example.co.uk").is_ok());
        assert!(Email::parse("'; DROP TABLE users; --@example.com").is_err());
    }

    #[test]
    fn passwords_follow_asvs() {
        assert!(Password::parse("seven77".into()).is_err());
        assert!(Password::parse("correct horse battery staple".into()).is_ok());
        assert!(Password::parse("ünïcødé-pässwörd".into()).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse("x".repeat(128)).is_ok());
        assert!(Password::parse("password1".into()).is_err());
        assert!(Password::parse("Password1".into()).is_err(), "the check ignores case");
        assert_eq!(
            format!("{:?}", Password::parse("hunter2hunter2".into()).unwrap()),
            "Password(..)"
        );
    }

    #[test]
    fn names_are_optional_and_bounded() {
        assert_eq!(parse_name(None), Ok(None));
        assert_eq!(parse_name(Some("  ".into())), Ok(None));
        assert_eq!(parse_name(Some(" Ada ".into())), Ok(Some("Ada".into())));
        assert!(parse_name(Some("x".repeat(101))).is_err());
        assert!(parse_name(Some("a\u{0}b".into())).is_err());
    }
}
