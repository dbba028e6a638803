//! Self-test of the real-broker harness (`tests/common`): Tansu starts,
//! topics are created, records round-trip byte for byte, parallel brokers do
//! not collide, and the raw HTTP client and metrics parser read what axum and
//! Prometheus write.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::{service, Broker, OutRecord, TopicReader};
use rdkafka::Offset;

/// 1,000 records with keys, values and headers (plus an unkeyed record and
/// a tombstone) come back byte for byte at the offsets the producer got.
fn round_trip(broker: &Broker, topic: &str) {
    broker.create_topics(&[(topic, 3), ("other", 1)]);
    assert_eq!(broker.partitions(topic), Some(3));
    let mut sent: Vec<OutRecord> = (0..1_000)
        .map(|i| {
            OutRecord::new(format!("key-{}", i % 37), format!("{{\"n\":{i}}}"))
                .header("n", i.to_string())
                .header("bin", vec![0u8, 255, i as u8])
        })
        .collect();
    sent.push(OutRecord::unkeyed(b"\xff\xfe not utf-8".to_vec()));
    sent.push(OutRecord::tombstone("key-1").header("why", "delete"));
    sent.push(OutRecord::new("pinned", "p2").partition(2));
    let at = broker.produce(topic, &sent);
    assert_eq!(at.len(), sent.len());
    assert_eq!(at.last().map(|&(p, _)| p), Some(2));

    let read = broker.read_topic(topic, 3, sent.len(), Duration::from_secs(30));
    assert_eq!(read.len(), sent.len(), "no record read twice");
    for (out, &(partition, offset)) in sent.iter().zip(&at) {
        let r = read
            .iter()
            .find(|r| r.partition == partition && r.offset == offset)
            .unwrap_or_else(|| panic!("nothing read at {partition}/{offset}"));
        assert_eq!(r.key, out.key, "{partition}/{offset}");
        assert_eq!(r.payload, out.payload, "{partition}/{offset}");
        let headers: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut want = out.headers.clone();
        want.sort();
        assert_eq!(headers, want, "{partition}/{offset}");
        assert!(r.timestamp.is_some_and(|t| t > 0));
    }
    // Same key, same partition; per-partition order is send order.
    for p in 0..3 {
        let offsets: Vec<i64> = read
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    }
    let k1: Vec<i32> = read
        .iter()
        .filter(|r| r.key.as_deref() == Some(&b"key-1"[..]))
        .map(|r| r.partition)
        .collect();
    assert!(k1.len() > 1 && k1.iter().all(|&p| p == k1[0]), "{k1:?}");
    assert_eq!(read[0].json()["n"].as_i64().map(|n| n >= 0), Some(true));

    // A reader sees records produced after it started, and goes quiet.
    let mut reader = broker.reader("other", 1);
    assert_eq!(reader.poll(Duration::from_millis(200)), 0);
    broker.produce(
        "other",
        &[OutRecord::new("a", "1"), OutRecord::new("b", "2")],
    );
    reader.wait_count(2, Duration::from_secs(10));
    reader.wait_quiet(Duration::from_millis(300), Duration::from_secs(10));
    assert_eq!(reader.records().len(), 2);
    assert_eq!(reader.records()[1].header("none"), None);
    assert_eq!(reader.records()[1].key_str(), Some("b"));
}

#[test]
fn two_brokers_in_parallel_round_trip_records() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Broker::start);
        let b = s.spawn(Broker::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    std::thread::scope(|s| {
        s.spawn(|| round_trip(&a, "events"));
        s.spawn(|| round_trip(&b, "events"));
    });
    // Each broker holds only its own records.
    assert_eq!(a.partitions("events"), Some(3));
    let only_a = a.read_topic("other", 1, 2, Duration::from_secs(10));
    assert_eq!(only_a.len(), 2);
}

/// Offsets read from `partition` 0 of `topic` starting at `from`, until
/// the topic goes quiet.
fn offsets_from(broker: &Broker, topic: &str, from: i64) -> Vec<i64> {
    let mut reader =
        TopicReader::starting_at(&broker.bootstrap(), topic, &[(0, Offset::Offset(from))]);
    reader.poll(Duration::from_secs(5));
    reader
        .wait_quiet(Duration::from_millis(500), Duration::from_secs(20))
        .iter()
        .map(|r| r.offset)
        .collect()
}

/// The Tansu 0.6.0 quirk that `Broker::unbatched_producer` works around: a
/// fetch that starts inside a stored batch gets the batches after it, so
/// the rest of that batch is never delivered (Kafka hands back the whole
/// batch and the client skips to the offset). A consumer group resuming
/// from a commit inside a batch loses those records. If this test fails,
/// Tansu no longer does this and the workaround can go.
#[test]
fn tansu_skips_the_rest_of_a_batch_when_a_fetch_starts_inside_it() {
    let broker = Broker::start();
    broker.create_topics(&[("batched", 1), ("unbatched", 1)]);
    let ten = |tag: &str| -> Vec<OutRecord> {
        (0..10)
            .map(|i| OutRecord::new("k", format!("{tag}-{i}")).partition(0))
            .collect()
    };
    // Ten records sent together within the linger time make one batch.
    let batched = broker.producer_with(&[("linger.ms", "200")]);
    let first = batched.send("batched", &ten("a"));
    let second = batched.send("batched", &ten("b"));
    assert_eq!(first[0].1, 0);
    assert_eq!(second[0].1, 10);
    assert_eq!(
        offsets_from(&broker, "batched", 0),
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(
        offsets_from(&broker, "batched", 3),
        (10..20).collect::<Vec<_>>(),
        "from inside the first batch, Tansu starts at the second"
    );

    // One record per batch: every offset is a batch start, nothing is skipped.
    let unbatched = broker.unbatched_producer();
    unbatched.send("unbatched", &ten("a"));
    unbatched.send("unbatched", &ten("b"));
    for from in [0, 3, 10, 17] {
        assert_eq!(
            offsets_from(&broker, "unbatched", from),
            (from..20).collect::<Vec<_>>(),
            "from {from}"
        );
    }
}

#[test]
fn creating_an_existing_topic_fails_loudly() {
    let broker = Broker::start();
    broker.create_topics_with(&[("compacted", 2, &[("cleanup.policy", "compact")])]);
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        broker.create_topics(&[("compacted", 2)])
    }));
    assert!(again.is_err(), "a second create must be reported");
}

/// Serves `responses` one connection each on a loopback port.
fn serve_raw(responses: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for response in responses {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                req.extend_from_slice(&buf[..n]);
            }
            requests.push(String::from_utf8(req).unwrap());
            conn.write_all(&response).unwrap();
        }
        requests
    });
    (port, handle)
}

#[test]
fn http_client_reads_plain_and_chunked_bodies() {
    let (port, server) = serve_raw(vec![
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
            .to_vec(),
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5;x=y\r\nready\r\n0\r\n\r\n"
            .to_vec(),
    ]);
    assert_eq!(
        service::http_get(port, "/v1/features/card-1?at=5").unwrap(),
        (200, "{\"ok\":true}".to_owned())
    );
    assert_eq!(
        service::http_get(port, "/readyz").unwrap(),
        (503, "not ready".to_owned())
    );
    let requests = server.join().unwrap();
    assert!(requests[0].starts_with("GET /v1/features/card-1?at=5 HTTP/1.1\r\n"));
    assert!(service::parse_response(b"garbage").is_err());
}

#[test]
fn metric_sum_adds_every_series_of_one_name() {
    let page = "# HELP driftline_assigned_partitions Partitions owned.\n\
                # TYPE driftline_assigned_partitions gauge\n\
                driftline_assigned_partitions{topic=\"features\"} 3\n\
                driftline_assigned_partitions{topic=\"feature-updates\"} 1\n\
                driftline_assigned_partitions_total 100\n\
                driftline_events_total{reason=\"a b}\"} 2.5 1700000000\n\
                driftline_up 1\n";
    assert_eq!(
        crate::common::metric_sum(page, "driftline_assigned_partitions"),
        Some(4.0)
    );
    assert_eq!(
        crate::common::metric_sum(page, "driftline_events_total"),
        Some(2.5)
    );
    assert_eq!(crate::common::metric_sum(page, "driftline_up"), Some(1.0));
    assert_eq!(crate::common::metric_sum(page, "driftline_missing"), None);
}
