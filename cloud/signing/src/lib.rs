//! The signing service: accounts (argon2id), login with rate limits, short-lived asymmetric JWT
//! access tokens with rotating refresh tokens, JWKS and introspection, sessions in Redis or memory.
//! Built out by the signing issue; today this crate holds no code.
