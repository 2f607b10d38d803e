use std::path::PathBuf;

use edgewatch_common::{
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_signing::{SigningConfig, build};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub const SERVICE_TOKEN: &str = "test-service-token-0123456789";

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// SQLite + in-memory sessions.
    Embedded,
    /// PostgreSQL + Redis.
    Distributed,
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    shutdown: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("edgewatch-signing-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn config(shape: Shape) -> SigningConfig {
    let mut config = SigningConfig {
        keys_dir: temp_dir("keys"),
        service_token: SERVICE_TOKEN.into(),
        ..SigningConfig::default()
    };
    match shape {
        Shape::Embedded => {
            config.database_url = services::sqlite_url("signing.db");
            config.cache_url = "memory://".into();
        }
        Shape::Distributed => {
            config.database_url = services::postgres_database().await;
            config.cache_url = services::require("EDGEWATCH_TEST_REDIS_URL");
            config.cache_namespace = format!("test:{}:", uuid::Uuid::new_v4().simple());
        }
    }
    config
}

pub async fn spawn_app(shape: Shape) -> TestApp {
    spawn_with(config(shape).await).await
}

pub async fn spawn_with(config: SigningConfig) -> TestApp {
    let (router, _) = build(&config).await.expect("build the signing service");
    let shutdown = Shutdown::new();
    let base = serve_on_loopback(router, &shutdown).await;
    TestApp { base, client: Client::new(), shutdown }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/register", &json!({"email": email, "password": password})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login", &json!({"email": email, "password": password})).await
    }

    /// Registers and signs in; returns the token pair.
    pub async fn signed_in(&self, email: &str) -> Value {
        let registered = self.register(email, "correct horse battery").await;
        assert_eq!(
            registered.status(),
            StatusCode::CREATED,
            "{}",
            registered.text().await.unwrap()
        );
        let login = self.login(email, "correct horse battery").await;
        assert_eq!(login.status(), StatusCode::OK);
        login.json().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post("/api/v1/auth/refresh", &json!({"refresh_token": refresh_token})).await
    }

    /// Posts `body` expecting a 422; returns the field it names.
    pub async fn invalid_field(&self, path: &str, body: Value) -> String {
        let answer = self.post(path, &body).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = answer.json().await.unwrap();
        error["error"]["fields"]
            .as_object()
            .expect("fields")
            .keys()
            .next()
            .expect("a field")
            .clone()
    }

    pub async fn me(&self, access_token: &str) -> Response {
        self.client.get(self.url("/api/v1/auth/me")).bearer_auth(access_token).send().await.unwrap()
    }
}

/// Asserts the contract's error body and returns its code.
pub async fn error_code(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    body["error"]["code"].as_str().expect("an error code").to_owned()
}
