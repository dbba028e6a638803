//! One Tansu broker (memory storage, loopback) for a whole load-test run.
//!
//! Guarantees: [`Broker::start`] returns only once the broker answers a
//! metadata request, and the process dies with the [`Broker`] (its
//! [`Guard`]); [`Broker::create_topics`] returns only once every partition
//! shows in the metadata, so nothing is produced to a topic being created.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::procs::{free_port, tail, Guard};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `scripts/install-tansu.sh` (builds Tansu once, then answers from its
/// cache) and returns the binary it printed.
pub fn install(root: &Path) -> anyhow::Result<PathBuf> {
    let script = root.join("scripts/install-tansu.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| anyhow!("{} printed no path", script.display()))?;
    if !path.is_file() {
        bail!(
            "{} printed {}, which is not a file",
            script.display(),
            path.display()
        );
    }
    Ok(path)
}

/// A running broker and an admin client for it.
pub struct Broker {
    process: Guard,
    port: u16,
    log: PathBuf,
    admin: AdminClient<DefaultClientContext>,
    runtime: tokio::runtime::Runtime,
}

impl Broker {
    /// Starts Tansu on a free loopback port, logging to `log`.
    pub fn start(binary: &Path, log: &Path) -> anyhow::Result<Broker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for admin calls")?;
        let mut last = String::new();
        // A port free when picked can be taken before Tansu binds it: retry.
        for _ in 0..3 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let out = std::fs::File::create(log)
                .with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            let mut process = Guard::spawn(
                "tansu",
                Command::new(binary)
                    .args(["broker", "--listener-url", &url])
                    .args(["--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err),
            )?;
            match wait_usable(&mut process, port) {
                Ok(admin) => {
                    return Ok(Broker {
                        process,
                        port,
                        log: log.to_path_buf(),
                        admin,
                        runtime,
                    })
                }
                Err(why) => {
                    last = format!("{why}\n--- tansu log ---\n{}", tail(log, 30));
                    if process.exited().is_none() {
                        break;
                    }
                }
            }
        }
        bail!("Tansu did not start: {last}")
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails when the broker process has died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.exited() {
            bail!(
                "Tansu exited ({status})\n--- tansu log ---\n{}",
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Creates `(name, partitions)` topics and waits until their metadata
    /// shows every partition.
    pub fn create_topics(&self, topics: &[(String, i32)]) -> anyhow::Result<()> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .runtime
            .block_on(self.admin.create_topics(&new, &opts))
            .context("creating topics")?;
        for r in results {
            if let Err((name, code)) = r {
                bail!("creating topic {name}: {code}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (name, partitions) in topics {
            loop {
                if self.partitions(name) == Some(*partitions as usize) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("topic {name} did not show {partitions} partitions in the metadata");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Deletes topics (best effort: frees the broker's memory between runs).
    pub fn delete_topics(&self, names: &[String]) -> anyhow::Result<()> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .runtime
            .block_on(self.admin.delete_topics(&refs, &opts))
            .context("deleting topics")?;
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|(name, code)| format!("{name}: {code}")))
            .collect();
        if !failed.is_empty() {
            bail!("deleting topics: {}", failed.join(", "));
        }
        Ok(())
    }

    /// Partitions of `topic` in the metadata (`None` if unknown).
    pub fn partitions(&self, topic: &str) -> Option<usize> {
        let md = self
            .admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len())
    }
}

fn wait_usable(
    process: &mut Guard,
    port: u16,
) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last = String::from("no attempt yet");
    while start.elapsed() < READY_TIMEOUT {
        if let Some(status) = process.exited() {
            bail!("tansu exited with {status} before it was ready");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", format!("127.0.0.1:{port}"))
                .create()
                .context("creating the admin client")?;
            match admin.inner().fetch_metadata(None, Duration::from_secs(2)) {
                Ok(md) if !md.brokers().is_empty() => return Ok(admin),
                Ok(_) => last = "metadata lists no broker".into(),
                Err(e) => last = format!("metadata: {e}"),
            }
        } else {
            last = "not accepting connections".into();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("tansu on port {port} not usable after {READY_TIMEOUT:?} ({last})")
}
