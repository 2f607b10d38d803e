//! One conformance suite for the account store, run on PostgreSQL and SQLite.

use std::sync::Arc;

use edgewatch_common::{auth::Role, testkit::services};
use edgewatch_protocol::{Timestamp, UserId};
use edgewatch_signing::{
    domain::{Email, NewUser},
    repository::{RepoError, UserRepository, postgres::PostgresUsers, sqlite::SqliteUsers},
};

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId::new(),
        email: Email::parse(email).unwrap(),
        name: Some("Ada".into()),
        password_hash: "$argon2id$placeholder".into(),
        created_at: Timestamp::from_millis(1_795_651_200_123).unwrap(),
    }
}

async fn conformance(users: Arc<dyn UserRepository>) {
    users.ping().await.unwrap();
    let first = users.create(new_user("first@example.com")).await.unwrap();
    assert_eq!(first.role, Role::Admin, "the first account is admin");
    let second = users.create(new_user("second@example.com")).await.unwrap();
    assert_eq!(second.role, Role::User);
    assert_eq!(second.created_at.as_millis(), 1_795_651_200_123);
    assert_eq!(second.name.as_deref(), Some("Ada"));

    assert_eq!(users.create(new_user("first@example.com")).await, Err(RepoError::EmailTaken));
    let by_email =
        users.by_email(&Email::parse("FIRST@example.com").unwrap()).await.unwrap().unwrap();
    assert_eq!(by_email, first);
    assert_eq!(users.by_id(second.id).await.unwrap().unwrap(), second);
    assert!(users.by_id(UserId::new()).await.unwrap().is_none());
    assert!(users.by_email(&Email::parse("nobody@example.com").unwrap()).await.unwrap().is_none());

    // Concurrent registrations: exactly one more admin is impossible, every email is stored once.
    let racers = (0..10).map(|i| {
        let users = Arc::clone(&users);
        tokio::spawn(
            async move { users.create(new_user(&format!("racer{}@example.com", i % 5))).await },
        )
    });
    let results: Vec<_> = futures_join(racers).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert!(results.iter().all(|r| matches!(r, Ok(u) if u.role == Role::User) || *r == Err(RepoError::EmailTaken)));
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn postgres_repository_conformance() {
    let url = services::postgres_database().await;
    conformance(Arc::new(PostgresUsers::connect(&url).await.unwrap())).await;
}

#[tokio::test]
async fn sqlite_repository_conformance() {
    let url = services::sqlite_url("users.db");
    conformance(Arc::new(SqliteUsers::connect(&url).await.unwrap())).await;
}

#[tokio::test]
async fn first_registrations_racing_make_one_admin() {
    for users in [
        Arc::new(PostgresUsers::connect(&services::postgres_database().await).await.unwrap())
            as Arc<dyn UserRepository>,
        Arc::new(SqliteUsers::connect(&services::sqlite_url("race.db")).await.unwrap()),
    ] {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let users = Arc::clone(&users);
                tokio::spawn(async move {
                    users.create(new_user(&format!("u{i}@example.com"))).await.unwrap()
                })
            })
            .collect();
        let created = futures_join(racers.into_iter()).await;
        assert_eq!(created.iter().filter(|u| u.role == Role::Admin).count(), 1);
    }
}
