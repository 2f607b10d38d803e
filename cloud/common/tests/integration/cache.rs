use std::sync::Arc;

use edgewatch_common::{
    cache::{self, Cache, CacheError, memory::MemoryCache},
    testkit::conformance,
};

#[tokio::test]
async fn memory_cache_conformance() {
    conformance::cache::run(|| async { Arc::new(MemoryCache::new(10_000)) as Arc<dyn Cache> })
        .await;
}

#[tokio::test]
async fn cache_urls_pick_the_adapter() {
    assert!(cache::connect("memory://").is_ok());
    assert!(matches!(cache::connect("nosuch://x"), Err(CacheError::UnsupportedUrl(_))));
}
