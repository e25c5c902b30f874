//! Goal: prove that the `xo` client commands work as the README documents
//! them, against `xo dev` run as a real process: the README's Usage section
//! is read here and its shell commands are run as written (only `cargo run
//! --release --` becomes the built binary), so the test breaks when the
//! README drifts from the command. Also: one-line errors for an unknown
//! topic, an unreachable bootstrap server and bad flag values; a failure in
//! the middle of `produce` names the lines not acknowledged; a large stdin
//! streams; `produce --header`s reach `consume --format json`; transaction
//! admin on an open transaction; and a restarted `xo dev` keeps its data.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one CLI command may run before the test fails.
const COMMAND_WAIT_MAX: Duration = Duration::from_secs(120);
/// How long `xo dev` gets to listen and register its partition servers.
const DEV_START_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long `xo dev` gets to stop after SIGTERM.
const DEV_STOP_WAIT_MAX: Duration = Duration::from_secs(30);
const DEV_PARTITION_SERVERS: u16 = 3;
/// What the README's commands are written with, and what replaces it.
const README_PROGRAM: &str = "cargo run --release --";

fn xo_binary() -> &'static str {
    env!("CARGO_BIN_EXE_xo")
}

// ---- xo dev -----------------------------------------------------------------

/// `xo dev` as a child process, on free ports, with its own data folder.
struct Dev {
    addr: SocketAddr,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dev {
    fn start() -> Dev {
        let mut dev =
            Dev { addr: free_port_run(), data_dir: tempfile::tempdir().unwrap(), child: None };
        dev.restart();
        dev
    }

    fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Starts the process (again, on the same data) and waits until the
    /// coordinator knows every partition server.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(xo_binary())
            .args(["dev", "--listen", &self.addr.to_string(), "--data-dir"])
            .arg(self.data_dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn xo dev");
        self.child = Some(child);
        let deadline = Instant::now() + DEV_START_WAIT_MAX;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            loop {
                if let Ok(mut client) = support::connect_coordinator(self.addr).await
                    && let Ok(response) =
                        client.metadata(xo_proto::coordinator::MetadataRequest::default()).await
                    && response.get_ref().servers.len() == usize::from(DEV_PARTITION_SERVERS)
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "xo dev did not start in {DEV_START_WAIT_MAX:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// SIGTERM, as a service manager stops it; returns its exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM");
        wait_max(&mut child, DEV_STOP_WAIT_MAX).expect("xo dev stops after SIGTERM")
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An address whose port and the next [`DEV_PARTITION_SERVERS`] ports are
/// free: `xo dev` puts its partition servers right after the coordinator.
fn free_port_run() -> SocketAddr {
    loop {
        let first = support::free_addr();
        let next_free = (1..=DEV_PARTITION_SERVERS).all(|i| {
            first.port().checked_add(i).is_some_and(|port| {
                std::net::TcpListener::bind(SocketAddr::new(first.ip(), port)).is_ok()
            })
        });
        if next_free {
            return first;
        }
    }
}

fn wait_max(child: &mut Child, wait: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- running commands -------------------------------------------------------

/// What one command printed, and how it ended.
struct Output {
    line: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(self) -> Output {
        assert!(
            self.status.success(),
            "`{}` failed ({}): stderr: {}",
            self.line,
            self.status,
            self.stderr
        );
        self
    }

    fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts a failure with exactly one line on stderr, and returns it.
    fn one_line_error(&self) -> &str {
        assert!(!self.status.success(), "`{}` should fail; stdout: {}", self.line, self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "`{}`: one line of error, got {:?}", self.line, self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        lines[0]
    }
}

/// Runs `line` with `sh -c`, with `XO_BOOTSTRAP` pointing at the cluster.
fn shell(line: &str, bootstrap: &str) -> Output {
    let program = format!("'{}'", xo_binary());
    let script = line.replace(README_PROGRAM, &program);
    let child = Command::new("sh")
        .args(["-c", &script])
        .env("XO_BOOTSTRAP", bootstrap)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    collect(line, child)
}

/// Runs `xo ARGS` with `stdin` as its input.
fn xo(args: &[&str], bootstrap: &str, stdin: &[u8]) -> Output {
    let mut child = Command::new(xo_binary())
        .args(args)
        .env("XO_BOOTSTRAP", bootstrap)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xo");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A thread, so a large input cannot dead-lock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = collect(&format!("xo {}", args.join(" ")), child);
    writer.join().unwrap();
    output
}

fn collect(line: &str, mut child: Child) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let status = wait_max(&mut child, COMMAND_WAIT_MAX)
        .unwrap_or_else(|| panic!("`{line}` did not finish within {COMMAND_WAIT_MAX:?}"));
    Output {
        line: line.to_string(),
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

// ---- the README -------------------------------------------------------------

/// The shell commands of the fenced code blocks of the README's Usage
/// section, in order (comments and blank lines left out; `\` continues a
/// line).
fn readme_usage_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme.split("\n## Usage\n").nth(1).expect("README has a Usage section");
    let section = section.split("\n## ").next().unwrap();
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    assert!(!in_block, "README Usage: a code block is not closed");
    commands
}

/// The README's commands run here: all of them but `dev` (the test runs
/// its own cluster).
fn readme_commands_to_run() -> Vec<String> {
    let commands = readme_usage_commands();
    assert!(
        commands.iter().any(|c| c == &format!("{README_PROGRAM} dev")),
        "README Usage starts the cluster with `{README_PROGRAM} dev`"
    );
    let commands: Vec<String> =
        commands.into_iter().filter(|c| c != &format!("{README_PROGRAM} dev")).collect();
    for c in &commands {
        assert!(c.contains(README_PROGRAM), "README command {c:?} does not run xo as documented");
    }
    commands
}

/// The one output of the README's commands that ran `words` (each word a
/// part of the command line); fails if the README has none.
fn output_of<'a>(outputs: &'a [Output], words: &[&str]) -> &'a Output {
    outputs.iter().find(|o| words.iter().all(|w| o.line.contains(w))).unwrap_or_else(|| {
        panic!("README Usage no longer has a command with {words:?}; update tests/cli.rs")
    })
}

const README_VALUES: [&str; 6] = ["hello", "hola", "bonjour", "hi", "salut", "hallo"];

#[test]
fn t10_readme_usage_round_trip() {
    // Proves: the README's topic / produce / consume (also by group) / txn / producers
    // commands, run as written against `xo dev`, do what the README says.
    let dev = Dev::start();
    let outputs: Vec<Output> =
        readme_commands_to_run().iter().map(|line| shell(line, &dev.bootstrap()).ok()).collect();

    let created = output_of(&outputs, &["topic create greetings"]);
    assert_eq!(created.stdout.trim(), "created topic greetings with 3 partitions");
    let described = output_of(&outputs, &["topic describe greetings"]);
    assert!(described.stdout.starts_with("topic greetings: 3 partitions"), "{}", described.stdout);
    assert_eq!(described.stdout_lines().len(), 1 + 1 + 3, "header, column names, 3 partitions");

    let plain = output_of(&outputs, &["produce greetings", "printf 'hello"]);
    assert!(plain.stderr.starts_with("produced 3 records to greetings in "), "{}", plain.stderr);
    let txn = output_of(&outputs, &["produce greetings", "--transactional-id greeter"]);
    assert!(txn.stderr.starts_with("produced 3 records to greetings"), "{}", txn.stderr);
    assert!(txn.stderr.contains("2 committed transactions"), "{}", txn.stderr);

    let values = output_of(&outputs, &["consume greetings --from-beginning --max 6"]);
    let got: BTreeSet<&str> = values.stdout_lines().into_iter().collect();
    assert_eq!(values.stdout_lines().len(), 6, "{}", values.stdout);
    assert_eq!(got, README_VALUES.into_iter().collect::<BTreeSet<_>>());

    let json = output_of(&outputs, &["consume greetings", "--format json"]);
    let records: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(records.len(), 6);
    for r in &records {
        for field in ["topic", "partition", "offset", "key", "value", "headers", "timestamp"] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert_eq!(r["topic"], "greetings");
        let expected_key = match r["value"].as_str().unwrap() {
            "hi" => Value::from("en"),
            "salut" => Value::from("fr"),
            "hallo" => Value::from("de"),
            _ => Value::Null,
        };
        assert_eq!(r["key"], expected_key, "{r}");
        let expected_headers = match expected_key {
            Value::Null => serde_json::json!([{"key": "source", "value": "readme"}]),
            _ => serde_json::json!([]),
        };
        assert_eq!(r["headers"], expected_headers, "{r}");
    }

    // The group's first run prints every record and commits; the second,
    // same group, sees nothing new.
    let groups: Vec<&Output> = outputs.iter().filter(|o| o.line.contains("--group")).collect();
    assert_eq!(groups.len(), 2, "README shows two runs of one group");
    let first: BTreeSet<&str> = groups[0].stdout_lines().into_iter().collect();
    assert_eq!(first, README_VALUES.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(groups[0].stdout_lines().len(), 6);
    assert!(groups[1].stdout.is_empty(), "second run: nothing new, got {}", groups[1].stdout);

    let txns = output_of(&outputs, &["txn list"]);
    let greeter = txns
        .stdout_lines()
        .into_iter()
        .find(|l| l.starts_with("greeter "))
        .expect("greeter listed");
    assert!(greeter.contains("CompleteCommit"), "{greeter}");
    let txn = output_of(&outputs, &["txn describe greeter"]);
    assert!(
        txn.stdout.contains("state:") && txn.stdout.contains("CompleteCommit"),
        "{}",
        txn.stdout
    );
    let producers = output_of(&outputs, &["producers describe greetings 0"]);
    assert!(producers.stdout.starts_with("PRODUCER ID"), "{}", producers.stdout);
    let hanging = output_of(&outputs, &["txn find-hanging"]);
    assert_eq!(hanging.stdout_lines().len(), 1, "no hanging transaction: {}", hanging.stdout);
}

// ---- errors -----------------------------------------------------------------

#[test]
fn t20_unknown_topic_is_one_line_and_a_failure() {
    let dev = Dev::start();
    let b = dev.bootstrap();
    for args in [
        &["consume", "nope", "--max", "1"][..],
        &["produce", "nope"],
        &["topic", "describe", "nope"],
        &["topic", "delete", "nope"],
        &["producers", "describe", "nope", "0"],
    ] {
        let out = xo(args, &b, b"x\n");
        let line = out.one_line_error();
        assert!(line.contains("unknown topic \"nope\""), "{args:?}: {line}");
    }
}

#[test]
fn t21_unreachable_bootstrap_names_the_address_and_xo_dev() {
    // Nothing listens there: the port was free a moment ago.
    let addr = support::free_addr().to_string();
    let started = Instant::now();
    for args in [&["topic", "list"][..], &["produce", "t"], &["consume", "t"], &["txn", "list"]] {
        let out = xo(args, &addr, b"");
        let line = out.one_line_error();
        assert!(line.contains(&addr) && line.contains("xo dev"), "{args:?}: {line}");
    }
    // And `-b` wins over the environment.
    let out = xo(&["topic", "list", "-b", &addr], "127.0.0.1:1", b"");
    assert!(out.one_line_error().contains(&addr));
    assert!(started.elapsed() < Duration::from_secs(30), "fails fast, not after retries");
}

#[test]
fn t22_bad_flag_values_are_one_line_with_usage_exit_status() {
    for args in [
        &["topic", "create", "t", "--partitions", "0"][..],
        &["topic", "create", "t", "--retention-ms", "soon"],
        &["consume", "t", "--isolation", "sometimes"],
        &["consume", "t", "--idle-timeout", "-1"],
        &["consume", "t", "--format", "xml"],
        &["produce", "t", "--transaction-records", "5"],
        &["produce", "t", "--key", "k", "--key-separator", ":"],
        &["txn", "list", "--state", "Sleeping"],
        &["producers", "describe", "t", "first"],
    ] {
        let out = xo(args, "127.0.0.1:1", b"");
        let line = out.one_line_error();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(line.contains("--help"), "{args:?}: {line}");
    }
}

#[test]
fn t23_help_everywhere_explains_every_flag() {
    let commands: &[&[&str]] = &[
        &["topic", "create"],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["produce"],
        &["consume"],
        &["txn", "list"],
        &["txn", "describe"],
        &["txn", "abort"],
        &["txn", "find-hanging"],
        &["producers", "describe"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = xo(&args, "", b"").ok();
        assert!(out.stdout.contains("--bootstrap-server <ADDR>"), "{command:?}");
        let options = out.stdout.split("Options:").nth(1).unwrap();
        for line in options.lines().filter(|l| l.trim_start().starts_with('-')) {
            let line = line.trim_start();
            let flag_end = line.find("  ").map(|at| &line[at..]).unwrap_or("");
            assert!(!flag_end.trim().is_empty(), "{command:?}: flag without help: {line:?}");
        }
    }
}

#[test]
fn t24_a_failed_produce_names_the_lines_not_acknowledged() {
    // Proves: a record the producer refuses mid-stream is reported by line
    // number with what was acknowledged; in a transaction, the open
    // transaction is aborted and reported, and read-committed consumers do
    // not see it while read-uncommitted ones do.
    let dev = Dev::start();
    let b = dev.bootstrap();
    xo(&["topic", "create", "lines", "--partitions", "1"], &b, b"").ok();
    let mut input = b"a\nb\nc\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    input.extend(b"\nd\ne\n");

    let out = xo(&["produce", "lines"], &b, &input);
    let line = out.one_line_error();
    assert!(line.contains("line 4 was not acknowledged"), "{line}");
    assert!(line.contains("acknowledged: produced 5 records"), "{line}");

    let out = xo(
        &["produce", "lines", "--transactional-id", "liner", "--transaction-records", "2"],
        &b,
        &input,
    );
    let line = out.one_line_error();
    assert!(line.contains("the transaction of lines 3-4 was aborted"), "{line}");
    assert!(line.contains("lines after 4 were not sent"), "{line}");
    assert!(line.contains("1 committed transaction"), "{line}");

    let committed =
        xo(&["consume", "lines", "--from-beginning", "--idle-timeout", "2"], &b, b"").ok();
    assert_eq!(committed.stdout_lines(), ["a", "b", "c", "d", "e", "a", "b"]);
    let everything = xo(
        &["consume", "lines", "--from-beginning", "--max", "8", "--isolation", "read-uncommitted"],
        &b,
        b"",
    )
    .ok();
    assert_eq!(everything.stdout_lines(), ["a", "b", "c", "d", "e", "a", "b", "c"]);
}

#[test]
fn t25_a_large_stdin_streams_through() {
    // Proves: many more lines than the producer's read-ahead (10 000)
    // arrive exactly once, keyed ones in order per key.
    const LINES: usize = 100_000;
    let dev = Dev::start();
    let b = dev.bootstrap();
    xo(&["topic", "create", "bulk", "--partitions", "3"], &b, b"").ok();
    let mut input = String::new();
    for i in 0..LINES {
        input.push_str(&format!("k{}\t{i}\n", i % 7));
    }
    let out = xo(&["produce", "bulk", "--key-separator", "\t"], &b, input.as_bytes()).ok();
    assert!(out.stderr.starts_with(&format!("produced {LINES} records to bulk")), "{}", out.stderr);
    let max = LINES.to_string();
    let read =
        xo(&["consume", "bulk", "--from-beginning", "--max", &max, "--format", "json"], &b, b"")
            .ok();
    let mut last_per_key = std::collections::BTreeMap::new();
    let mut seen = BTreeSet::new();
    for line in read.stdout.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let value: usize = r["value"].as_str().unwrap().parse().unwrap();
        assert!(seen.insert(value), "{value} twice");
        let key = r["key"].as_str().unwrap().to_string();
        assert_eq!(key, format!("k{}", value % 7));
        if let Some(last) = last_per_key.insert(key, value) {
            assert!(last < value, "order within a key");
        }
    }
    assert_eq!(seen.len(), LINES);
}

#[test]
fn t27_produce_headers_reach_consume() {
    // Proves: every `--header KEY=VALUE` is on every record, in order, and
    // `consume --format json` shows them; a malformed one is refused with
    // a one-line usage error before anything is sent.
    let dev = Dev::start();
    let b = dev.bootstrap();
    xo(&["topic", "create", "tagged", "--partitions", "1"], &b, b"").ok();
    let args = ["produce", "tagged", "--header", "source=billing", "--header", "trace=a=1"];
    let extra = ["--header", "empty="];
    xo(&[&args[..], &extra].concat(), &b, b"one\ntwo\n").ok();
    for bad in ["novalue", "=v"] {
        let out = xo(&["produce", "tagged", "--header", bad], &b, b"three\n");
        let line = out.one_line_error();
        assert_eq!(out.status.code(), Some(2), "{bad}: {line}");
        assert!(line.contains("KEY=VALUE") && line.contains(bad), "{line}");
    }
    let read = xo(
        &["consume", "tagged", "--from-beginning", "--idle-timeout", "2", "--format", "json"],
        &b,
        b"",
    )
    .ok();
    let expected = serde_json::json!([
        {"key": "source", "value": "billing"},
        {"key": "trace", "value": "a=1"},
        {"key": "empty", "value": ""},
    ]);
    let records: Vec<Value> =
        read.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let values: Vec<&str> = records.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["one", "two"], "the malformed runs sent nothing");
    for r in &records {
        assert_eq!(r["headers"], expected, "{r}");
    }
}

#[test]
fn t26_transaction_admin_sees_lists_and_aborts_an_open_transaction() {
    // Proves: a transaction left open by a producer is listed as Ongoing
    // (and by --state and --min-duration-ms), described with its partition,
    // shown by `producers describe` as holding the partition open, and
    // aborted by `txn abort`.
    let dev = Dev::start();
    let b = dev.bootstrap();
    xo(&["topic", "create", "pending", "--partitions", "1"], &b, b"").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let producer = runtime.block_on(async {
        use xo_client::{ClientConfig, ProducerConfig, ProducerRecord, TransactionalProducer};
        let config = ProducerConfig::new(ClientConfig::new(&b));
        let producer = TransactionalProducer::new(config, "left-open").unwrap();
        producer.init_transactions().await.unwrap();
        producer.begin_transaction().unwrap();
        producer.send(ProducerRecord::new("pending", "maybe")).await.unwrap();
        producer
    });
    std::thread::sleep(Duration::from_millis(300));

    let listed =
        xo(&["txn", "list", "--state", "ongoing", "--min-duration-ms", "100"], &b, b"").ok();
    let row =
        listed.stdout_lines().into_iter().find(|l| l.starts_with("left-open ")).expect("listed");
    assert!(row.contains("Ongoing"), "{row}");
    let none = xo(&["txn", "list", "--state", "CompleteAbort"], &b, b"").ok();
    assert!(!none.stdout.contains("left-open"));
    let described = xo(&["txn", "describe", "left-open"], &b, b"").ok();
    assert!(described.stdout.contains("pending/0"), "{}", described.stdout);
    let producers = xo(&["producers", "describe", "pending", "0"], &b, b"").ok();
    let lines = producers.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", producers.stdout);
    assert!(
        lines[1].trim_end().ends_with(" 0"),
        "the open transaction starts at offset 0: {}",
        lines[1]
    );
    let nothing =
        xo(&["consume", "pending", "--from-beginning", "--idle-timeout", "1"], &b, b"").ok();
    assert!(nothing.stdout.is_empty(), "read-committed holds the open transaction back");

    xo(&["txn", "abort", "left-open"], &b, b"").ok();
    // The abort markers are written after the answer: wait for the last step.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = xo(&["txn", "describe", "left-open"], &b, b"").ok();
        if described.stdout.contains("CompleteAbort") {
            break;
        }
        assert!(Instant::now() < deadline, "not aborted: {}", described.stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(producer);
}

#[test]
fn t30_restarted_dev_keeps_the_data() {
    // Proves: records acknowledged before `xo dev` is stopped with SIGTERM
    // are read back after it is started again on the same data folder.
    let mut dev = Dev::start();
    let b = dev.bootstrap();
    xo(&["topic", "create", "durable", "--partitions", "3"], &b, b"").ok();
    let input: String = (0..100).map(|i| format!("record-{i}\n")).collect();
    xo(&["produce", "durable"], &b, input.as_bytes()).ok();
    xo(&["produce", "durable", "--transactional-id", "durable-tx"], &b, b"in-a-transaction\n").ok();
    let status = dev.stop();
    assert!(status.success(), "xo dev stops cleanly on SIGTERM: {status}");

    dev.restart();
    let read = xo(&["consume", "durable", "--from-beginning", "--max", "101"], &b, b"").ok();
    let got: BTreeSet<&str> = read.stdout_lines().into_iter().collect();
    let mut expected: BTreeSet<String> = (0..100).map(|i| format!("record-{i}")).collect();
    expected.insert("in-a-transaction".into());
    assert_eq!(got, expected.iter().map(String::as_str).collect());
    let topics = xo(&["topic", "list"], &b, b"").ok();
    assert_eq!(topics.stdout_lines(), ["durable"]);
}
