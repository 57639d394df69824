//! The `lms-etl` binary: parses arguments, loads the configuration, sets up logging and
//! maps every outcome to a documented exit code. The work happens in the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lms_etl_loader::cli::{Cli, Command, RunArgs};
use lms_etl_loader::clock::Clock;
use lms_etl_loader::config::{rejected_ratio, Config};
use lms_etl_loader::console::Console;
use lms_etl_loader::load::Database;
use lms_etl_loader::run::{self, Exit, RunOptions};
use lms_etl_loader::signals::Interrupt;
use lms_etl_loader::window::parse_time;
use lms_etl_loader::{demo_api, doctor, health, logs, status};

fn main() -> ExitCode {
    // Two TLS stacks meet here (reqwest, yup-oauth2, lettre): choose one provider for all.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lms-etl: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failed as u8);
        }
    };
    if let Command::Health = cli.command {
        // A Nagios plugin's exit codes, not the run's: see `health_command`.
        return ExitCode::from(runtime.block_on(health_command(cli.config.as_deref())));
    }
    ExitCode::from(runtime.block_on(dispatch(cli)) as u8)
}

/// `lms-etl health`: the checks on stdout, the worst as the exit code. Writes no log file (a
/// monitor calls it every few minutes). A configuration it cannot read is UNKNOWN (3); a
/// database it cannot reach or query is CRITICAL (2).
async fn health_command(path: Option<&std::path::Path>) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            println!("LMS_ETL UNKNOWN - configuration error: {e}");
            return health::CheckStatus::Unknown.nagios_code();
        }
    };
    let checks = async {
        let db = Database::connect(&config.database.target).await?;
        health::checks(&db).await
    };
    match checks.await {
        Ok(checks) => {
            print!("{}", health::nagios_output(&checks));
            health::worst(&checks).nagios_code()
        }
        Err(e) => {
            println!(
                "LMS_ETL CRITICAL - cannot read lms_etl.health(): {}",
                lms_etl_loader::error_chain(&e)
            );
            health::CheckStatus::Fail.nagios_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Exit {
    let console = Console::new(cli.verbosity(), matches!(cli.command, Command::Run(_)));
    match cli.command {
        Command::DemoApi(args) => match demo_api::run(args).await {
            Ok(()) => Exit::Success,
            Err(e) => {
                eprintln!("lms-etl demo-api: {e}");
                Exit::Failed
            }
        },
        Command::ExportDemoCopy(args) => match export_demo_copy(args) {
            Ok(()) => Exit::Success,
            Err(e) => {
                eprintln!("lms-etl export-demo-copy: {e:#}");
                Exit::Config
            }
        },
        // Reports a configuration that does not load as one of its checks.
        Command::Doctor => {
            let report = doctor::check(cli.config.as_deref()).await;
            print!("{}", report.render());
            if report.healthy() {
                Exit::Success
            } else {
                Exit::Failed
            }
        }
        command => with_config(cli.config.as_deref(), command, console).await,
    }
}

/// Commands that need the configuration and the log file.
async fn with_config(path: Option<&std::path::Path>, command: Command, console: Console) -> Exit {
    let mut config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lms-etl: configuration error: {e}");
            return Exit::Config;
        }
    };
    let logging = match logs::init(&config.logs.dir, &config.logs.level, &console) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lms-etl: {e}");
            return Exit::Config;
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), log_file = %logging.current_file().display(), "config loaded");
    match logs::prune(
        &config.logs.dir,
        chrono::Utc::now().date_naive(),
        config.logs.keep_days,
    ) {
        Ok(deleted) if deleted.is_empty() => {}
        Ok(deleted) => {
            for path in &deleted {
                tracing::info!(path = %path.display(), "deleted old log file");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, dir = %config.logs.dir.display(), "could not prune old log files")
        }
    }

    let result = match command {
        Command::Run(args) => {
            // Listen before anything else, so a signal at any stage is seen.
            let interrupt = Interrupt::listen();
            let options = match run_options(&args, &mut config, console.clone()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "invalid arguments");
                    return Exit::Config;
                }
            };
            let exit = run::execute(&config, &options, logging.current_file(), interrupt).await;
            console.done(exit as u8);
            return exit;
        }
        Command::Status(args) => show_status(&config, args.runs, args.days).await,
        Command::SheetsSync(range) => sheets_sync(&config, range.from, range.to).await,
        Command::Aggregate(range) => aggregate(&config, range.from, range.to).await,
        Command::Reprocess(args) => reprocess(&config, args.run_id).await,
        Command::DemoApi(_) | Command::ExportDemoCopy(_) | Command::Doctor | Command::Health => {
            unreachable!("handled before the log file is set up, without configuration")
        }
    };
    match result {
        Ok(()) => Exit::Success,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "command failed");
            Exit::Failed
        }
    }
}

fn run_options(
    args: &RunArgs,
    config: &mut Config,
    console: Console,
) -> anyhow::Result<RunOptions> {
    if let Some(minutes) = args.chunk_minutes {
        anyhow::ensure!(
            (1..=10_080).contains(&minutes),
            "--chunk-minutes must be between 1 and 10080"
        );
        config.window.chunk = chrono::Duration::minutes(minutes);
    }
    let start = args
        .start
        .as_deref()
        .map(|s| parse_time("--start", s))
        .transpose()?;
    let end = args
        .end
        .as_deref()
        .map(|s| parse_time("--end", s))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        anyhow::ensure!(s < e, "--start ({s}) must be before --end ({e})");
    }
    Ok(RunOptions {
        start,
        end,
        skip_sheets: args.no_sheets,
        skip_email: args.no_email,
        max_rejected_ratio: args
            .max_rejected_ratio
            .map(|r| rejected_ratio("--max-rejected-ratio", r))
            .transpose()?,
        clock: args.now.map_or_else(Clock::system, Clock::starting_at),
        console,
    })
}

async fn show_status(config: &Config, runs: i64, days: i64) -> anyhow::Result<()> {
    let db = Database::connect(&config.database.target).await?;
    print!(
        "{}",
        status::render(&db, &config.api.client, runs, days).await?
    );
    Ok(())
}

async fn sheets_sync(
    config: &Config,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let sheets = config
        .sheets
        .as_ref()
        .context("Google Sheets is not configured (sheets.spreadsheet_id, sheets.key_file)")?;
    let db = Database::connect(&config.database.target).await?;
    // A run pushes too: two pushes at once would each insert a missing day (a doubled row),
    // and the one writing older numbers last could leave them in the sheet while the other
    // marks the newer version pushed. The run lock, held from before the days are read
    // until after they are marked, makes the pushes take turns. The lock is api.client's:
    // this client's runs push to this configuration's spreadsheet.
    anyhow::ensure!(
        db.try_lock(&config.api.client).await?.is_some(),
        "another lms-etl run holds the lock of api.client {:?}; sheets-sync when it has finished",
        config.api.client
    );
    let days = db.daily_stats_versions(from, to).await?;
    tracing::info!(from = %from, to = %to, days = days.len(), "sheets sync started");
    let zones = db.zones(config.api.source_timezone).await?;
    let outcome = run::push_and_mark(&db, sheets, &days, zones.report)
        .await
        .context("pushing to Google Sheets")?;
    tracing::info!(days = outcome.days_written, inserted = outcome.rows_inserted, url = %outcome.url, "sheets sync finished");
    Ok(())
}

async fn aggregate(
    config: &Config,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let db = Database::connect(&config.database.target).await?;
    let days = db.aggregate(from, to).await?;
    tracing::info!(from = %from, to = %to, days = days.len(), "aggregation finished");
    print!(
        "{}",
        status::render(&db, &config.api.client, 0, days.len() as i64).await?
    );
    Ok(())
}

async fn reprocess(config: &Config, run_id: Option<i64>) -> anyhow::Result<()> {
    let db = Database::connect(&config.database.target).await?;
    anyhow::ensure!(
        db.try_lock(&config.api.client).await?.is_some(),
        "another lms-etl run holds the lock of api.client {:?}; reprocess when it has finished",
        config.api.client
    );
    let started = std::time::Instant::now();
    tracing::info!(run_id, "reprocess started");
    let (examined, loaded, still) = db.reprocess(run_id).await?;
    let days = db.aggregate_pending().await?;
    tracing::info!(
        examined,
        loaded,
        still_rejected = still,
        days = days.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reprocess finished"
    );
    println!("{examined} quarantined records examined: {loaded} loaded (or found loaded), {still} still rejected; {} days re-aggregated", days.len());
    Ok(())
}

fn export_demo_copy(args: lms_etl_loader::cli::ExportArgs) -> anyhow::Result<()> {
    let start = parse_time("--start", &args.start)?;
    let end = parse_time("--end", &args.end)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rows = demo_api::write_copy_rows(&args.demo, start, end, &mut out)?;
    std::io::Write::flush(&mut out)?;
    eprintln!("{rows} rows");
    Ok(())
}
