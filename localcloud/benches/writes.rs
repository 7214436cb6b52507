//! `cargo bench -p kmsflow-localcloud`: secret writes per second through a cluster's API server
//! with identity storage, KMS v1 and KMS v2. Prints figures; never fails a build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/suite/common/mod.rs"]
mod common;

use common::public_kms;
use std::time::Instant;

const WRITES: usize = 1000;
const IN_FLIGHT: usize = 8;

async fn measure(kube: &common::Kube, label: &str) {
    let started = Instant::now();
    let mut next = 0;
    while next < WRITES {
        let names: Vec<String> = (next..(next + IN_FLIGHT).min(WRITES))
            .map(|i| format!("{label}-{i:05}"))
            .collect();
        let batch = names
            .iter()
            .map(|n| kube.create_secret("default", n, "0123456789abcdef0123456789abcdef"));
        for (status, body) in futures_util::future::join_all(batch).await {
            assert!(status.is_success(), "{body}");
        }
        next += IN_FLIGHT;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<10} {WRITES} writes, {IN_FLIGHT} in flight: {:>8.0} writes/s",
        WRITES as f64 / secs
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = common::start().await;
        let s = c.kms_setup("kv-bench1").await;
        let identity = c.kms_cluster(&s, "plain", "1.30", None).await;
        let v1 = c.kms_cluster(&s, "kmsv1", "1.26", Some(public_kms(&s.key_id))).await;
        let v2 = c.kms_cluster(&s, "kmsv2", "1.30", Some(public_kms(&s.key_id))).await;
        measure(&identity, "identity").await;
        measure(&v1, "kms-v1").await;
        measure(&v2, "kms-v2").await;
    });
}
