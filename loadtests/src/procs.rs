//! Child processes (Tansu, driftline, the pass-through) and what the load
//! test reads about them.
//!
//! Guarantees: a [`Guard`] kills its process (SIGKILL) and reaps it when
//! dropped, so every error path, panic unwinding included, leaves no broker
//! or service behind; [`Guard::terminate`] is the graceful way (SIGTERM,
//! wait, SIGKILL after a timeout). Memory and CPU come from `/proc`.

use std::io::{BufRead as _, Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A child process that is killed when the guard is dropped.
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Option<Child>,
}

impl Guard {
    pub fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Guard> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Guard {
            name: name.to_string(),
            child: Some(child),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then waits up to `timeout` for the exit; SIGKILL after that.
    /// Returns the exit status and whether it had to be killed.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, bool)> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            return Ok((status, false));
        }
        // `kill` from the system rather than a libc binding: one process
        // per run, and no unsafe code.
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not send SIGTERM to {}", self.name);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok((status, false));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        let status = child.wait()?;
        self.child = None;
        Ok((status, true))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The status code of `GET path` on `addr` (plain HTTP/1.1 over TCP).
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    std::io::BufReader::new(Read::by_ref(&mut stream).take(1024)).read_line(&mut line)?;
    parse_status_line(&line).with_context(|| format!("unexpected answer {line:?}"))
}

fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&text, field)
}

fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User + system CPU time of a process so far, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&text)
}

fn parse_stat_cpu(text: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces and parentheses):
    // state is field 3, utime 14, stime 15 (1-based).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc reports in USER_HZ, which the kernel fixes at 100 for user space.
    Some((utime + stime) / 100.0)
}

/// One thread of a process: id, name (`comm`), CPU seconds so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub secs: f64,
}

/// Every thread of `pid` with its CPU time so far (empty if it is gone).
pub fn thread_cpu(pid: u32) -> Vec<ThreadCpu> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<ThreadCpu> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some(ThreadCpu {
                tid,
                name: name.trim().to_string(),
                secs: parse_stat_cpu(&stat)?,
            })
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    threads
}

/// CPU time the whole machine spent busy so far (all cores, all
/// processes), in seconds: the `cpu` line of `/proc/stat`.
pub fn machine_busy_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&text)
}

fn parse_machine_busy(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already
    // counted in user): everything but idle and iowait.
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum::<f64>();
    Some(busy / 100.0)
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        let status = "Name:\tdriftline\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(102_400));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(204_800));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        let stat = "1234 (odd (name) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert_eq!(
            parse_status_line("HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line("garbage"), None);
        let stat = "cpu  100 20 30 5000 7 1 2 3 40 0\ncpu0 50 10 15 2500 3 0 1 1 20 0\n";
        assert_eq!(parse_machine_busy(stat), Some(1.56));
    }

    #[test]
    fn guard_kills_on_drop() {
        let guard = Guard::spawn("sleep", Command::new("sleep").arg("30")).unwrap();
        let pid = guard.pid();
        drop(guard);
        // Reaped: no /proc entry (or a different process reusing the pid).
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep"));
        assert!(!alive);
    }

    #[test]
    fn terminate_is_graceful() {
        let mut guard = Guard::spawn("sleep", Command::new("sleep").arg("30")).unwrap();
        let (status, killed) = guard.terminate(Duration::from_secs(5)).unwrap();
        assert!(!killed, "sleep stops on SIGTERM");
        assert!(!status.success());
    }
}
