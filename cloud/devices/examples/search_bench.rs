//! Registry search latency at 100,000 devices on PostgreSQL (the test server): seeds a fresh
//! database with DEVICES devices of 100 owners (names like "north greenhouse pi4 node-01234",
//! 1-3 tags each, a quarter of them online; attributes drawn independently), then times `DeviceRepository::list` — the code path
//! of `GET /devices` — for each query shape, ROUNDS times with varied terms.
//!
//! Run:
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-devices --example search_bench -- [DEVICES] [ROUNDS]

use std::time::{Duration, Instant};

use edgewatch_common::testkit::services;
use edgewatch_devices::repository::{DeviceRepository, ListQuery, postgres::PostgresDevices};
use edgewatch_protocol::{DeviceId, DeviceStatus, UserId};
use sqlx::{Postgres, QueryBuilder};

const SITES: [&str; 20] = [
    "north", "south", "east", "west", "harbour", "orchard", "vineyard", "quarry", "meadow",
    "ridge", "lakeside", "forest", "canyon", "prairie", "delta", "summit", "valley", "island",
    "marsh", "dune",
];
const PLACES: [&str; 10] =
    ["greenhouse", "barn", "shed", "silo", "pump", "gate", "tower", "cellar", "stable", "dock"];
const KINDS: [&str; 5] = ["pi4", "pi5", "esp32", "jetson", "nuc"];
const TAGS: [&str; 30] = [
    "solar", "battery", "mains", "lte", "wifi", "lora", "indoor", "outdoor", "critical", "test",
    "beta", "legacy", "zone-a", "zone-b", "zone-c", "zone-d", "cold", "hot", "humid", "dry",
    "camera", "weather", "soil", "water", "air", "power", "door", "motion", "light", "sound",
];

/// splitmix64: independent-looking attributes per device, so that filters are not correlated
/// by construction (the planner assumes they are not).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let url = services::postgres_database().await;
    let repo = PostgresDevices::connect(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let owners: Vec<UserId> = (0..100).map(|_| UserId::new()).collect();

    let started = Instant::now();
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(2_000) {
        let mut sql = QueryBuilder::<Postgres>::new(
            "INSERT INTO devices (id, owner_id, name, kind, tags, metadata, status, last_seen_at_ms, \
             created_at_ms, updated_at_ms) ",
        );
        sql.push_values(chunk, |mut row, &i| {
            let id = DeviceId::new();
            ids.push(id);
            let pick = |salt: u64, n: usize| (mix(i as u64 * 16 + salt) % n as u64) as usize;
            let kind = KINDS[pick(1, KINDS.len())];
            let name = format!(
                "{} {} {kind} node-{i:05}",
                SITES[pick(2, SITES.len())],
                PLACES[pick(3, PLACES.len())]
            );
            let tags: Vec<&str> =
                (0..1 + pick(4, 3)).map(|t| TAGS[pick(5 + t as u64, TAGS.len())]).collect();
            let online = pick(9, 4) == 0;
            row.push_bind(id.to_string())
                .push_unseparated("::uuid")
                .push_bind(owners[i % owners.len()].to_string())
                .push_unseparated("::uuid")
                .push_bind(name)
                .push_bind(kind)
                .push_bind(serde_json::to_string(&tags).unwrap())
                .push_unseparated("::jsonb")
                .push_bind("{}")
                .push_unseparated("::jsonb")
                .push_bind(if online { "online" } else { "never_seen" })
                .push_bind(online.then_some(1_795_651_200_000i64))
                .push_bind(1_795_651_200_000i64)
                .push_bind(1_795_651_200_000i64);
        });
        sql.build().execute(&pool).await.unwrap();
    }
    sqlx::query("ANALYZE devices").execute(&pool).await.unwrap();
    println!("seeded {count} devices in {:.1} s", started.elapsed().as_secs_f64());

    type Shape = (&'static str, Box<dyn Fn(usize) -> ListQuery>);
    let ids_for_cursor = ids.clone();
    let owners_c = owners.clone();
    let owners_d = owners.clone();
    let shapes: Vec<Shape> = vec![
        (
            "admin, q = a site word (5% match)",
            Box::new(|r| ListQuery {
                q: Some(SITES[r % SITES.len()].into()),
                limit: 51,
                ..Default::default()
            }),
        ),
        (
            "admin, q = one device's number (1 match)",
            Box::new(move |r| ListQuery {
                q: Some(format!("node-{:05}", (r * 7_919) % count)),
                limit: 51,
                ..Default::default()
            }),
        ),
        (
            "admin, q = a tag prefix ('zone-')",
            Box::new(|_| ListQuery { q: Some("zone-".into()), limit: 51, ..Default::default() }),
        ),
        (
            "admin, q = no match ('qqxz')",
            Box::new(|_| ListQuery { q: Some("qqxz".into()), limit: 51, ..Default::default() }),
        ),
        (
            "admin, q = 2 characters ('rc')",
            Box::new(|_| ListQuery { q: Some("rc".into()), limit: 51, ..Default::default() }),
        ),
        (
            "owner, q = a place word",
            Box::new(move |r| ListQuery {
                owner: Some(owners_c[r % owners_c.len()]),
                q: Some(PLACES[r % PLACES.len()].into()),
                limit: 51,
                ..Default::default()
            }),
        ),
        (
            "owner, no filter, page 2",
            Box::new(move |r| ListQuery {
                owner: Some(owners_d[r % owners_d.len()]),
                limit: 51,
                after: Some(ids_for_cursor[(r * 13) % 5_000 + 100]),
                ..Default::default()
            }),
        ),
        (
            "admin, tag filter",
            Box::new(|r| ListQuery {
                tag: Some(TAGS[r % TAGS.len()].into()),
                limit: 51,
                ..Default::default()
            }),
        ),
        (
            "admin, status = online and kind",
            Box::new(|r| ListQuery {
                status: Some(DeviceStatus::Online),
                kind: Some(KINDS[r % KINDS.len()].into()),
                limit: 51,
                ..Default::default()
            }),
        ),
        (
            "admin, q + tag + status",
            Box::new(|r| ListQuery {
                q: Some(SITES[r % SITES.len()].into()),
                tag: Some(TAGS[r % TAGS.len()].into()),
                status: Some(DeviceStatus::Online),
                limit: 51,
                ..Default::default()
            }),
        ),
    ];
    println!("| query (limit 50 + 1) | p50 ms | p99 ms | max ms | rows (first round) |");
    println!("|---|---|---|---|---|");
    for (label, make) in &shapes {
        // Warm-up: the first calls fill PostgreSQL's caches and the statement cache.
        for r in 0..5 {
            repo.list(&make(r)).await.unwrap();
        }
        let mut times = Vec::with_capacity(rounds);
        let mut first_rows = 0;
        for r in 0..rounds {
            let query = make(r);
            let t = Instant::now();
            let rows = repo.list(&query).await.unwrap();
            times.push(t.elapsed());
            if r == 0 {
                first_rows = rows.len();
            }
        }
        times.sort();
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {first_rows} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0)
        );
    }
}
