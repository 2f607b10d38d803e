//! The cache conformance suite: values with expiry, delete, single-use take, fixed-window counters.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::cache::Cache;

use super::case;

/// Runs every case; `make` returns a fresh cache (its own instance or key space).
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Cache>>,
{
    let suite = "cache";
    let minute = Duration::from_secs(60);
    case(suite, "set, get, overwrite, delete", async {
        let cache = make().await;
        assert_eq!(cache.get("k").await.unwrap(), None);
        cache.set("k", Bytes::from_static(b"v1"), minute).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v1")));
        cache.set("k", Bytes::from_static(b"v2"), minute).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v2")));
        cache.delete("k").await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), None);
        cache.delete("never-set").await.unwrap();
        cache.ping().await.unwrap();
    })
    .await;

    case(suite, "values expire after their ttl", async {
        let cache = make().await;
        cache.set("short", Bytes::from_static(b"x"), Duration::from_millis(150)).await.unwrap();
        cache.set("long", Bytes::from_static(b"y"), minute).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(cache.get("short").await.unwrap(), None);
        assert_eq!(cache.get("long").await.unwrap(), Some(Bytes::from_static(b"y")));
    })
    .await;

    case(suite, "take hands a value to exactly one of many concurrent takers", async {
        let cache = make().await;
        cache.set("token", Bytes::from_static(b"once"), minute).await.unwrap();
        let takers = (0..16).map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.take("token").await.unwrap() })
        });
        let results = futures_util::future::join_all(takers).await;
        let winners = results.into_iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        assert_eq!(winners, 1);
        assert_eq!(cache.get("token").await.unwrap(), None);
        assert_eq!(cache.take("missing").await.unwrap(), None);
    })
    .await;

    case(suite, "counters count within their window and restart after it", async {
        let cache = make().await;
        let window = Duration::from_millis(1_000);
        let counts = futures_util::future::join_all((0..10).map(|_| {
            let cache = Arc::clone(&cache);
            async move { cache.incr("hits", window).await.unwrap() }
        }))
        .await;
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=10).collect::<Vec<u64>>(),
            "concurrent increments lost: {counts:?}"
        );
        assert_eq!(cache.incr("other", window).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(cache.incr("hits", window).await.unwrap(), 1);
    })
    .await;
}
