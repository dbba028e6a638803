//! A Tansu broker per test, and plain Kafka clients to feed and read it.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{free_port, scratch_dir, tail};

/// How long a broker may take to accept connections and answer metadata.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a future to completion on a throwaway single-thread runtime
/// (rdkafka's admin and delivery futures are driven by librdkafka's threads).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(f)
}

/// The Tansu binary: `$DRIFTLINE_TANSU`, else the cache of `scripts/install-tansu.sh`.
fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DRIFTLINE_TANSU").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "Tansu not found: DRIFTLINE_TANSU={} is not a file; run scripts/install-tansu.sh (or scripts/test.sh)",
            p.display()
        );
        return p;
    }
    let cache = std::env::var_os("DRIFTLINE_TANSU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/driftline/tansu-0.6.0")
        });
    let p = cache.join("bin/tansu");
    assert!(
        p.is_file(),
        "Tansu not found: run scripts/install-tansu.sh (or scripts/test.sh); looked for {}",
        p.display()
    );
    p
}

/// Tansu's in-memory storage engine.
const MEMORY: &str = "memory://tansu/";

/// A topic to create: name, partitions, topic configs.
pub type TopicSpec<'a> = (&'a str, i32, &'a [(&'a str, &'a str)]);

/// A Tansu broker with in-memory storage on a free loopback port. Killed on
/// drop; its log is printed when the test is failing.
pub struct Broker {
    child: Child,
    port: u16,
    /// `--storage-engine`: memory, or a SQLite file in `dir` that survives
    /// a [`restart`](Self::restart).
    storage: String,
    log: PathBuf,
    dir: Option<tempfile::TempDir>,
    admin: AdminClient<DefaultClientContext>,
}

impl Broker {
    /// Starts a broker and waits until it answers a metadata request.
    pub fn start() -> Broker {
        Self::start_on(MEMORY)
    }

    /// A broker whose topics, records and committed offsets are kept in a
    /// SQLite file (Tansu's `libsql` engine), so it can be stopped and
    /// started again on the same port and storage.
    pub fn start_durable() -> Broker {
        Self::start_on("sqlite://tansu.db")
    }

    /// A broker on a storage engine of the caller's (e.g. a PostgreSQL URL
    /// whose database has Tansu's schema), kept across a restart.
    pub fn start_durable_at(storage: &str) -> Broker {
        Self::start_on(storage)
    }

    /// Kills the broker process (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port and storage (after
    /// [`stop`](Self::stop)) and waits until it answers.
    pub fn restart(&mut self) {
        let dir = self.dir.as_ref().expect("the broker's directory").path();
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("opening the broker log");
        self.child = spawn_tansu(&tansu_binary(), dir, self.port, &self.storage, out);
        if let Err(why) = wait_usable(&mut self.child, self.port) {
            panic!("tansu did not come back: {why}\n{}", tail(&self.log, 60));
        }
    }

    /// A broker (memory storage) on `port`, e.g. one a service was
    /// already told to use.
    pub fn start_on_port(port: u16) -> Broker {
        Self::start_with(MEMORY, Some(port))
    }

    fn start_on(storage: &str) -> Broker {
        Self::start_with(storage, None)
    }

    fn start_with(storage: &str, port: Option<u16>) -> Broker {
        let bin = tansu_binary();
        let dir = scratch_dir("tansu-");
        let log = dir.path().join("tansu.log");
        // The port is free when picked but could be taken before Tansu binds
        // it: try a few ports.
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            let port = port.unwrap_or_else(free_port);
            let out = std::fs::File::create(&log).expect("creating the broker log");
            let mut child = spawn_tansu(&bin, dir.path(), port, storage, out);
            match wait_usable(&mut child, port) {
                Ok(admin) => {
                    return Broker {
                        child,
                        port,
                        storage: storage.to_string(),
                        log,
                        dir: Some(dir),
                        admin,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_failure = format!("{why}\n--- tansu log ---\n{}", tail(&log, 60));
                    if !why.contains("exited") {
                        break;
                    }
                }
            }
        }
        let kept = dir.keep();
        panic!(
            "Tansu broker did not start (logs kept in {}): {last_failure}",
            kept.display()
        );
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers` / `DRIFTLINE_KAFKA__BROKERS`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates topics `(name, partitions)` (replication 1) and waits until
    /// their metadata shows every partition.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let specs: Vec<TopicSpec<'_>> = topics.iter().map(|&(n, p)| (n, p, &[][..])).collect();
        self.create_topics_with(&specs);
    }

    /// As [`create_topics`](Self::create_topics), with topic configs
    /// (e.g. `("cleanup.policy", "compact")`).
    pub fn create_topics_with(&self, topics: &[TopicSpec<'_>]) {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|&(name, partitions, config)| {
                config.iter().fold(
                    NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
                    |t, &(k, v)| t.set(k, v),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = block_on(self.admin.create_topics(&new, &opts))
            .unwrap_or_else(|e| panic!("create_topics {topics:?}: {e}"));
        for r in results {
            if let Err((name, code)) = r {
                panic!("creating topic {name}: {code}");
            }
        }
        for &(name, partitions, _) in topics {
            super::wait_until(
                &format!("topic {name} with {partitions} partitions in the metadata"),
                Duration::from_secs(10),
                || {
                    let md = self
                        .admin
                        .inner()
                        .fetch_metadata(Some(name), Duration::from_secs(2))
                        .ok()?;
                    let t = md.topics().iter().find(|t| t.name() == name)?;
                    (t.error().is_none() && t.partitions().len() == partitions as usize)
                        .then_some(())
                },
            );
        }
    }

    /// Number of partitions of `topic` according to the broker (None if unknown).
    pub fn partitions(&self, topic: &str) -> Option<usize> {
        let md = self
            .admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        t.error().is_none().then(|| t.partitions().len())
    }

    /// A consumer in `group` that never joins it (for reading and writing
    /// the group's commits).
    fn group_consumer(&self, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("creating a consumer for group {group}: {e}"))
    }

    /// The offsets `group` has committed on partitions `0..partitions` of
    /// `topic` (`None`: nothing committed).
    pub fn committed_offsets(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer = self.group_consumer(group);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("committed offsets of {group} on {topic}: {e}"));
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect()
    }

    /// Commits `offsets` ((partition, next offset to read)) of `topic` for
    /// `group` without joining it, as an earlier owner would have.
    pub fn commit_offsets(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        let consumer = self.group_consumer(group);
        let mut tpl = TopicPartitionList::new();
        for &(p, offset) in offsets {
            tpl.add_partition_offset(topic, p, Offset::Offset(offset))
                .expect("building the commit");
        }
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .unwrap_or_else(|e| panic!("committing {offsets:?} of {topic} for {group}: {e}"));
    }

    /// A producer for this broker.
    pub fn producer(&self) -> Producer {
        Producer::new(&self.bootstrap())
    }

    /// A producer with extra librdkafka properties.
    pub fn producer_with(&self, properties: &[(&str, &str)]) -> Producer {
        Producer::with(&self.bootstrap(), properties)
    }

    /// A producer that writes every record as a batch of its own, for
    /// tests in which a consumer group resumes mid-stream (restarts,
    /// hand-overs). Tansu 0.6.0 answers a fetch that starts inside a stored
    /// batch with the batches after it, so a group that committed inside a
    /// batch would never get the rest of it: a broker fault, not the
    /// service's (real Kafka returns the whole batch and the client skips
    /// to the offset). With one record per batch every offset is a batch
    /// start. `tests/kafka/selftest.rs` pins the quirk down, so a fixed Tansu shows.
    pub fn unbatched_producer(&self) -> Producer {
        self.producer_with(&[("batch.num.messages", "1")])
    }

    /// Sends `records` to `topic` and waits for every delivery; returns
    /// `(partition, offset)` per record, in order.
    pub fn produce(&self, topic: &str, records: &[OutRecord]) -> Vec<(i32, i64)> {
        self.producer().send(topic, records)
    }

    /// A reader of every partition of `topic` from the beginning (no group).
    pub fn reader(&self, topic: &str, partitions: i32) -> TopicReader {
        TopicReader::new(&self.bootstrap(), topic, partitions)
    }

    /// Reads `topic` from the beginning until at least `expected` records
    /// have arrived; panics after `timeout`.
    pub fn read_topic(
        &self,
        topic: &str,
        partitions: i32,
        expected: usize,
        timeout: Duration,
    ) -> Vec<Record> {
        let mut r = self.reader(topic, partitions);
        r.wait_count(expected, timeout);
        r.into_records()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "--- tansu broker 127.0.0.1:{} (log kept in {}) ---\n{}",
                    self.port,
                    kept.display(),
                    tail(&self.log, 40)
                );
            }
        }
    }
}

/// Starts `tansu broker` on `port` with `storage`, in `dir` (where a
/// SQLite file goes), logging to `log`.
fn spawn_tansu(
    bin: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    storage: &str,
    log: std::fs::File,
) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let err = log.try_clone().expect("cloning the broker log handle");
    Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", storage])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()))
}

/// Waits until the broker on `port` accepts TCP and answers a metadata call.
fn wait_usable(child: &mut Child, port: u16) -> Result<AdminClient<DefaultClientContext>, String> {
    let start = Instant::now();
    let mut admin: Option<AdminClient<DefaultClientContext>> = None;
    let mut last = String::from("no attempt yet");
    while start.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("tansu exited with {status} before it was ready"));
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) => last = format!("connect: {e}"),
            Ok(_) => {
                let client = match admin.take() {
                    Some(c) => c,
                    None => ClientConfig::new()
                        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
                        .create()
                        .map_err(|e| format!("admin client: {e}"))?,
                };
                match client.inner().fetch_metadata(None, Duration::from_secs(2)) {
                    Ok(md) if !md.brokers().is_empty() => return Ok(client),
                    Ok(_) => last = "metadata lists no broker".into(),
                    Err(e) => last = format!("metadata: {e}"),
                }
                admin = Some(client);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "tansu on port {port} not usable after {READY_TIMEOUT:?} ({last})"
    ))
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutRecord {
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// `None`: the default partitioner (by key hash).
    pub partition: Option<i32>,
}

impl OutRecord {
    pub fn new(key: impl Into<Vec<u8>>, payload: impl Into<Vec<u8>>) -> Self {
        OutRecord {
            key: Some(key.into()),
            payload: Some(payload.into()),
            ..Default::default()
        }
    }

    /// A record without a key.
    pub fn unkeyed(payload: impl Into<Vec<u8>>) -> Self {
        OutRecord {
            payload: Some(payload.into()),
            ..Default::default()
        }
    }

    /// A null value (deletes the key on a compacted topic).
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        OutRecord {
            key: Some(key.into()),
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// A producer that waits for the broker's acknowledgement of every record.
pub struct Producer {
    inner: FutureProducer,
    rt: tokio::runtime::Runtime,
}

impl Producer {
    pub fn new(bootstrap: &str) -> Producer {
        Producer::with(bootstrap, &[])
    }

    /// A producer with `properties` on top of the defaults.
    pub fn with(bootstrap: &str, properties: &[(&str, &str)]) -> Producer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .set("acks", "all")
            .set("message.timeout.ms", "30000");
        for (key, value) in properties {
            config.set(*key, *value);
        }
        let inner: FutureProducer = config
            .create()
            .unwrap_or_else(|e| panic!("creating a producer for {bootstrap}: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        Producer { inner, rt }
    }

    /// Sends `records` to `topic` (in order, so per-partition order is kept)
    /// and waits for all deliveries; panics on any failure. Returns
    /// `(partition, offset)` per record.
    pub fn send(&self, topic: &str, records: &[OutRecord]) -> Vec<(i32, i64)> {
        let mut pending = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let mut fr = FutureRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = &r.key {
                fr = fr.key(k.as_slice());
            }
            if let Some(p) = &r.payload {
                fr = fr.payload(p.as_slice());
            }
            if let Some(p) = r.partition {
                fr = fr.partition(p);
            }
            if !r.headers.is_empty() {
                let headers = r.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(r.headers.len()),
                    |h, (key, value)| {
                        h.insert(Header {
                            key,
                            value: Some(value),
                        })
                    },
                );
                fr = fr.headers(headers);
            }
            let started = Instant::now();
            loop {
                match self.inner.send_result(fr) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        assert!(
                            started.elapsed() < Duration::from_secs(30),
                            "producer queue full for 30 s at record {i} of {topic}"
                        );
                        fr = back;
                        self.inner.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("producing record {i} to {topic}: {e}"),
                }
            }
        }
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(pending.len());
            for (i, delivery) in pending.into_iter().enumerate() {
                match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                    Err(_) => panic!("record {i} to {topic}: no delivery report within 60 s"),
                    Ok(Err(_)) => panic!("record {i} to {topic}: delivery report cancelled"),
                    Ok(Ok(Err((e, _)))) => panic!("record {i} to {topic} not delivered: {e}"),
                    Ok(Ok(Ok(d))) => out.push((d.partition, d.offset)),
                }
            }
            out
        })
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Header values; a header with a null value reads as empty.
    pub headers: BTreeMap<String, Vec<u8>>,
    pub partition: i32,
    pub offset: i64,
    /// Epoch ms (create or log-append time), when the broker gave one.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A header as UTF-8 (panics if it is not UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            std::str::from_utf8(v).unwrap_or_else(|e| panic!("header {name} is not UTF-8: {e}"))
        })
    }

    /// The value parsed as JSON; panics (showing the bytes) if it is not.
    pub fn json(&self) -> serde_json::Value {
        let bytes = self.payload.as_deref().unwrap_or_else(|| {
            panic!(
                "record at {}/{} has a null value",
                self.partition, self.offset
            )
        });
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "record at {}/{} is not JSON ({e}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(bytes)
            )
        })
    }

    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// Reads every partition of one topic from the beginning with a manual
/// assignment (no consumer group, nothing committed), accumulating records.
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    records: Vec<Record>,
    last_error: Option<String>,
}

impl TopicReader {
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> TopicReader {
        let starts: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
        TopicReader::starting_at(bootstrap, topic, &starts)
    }

    /// A reader of the given partitions, each from its own offset.
    pub fn starting_at(bootstrap: &str, topic: &str, starts: &[(i32, Offset)]) -> TopicReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "driftline-test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .unwrap_or_else(|e| panic!("creating a reader for {topic}: {e}"));
        let mut tpl = TopicPartitionList::new();
        for &(p, offset) in starts {
            tpl.add_partition_offset(topic, p, offset)
                .expect("building the assignment");
        }
        consumer
            .assign(&tpl)
            .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
        TopicReader {
            consumer,
            topic: topic.to_owned(),
            records: Vec::new(),
            last_error: None,
        }
    }

    /// Everything read so far, in arrival order (ordered within a partition).
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn into_records(self) -> Vec<Record> {
        self.records
    }

    /// Polls for at most `max_wait` (returning early once a record came and
    /// the next poll finds nothing); returns how many records were added.
    pub fn poll(&mut self, max_wait: Duration) -> usize {
        let before = self.records.len();
        let deadline = Instant::now() + max_wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if self.records.len() > before {
                Duration::ZERO
            } else {
                left.min(Duration::from_millis(100))
            };
            match self.consumer.poll(wait) {
                Some(Ok(m)) => self.records.push(Record {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                }),
                Some(Err(e)) => self.last_error = Some(e.to_string()),
                None if self.records.len() > before => break,
                None => {}
            }
            if left.is_zero() {
                break;
            }
        }
        self.records.len() - before
    }

    /// Reads until `done(records)` holds; panics after `timeout` naming `what`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> &[Record] {
        let start = Instant::now();
        while !done(&self.records) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} reading {}: waiting for {what}; {} record(s) read; last client error: {}",
                self.topic,
                self.records.len(),
                self.last_error.as_deref().unwrap_or("none")
            );
            self.poll(Duration::from_millis(200));
        }
        &self.records
    }

    /// Reads until at least `n` records have arrived.
    pub fn wait_count(&mut self, n: usize, timeout: Duration) -> &[Record] {
        self.wait_for(&format!("{n} record(s)"), timeout, |r| r.len() >= n)
    }

    /// Reads until nothing new has arrived for `quiet`; panics if the topic
    /// is still busy after `timeout`.
    pub fn wait_quiet(&mut self, quiet: Duration, timeout: Duration) -> &[Record] {
        let start = Instant::now();
        let mut last_new = Instant::now();
        while last_new.elapsed() < quiet {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?}: {} never went quiet for {quiet:?} ({} records)",
                self.topic,
                self.records.len()
            );
            if self.poll(Duration::from_millis(100)) > 0 {
                last_new = Instant::now();
            }
        }
        &self.records
    }
}
