use std::sync::Arc;

use edgewatch_common::{
    cache::{self, Cache, CacheError, memory::MemoryCache, redis::RedisCache},
    testkit::conformance,
};

#[tokio::test]
async fn memory_cache_conformance() {
    conformance::cache::run(|| async { Arc::new(MemoryCache::new(10_000)) as Arc<dyn Cache> })
        .await;
}

#[tokio::test]
async fn cache_urls_pick_the_adapter() {
    assert!(cache::connect("memory://", "t:").await.is_ok());
    assert!(matches!(cache::connect("nosuch://x", "t:").await, Err(CacheError::UnsupportedUrl(_))));
}

#[tokio::test]
async fn redis_cache_conformance() {
    let url = edgewatch_common::testkit::services::require("EDGEWATCH_TEST_REDIS_URL");
    conformance::cache::run(|| {
        let url = url.clone();
        async move {
            let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
            Arc::new(RedisCache::connect(&url, &prefix).await.expect("connect to Redis"))
                as Arc<dyn Cache>
        }
    })
    .await;
}

#[tokio::test]
async fn redis_cache_reports_an_unreachable_server() {
    // Nothing listens on port 9: connecting fails with Unavailable, it does not hang.
    let started = std::time::Instant::now();
    assert!(matches!(
        RedisCache::connect("redis://127.0.0.1:9", "x:").await,
        Err(CacheError::Unavailable(_))
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
