//! `markdown-view`: the MarkdownView operator.
//!
//! `markdown-view crd` prints the CustomResourceDefinition (pipe it to
//! `kubectl apply -f -`); `markdown-view run` runs the controller against
//! the cluster of the default kubeconfig (`KUBECONFIG`, `~/.kube/config`,
//! or the in-cluster service account).

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "markdown-view", about = "The MarkdownView operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the MarkdownView CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller until SIGINT or SIGTERM.
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", markdown_view::crd_yaml()?);
            Ok(())
        }
        Command::Run => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,markdown_view=debug".into()),
                )
                .init();
            let client = kube::Client::try_default()
                .await
                .context("loading the kubeconfig")?;
            tracing::info!("MarkdownView operator running");
            markdown_view::run(client).await?;
            Ok(())
        }
    }
}
