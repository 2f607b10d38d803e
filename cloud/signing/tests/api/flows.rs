//! The user-facing flows of API.md "Signing", on both shapes.

use std::time::{Duration, Instant};

use edgewatch_common::auth::{AuthError, HttpVerifier, SESSION_CACHE_TTL, TokenVerifier};
use edgewatch_signing::{SigningConfig, keys::KeySet};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{SERVICE_TOKEN, Shape, config, error_code, spawn_app, spawn_with, temp_dir};

const SHAPES: [Shape; 2] = [Shape::Embedded, Shape::Distributed];

#[tokio::test]
async fn register_login_and_me() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let created = app.register(" Ada@Example.com ", "correct horse battery").await;
        assert_eq!(created.status(), StatusCode::CREATED, "{shape:?}");
        let user: Value = created.json().await.unwrap();
        assert_eq!(user["email"], "ada@example.com");
        assert_eq!(user["role"], "admin", "the first account is admin");
        assert!(user.get("password_hash").is_none());
        let second: Value =
            app.register("bob@example.com", "another long password").await.json().await.unwrap();
        assert_eq!(second["role"], "user");

        let code = error_code(
            app.register("ADA@example.com", "whatever it is 1").await,
            StatusCode::CONFLICT,
        )
        .await;
        assert_eq!(code, "email_taken");

        let tokens: Value =
            app.login("ada@EXAMPLE.com", "correct horse battery").await.json().await.unwrap();
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 900);
        let access = tokens["access_token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(access).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
        assert!(header.kid.is_some());

        let me = app.me(access).await;
        assert_eq!(me.status(), StatusCode::OK);
        let me: Value = me.json().await.unwrap();
        assert_eq!(
            (me["email"].as_str(), me["id"].as_str()),
            (Some("ada@example.com"), user["id"].as_str())
        );

        let code = error_code(app.me("not-a-token").await, StatusCode::UNAUTHORIZED).await;
        assert_eq!(code, "invalid_token");
        let no_header = app.client.get(app.url("/api/v1/auth/me")).send().await.unwrap();
        assert_eq!(error_code(no_header, StatusCode::UNAUTHORIZED).await, "invalid_token");
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let first = app.signed_in("ada@example.com").await;
        let second: Value = {
            let answer = app.refresh(first["refresh_token"].as_str().unwrap()).await;
            assert_eq!(answer.status(), StatusCode::OK, "{shape:?}");
            answer.json().await.unwrap()
        };
        assert_ne!(second["refresh_token"], first["refresh_token"]);
        assert_eq!(app.me(second["access_token"].as_str().unwrap()).await.status(), StatusCode::OK);

        // The first refresh token again: theft is assumed and the whole family dies.
        let reused = app.refresh(first["refresh_token"].as_str().unwrap()).await;
        assert_eq!(error_code(reused, StatusCode::UNAUTHORIZED).await, "refresh_token_reused");
        let after = app.refresh(second["refresh_token"].as_str().unwrap()).await;
        assert_eq!(error_code(after, StatusCode::UNAUTHORIZED).await, "invalid_refresh_token");
        let me = app.me(second["access_token"].as_str().unwrap()).await;
        assert_eq!(error_code(me, StatusCode::UNAUTHORIZED).await, "session_revoked");

        // Another sign-in is a separate family, untouched.
        let other: Value =
            app.login("ada@example.com", "correct horse battery").await.json().await.unwrap();
        assert_eq!(app.me(other["access_token"].as_str().unwrap()).await.status(), StatusCode::OK);
        let made_up = app.refresh("made-up-token").await;
        assert_eq!(error_code(made_up, StatusCode::UNAUTHORIZED).await, "invalid_refresh_token");
    }
}

#[tokio::test]
async fn logout_is_refused_by_another_services_verification_layer() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let tokens = app.signed_in("ada@example.com").await;
        let access = tokens["access_token"].as_str().unwrap();
        let other_service = HttpVerifier::new(&app.base, SERVICE_TOKEN);
        let principal = other_service.verify(access).await.expect("a live token verifies");
        assert_eq!(principal.role, edgewatch_common::auth::Role::Admin);

        let out = app
            .client
            .post(app.url("/api/v1/auth/logout"))
            .bearer_auth(access)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            error_code(app.me(access).await, StatusCode::UNAUTHORIZED).await,
            "session_revoked"
        );

        let deadline = Instant::now() + SESSION_CACHE_TTL + Duration::from_secs(2);
        loop {
            match other_service.verify(access).await {
                Err(AuthError::Revoked) => break,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                other => panic!(
                    "{shape:?}: logout not honoured within {SESSION_CACHE_TTL:?} + 2 s: {other:?}"
                ),
            }
        }
        let refresh = app
            .post("/api/v1/auth/refresh", &json!({"refresh_token": tokens["refresh_token"]}))
            .await;
        assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = spawn_app(Shape::Embedded).await;
    app.signed_in("ada@example.com").await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let a = app.login("ada@example.com", "not the password").await;
        wrong.push(t.elapsed());
        let t = Instant::now();
        let b = app.login("nobody@example.com", "not the password").await;
        unknown.push(t.elapsed());
        let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
        assert_eq!(a, b, "the same answer for both");
        assert_eq!(a["error"]["code"], "invalid_credentials");
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[1].as_secs_f64(), unknown[1].as_secs_f64());
    assert!(
        w / u < 3.0 && u / w < 3.0,
        "median timings differ: wrong password {w:.3}s, unknown email {u:.3}s"
    );
}

#[tokio::test]
async fn logins_are_rate_limited_per_account_and_per_address() {
    for shape in SHAPES {
        let mut cfg = config(shape).await;
        cfg.login_per_account = 3;
        cfg.login_per_ip = 6;
        let app = spawn_with(cfg).await;
        app.register("ada@example.com", "correct horse battery").await;
        for _ in 0..3 {
            assert_eq!(
                app.login("ada@example.com", "wrong password!").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let limited = app.login("ada@example.com", "correct horse battery").await;
        assert_eq!(limited.headers()["retry-after"], "60", "{shape:?}");
        assert_eq!(error_code(limited, StatusCode::TOO_MANY_REQUESTS).await, "rate_limited");
        // Other accounts from the same address: the address limit (6 attempts) applies.
        for i in 0..2 {
            let status =
                app.login(&format!("other{i}@example.com"), "whatever pass").await.status();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let limited = app.login("third@example.com", "whatever pass").await;
        assert_eq!(error_code(limited, StatusCode::TOO_MANY_REQUESTS).await, "rate_limited");
        // Registrations cost a password hash each: the address limit bounds them too.
        for i in 0..5 {
            let status = app
                .register(&format!("new{i}@example.com"), "correct horse battery")
                .await
                .status();
            assert_eq!(status, StatusCode::CREATED, "{shape:?}");
        }
        let limited = app.register("one-too-many@example.com", "correct horse battery").await;
        assert_eq!(error_code(limited, StatusCode::TOO_MANY_REQUESTS).await, "rate_limited");
    }
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_while_their_key_is_listed() {
    let cfg: SigningConfig = config(Shape::Distributed).await;
    let app = spawn_with(cfg.clone()).await;
    let old = app.signed_in("ada@example.com").await;
    let old_access = old["access_token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_access).unwrap().kid.unwrap();
    drop(app);

    // Rotate: a second key joins the directory (made elsewhere, as an operator would).
    let elsewhere = temp_dir("new-key");
    let new_kid = KeySet::load_dir(&elsewhere, true).unwrap().active_kid().to_owned();
    std::thread::sleep(Duration::from_millis(20));
    let new_file = cfg.keys_dir.join(format!("{new_kid}.pem"));
    std::fs::copy(elsewhere.join(format!("{new_kid}.pem")), &new_file).unwrap();
    let filetime_now = std::fs::File::options().append(true).open(&new_file).unwrap();
    filetime_now.set_modified(std::time::SystemTime::now()).unwrap();

    let app = spawn_with(cfg.clone()).await;
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
    assert_eq!(
        app.me(&old_access).await.status(),
        StatusCode::OK,
        "old tokens verify while their key is listed"
    );
    let verifier = HttpVerifier::new(&app.base, SERVICE_TOKEN);
    verifier.verify(&old_access).await.expect("and in other services");
    let fresh: Value =
        app.login("ada@example.com", "correct horse battery").await.json().await.unwrap();
    let fresh_access = fresh["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(fresh_access).unwrap().kid.unwrap(),
        new_kid,
        "the new key signs"
    );
    verifier
        .verify(fresh_access)
        .await
        .expect("a token of the new key verifies after a JWKS refetch");
    drop(app);

    // Retire the old key: its tokens stop verifying.
    std::fs::remove_file(cfg.keys_dir.join(format!("{old_kid}.pem"))).unwrap();
    let app = spawn_with(cfg).await;
    assert_eq!(
        error_code(app.me(&old_access).await, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );
    assert_eq!(app.me(fresh_access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_the_contract_error_never_a_500() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let register = "/api/v1/auth/register";
        assert_eq!(
            error_code(app.post_raw(register, "{\"email\": ").await, StatusCode::BAD_REQUEST).await,
            "malformed_request"
        );
        assert_eq!(
            error_code(app.post_raw(register, "{}").await, StatusCode::UNPROCESSABLE_ENTITY).await,
            "invalid_field"
        );
        let wrong_type = app.post(register, &json!({"email": 42, "password": ["x"]})).await;
        assert_eq!(error_code(wrong_type, StatusCode::UNPROCESSABLE_ENTITY).await, "invalid_field");
        let huge = format!(r#"{{"email": "a@b.co", "password": "{}"}}"#, "x".repeat(3 << 20));
        let too_big = app
            .client
            .post(app.url(register))
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // A 1 MB body under the size limit: read, then refused for its field, not a 500.
        let mega = json!({"email": "a@b.co", "password": "p".repeat(1 << 20)});
        assert_eq!(app.invalid_field(register, mega).await, "password");
        let no_type = app.client.post(app.url(register)).body("{}").send().await.unwrap();
        assert_eq!(no_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        assert_eq!(
            app.invalid_field(
                register,
                json!({"email": "not-an-email", "password": "correct horse"})
            )
            .await,
            "email"
        );
        assert_eq!(
            app.invalid_field(register, json!({"email": "a@b.co", "password": "short"})).await,
            "password"
        );
        assert_eq!(
            app.invalid_field(register, json!({"email": "a@b.co", "password": "Password123"}))
                .await,
            "password"
        );
        assert_eq!(
            app.invalid_field(register, json!({"email": "a@b.co", "password": "x".repeat(129)}))
                .await,
            "password"
        );
        assert_eq!(
            app.invalid_field(
                register,
                json!({"email": "a@b.co", "password": "correct horse", "name": "n".repeat(101)})
            )
            .await,
            "name"
        );
        assert_eq!(
            app.invalid_field(
                register,
                json!({"email": "x' OR '1'='1@b.co", "password": "correct horse"})
            )
            .await,
            "email"
        );

        // Odd but valid input is stored as given, never interpreted.
        for (email, name) in [
            ("robert'); DROP TABLE users;--@example.com", "Bobby Tables"),
            ("émile@exämple.fr", "Émile 🚀 \u{202e}reversed"),
        ] {
            let answer = app
                .post(
                    register,
                    &json!({"email": email, "password": "correct horse battery", "name": name}),
                )
                .await;
            assert!(
                answer.status() == StatusCode::CREATED
                    || answer.status() == StatusCode::UNPROCESSABLE_ENTITY,
                "{email}: {}",
                answer.status()
            );
        }
        let login =
            app.post("/api/v1/auth/login", &json!({"email": "' OR 1=1 --", "password": "x"})).await;
        assert_eq!(error_code(login, StatusCode::UNAUTHORIZED).await, "invalid_credentials");
        let refresh = app.post("/api/v1/auth/refresh", &json!({"refresh_token": 12})).await;
        assert_eq!(refresh.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

#[tokio::test]
async fn introspection_is_for_services_only() {
    let app = spawn_app(Shape::Embedded).await;
    let tokens = app.signed_in("ada@example.com").await;
    let introspect = |credential: Option<&'static str>, token: Value| {
        let mut request =
            app.client.post(app.url("/api/v1/auth/introspect")).json(&json!({"token": token}));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        request.send()
    };
    let anonymous = introspect(None, tokens["access_token"].clone()).await.unwrap();
    assert_eq!(error_code(anonymous, StatusCode::UNAUTHORIZED).await, "invalid_service_credential");
    let user_token: &'static str =
        Box::leak(tokens["access_token"].as_str().unwrap().to_owned().into_boxed_str());
    let as_user = introspect(Some(user_token), tokens["access_token"].clone()).await.unwrap();
    assert_eq!(error_code(as_user, StatusCode::UNAUTHORIZED).await, "invalid_service_credential");

    let live: Value = introspect(Some(SERVICE_TOKEN), tokens["access_token"].clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["active"], true);
    assert_eq!(live["role"], "admin");
    assert!(live["sid"].is_string() && live["exp"].is_i64() && live["sub"].is_string());
    let dead: Value =
        introspect(Some(SERVICE_TOKEN), json!("garbage")).await.unwrap().json().await.unwrap();
    assert_eq!(dead, json!({"active": false}));
}

#[tokio::test]
async fn jwks_openapi_and_operational_routes() {
    let app = spawn_app(Shape::Embedded).await;
    for path in ["/api/v1/auth/jwks", "/.well-known/jwks.json"] {
        let jwks: Value = app.client.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
            (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
        );
        assert!(key.get("d").is_none(), "no private part in the JWKS");
    }
    let doc: Value =
        app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/auth/jwks",
        "/api/v1/auth/introspect",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    app.login("nobody@example.com", "whatever pass").await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("edgewatch_signing_logins_total"), "{metrics}");
}

#[tokio::test]
async fn misconfiguration_fails_at_start_with_a_clear_message() {
    let mut cfg = config(Shape::Embedded).await;
    cfg.service_token = String::new();
    let err =
        edgewatch_signing::build(&cfg).await.err().expect("no service token: refuse to start");
    assert!(err.to_string().contains("EDGEWATCH_SERVICE_TOKEN"), "{err}");

    let mut cfg = config(Shape::Embedded).await;
    cfg.generate_keys = false;
    let err = edgewatch_signing::build(&cfg).await.err().expect("no keys: refuse to start");
    assert!(err.to_string().contains("no signing key"), "{err}");

    let mut cfg = config(Shape::Embedded).await;
    cfg.database_url = "mysql://nope".into();
    let err = edgewatch_signing::build(&cfg).await.err().expect("unsupported database");
    assert!(err.to_string().contains("postgres:// or sqlite://"), "{err}");
}
