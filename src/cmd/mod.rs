//! One file per subcommand, each of the same shape: a clap `Args`, and
//! `run(args)`. Server roles: `partition_server`, `coordinator`, `dev`.
//! Client commands: `topic`, `produce`, `consume`, `txn`, `producers`,
//! sharing `client` (the `--bootstrap-server` option, error wording).

pub mod bench;
pub mod client;
pub mod consume;
pub mod coordinator;
pub mod dev;
pub mod partition_server;
pub mod produce;
pub mod producers;
pub mod topic;
pub mod txn;

/// Completes on Ctrl-C or SIGTERM, for a clean shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A command-line error (bad flag value, missing argument) as one line:
/// clap's message without the usage block, pointing at the `--help` of
/// the subcommand that `words` (the command line) named.
pub fn usage_error_line(e: &clap::Error, root: &clap::Command, words: &[String]) -> String {
    let text = e.render().to_string();
    let message = text.split("\n\n").next().unwrap_or_default();
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut path = vec![root.get_name().to_string()];
    let mut command = root;
    for word in words.iter().skip(1) {
        match command.find_subcommand(word) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                command = sub;
            }
            None if word.starts_with('-') => continue,
            None => break,
        }
    }
    format!("{message} (see `{} --help`)", path.join(" "))
}
