//! The `rpo-agent` binary: the CLI edge. Typed errors from the library are
//! turned into messages and exit codes here (0 ok, 1 a probe failed, 2 bad
//! configuration or usage).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use prometheus::Registry;
use rpo_agent::aws::AwsPlumbing;
use rpo_agent::config::{self, Config};
use rpo_agent::fleet::Fleet;
use rpo_agent::shutdown::Shutdown;
use rpo_agent::{agent_id, check, once, routes, scheduler};
use rpo_exporter::{Metrics, StatusBoard};
use rpo_report as report;
use tracing::{error, info};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser)]
#[command(
    name = "rpo-agent",
    version,
    about = "Measures cross-region replication lag and RPO with canaries"
)]
struct Cli {
    /// Log format: human text, or JSON lines for log pipelines.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: write canaries, measure, serve /metrics.
    Run {
        /// TOML configuration file; without it, $RPO_AGENT_CONFIG holds the text.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// One round on every target, printed as a table (exit 1 if any failed).
    Once {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How long to wait for each canary.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Preflight: credentials, tables/buckets/databases reachable, replicas
    /// registered, versioning and replication rules, writer roles, TTL and
    /// lifecycle rules; a ✓/✗ list with the fix for each ✗ (exit 1 on any ✗).
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// First create what the agent may create itself (the SQL canary table).
        #[arg(long)]
        fix: bool,
    },
    /// Create the SQL canary table `rpo_canary` on every postgres/mysql target's writer.
    Init {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration only (no network).
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write an RPO report (attainment, episodes, failovers, lag) from Prometheus.
    Report(ReportArgs),
    /// Write CloudWatch alarms and a dashboard for the [emf] metrics as a
    /// CloudFormation template (no network).
    Alarms {
        /// TOML configuration file; without it, $RPO_AGENT_CONFIG holds the text.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the template here (default: stdout). Refused (exit 2) when
        /// the pairs do not fit one template: use --out-dir.
        #[arg(long, conflicts_with = "out_dir")]
        out: Option<PathBuf>,
        /// Write rpo-alarms.yaml, or rpo-alarms-1.yaml… when AWS's limits need
        /// several templates (one stack and one dashboard each), into this directory.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// The templates are deployed through S3 (aws cloudformation deploy
        /// --s3-bucket): up to 1 MB each instead of 51,200 bytes.
        #[arg(long)]
        s3: bool,
    },
    /// Ask a running agent's /healthz (for container health checks).
    Healthcheck {
        /// http:// or https:// (an agent with tls_server_config in its web_config).
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
        /// PEM file of the CA that signed the agent's certificate (https;
        /// default: the system's trusted roots).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Base URL of the Prometheus that scrapes the agents (e.g. http://prometheus:9090).
    #[arg(long)]
    prometheus: String,
    /// The window: the last N (e.g. 30d, 12h) up to --to or now.
    #[arg(long, value_parser = humantime::parse_duration)]
    last: Option<Duration>,
    /// Start of the window: RFC 3339, Unix seconds, or now-2h.
    #[arg(long)]
    from: Option<String>,
    /// End of the window (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Only these targets (repeat the flag; default: every target with data).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    #[arg(long, value_enum, default_value = "markdown")]
    format: ReportFormat,
    /// Write the report here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Add the drill record: timeline of the window, figures of each switch.
    #[arg(long)]
    drill: bool,
    /// Use raw series even where the recording rules are loaded.
    #[arg(long)]
    raw: bool,
    /// File holding a bearer token (Grafana Cloud, Mimir, a SigV4 proxy).
    #[arg(long)]
    bearer_token_file: Option<PathBuf>,
    /// Basic-auth user; the password is read from --basic-auth-password-file.
    #[arg(long, requires = "basic_auth_password_file")]
    basic_auth_user: Option<String>,
    #[arg(long, requires = "basic_auth_user")]
    basic_auth_password_file: Option<PathBuf>,
    /// Extra request header, 'Name: value' (repeatable), e.g. 'X-Scope-OrgID: team-a'.
    #[arg(long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// PEM file of the CA that signed Prometheus's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Longest wait for one query.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    query_timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Markdown,
    Html,
    Json,
}

/// A secret from a file, without the trailing newline editors add.
fn read_secret(flag: &str, path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The flags as a report request and the Prometheus client; `Err` is a
/// usage problem (exit 2).
fn report_setup(a: &ReportArgs) -> Result<(report::Prom, report::Request), String> {
    use report::window;
    let w = window::resolve(a.last, a.from.as_deref(), a.to.as_deref(), window::now())?;
    let mut auth = report::PromAuth {
        ca_file: a.ca_file.clone(),
        ..Default::default()
    };
    if let Some(p) = &a.bearer_token_file {
        auth.bearer_token = Some(read_secret("--bearer-token-file", p)?);
    }
    if let (Some(u), Some(p)) = (&a.basic_auth_user, &a.basic_auth_password_file) {
        auth.basic = Some((u.clone(), read_secret("--basic-auth-password-file", p)?));
    }
    for h in &a.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: write it as 'Name: value'"))?;
        auth.headers
            .push((n.trim().to_string(), v.trim().to_string()));
    }
    let prom =
        report::Prom::new(&a.prometheus, &auth, a.query_timeout).map_err(|e| e.to_string())?;
    let req = report::Request {
        window: w,
        targets: a.targets.clone(),
        drill: a.drill,
        force_raw: a.raw,
    };
    Ok((prom, req))
}

async fn run_report(a: ReportArgs) -> ExitCode {
    let (prom, req) = match report_setup(&a) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("rpo-agent report: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let r = match report::gather(&prom, &req, report::window::now()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rpo-agent report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = match a.format {
        ReportFormat::Markdown => report::Format::Markdown,
        ReportFormat::Html => report::Format::Html,
        ReportFormat::Json => report::Format::Json,
    };
    let text = report::render(&r, format);
    info!(
        targets = r.targets.len(),
        queries = prom.queries_sent(),
        seconds = started.elapsed().as_secs_f64(),
        path = %r.path_note,
        "report made"
    );
    match &a.out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("rpo-agent report: --out {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

/// `rpo-agent alarms`: a configuration without `[emf]` (or without its
/// Target/ReplicaRegion set) is a configuration problem, exit 2; so are pairs
/// that do not fit one template when one file is asked for.
fn write_alarms(
    cfg: &Config,
    path: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
    out_dir: Option<&std::path::Path>,
    s3: bool,
) -> ExitCode {
    use rpo_agent::alarms;
    let upload = if s3 {
        alarms::Upload::S3
    } else {
        alarms::Upload::Direct
    };
    let written = match alarms::plan(cfg, upload) {
        Ok(w) => w,
        Err(e) => {
            let origin = match path {
                Some(p) => config::Origin::File(p.display().to_string()),
                None => config::Origin::Env(config::CONFIG_ENV),
            };
            eprintln!(
                "rpo-agent: invalid configuration\n{}",
                e.config_error(&origin)
            );
            return ExitCode::from(2);
        }
    };
    let Some(dir) = out_dir else {
        if written.len() > 1 {
            eprintln!(
                "rpo-agent alarms: {}",
                alarms::why_not_one(&written, upload)
            );
            return ExitCode::from(2);
        }
        let text = &written[0].text;
        match out {
            Some(p) => {
                if let Err(e) = std::fs::write(p, text) {
                    eprintln!("rpo-agent alarms: --out {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            None => print!("{text}"),
        }
        return ExitCode::SUCCESS;
    };
    let fail = |e: std::io::Error| {
        eprintln!("rpo-agent alarms: --out-dir {}: {e}", dir.display());
        ExitCode::FAILURE
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(e);
    }
    let names: Vec<String> = written.iter().map(alarms::file_name).collect();
    // Templates of an earlier, longer plan would deploy alarms twice.
    let stale = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| alarms::is_template_file(n) && !names.contains(n))
            .collect::<Vec<_>>(),
        Err(e) => return fail(e),
    };
    for n in &stale {
        if let Err(e) = std::fs::remove_file(dir.join(n)) {
            return fail(e);
        }
        eprintln!(
            "rpo-agent alarms: removed {} (not part of this plan)",
            dir.join(n).display()
        );
    }
    let mut paths = Vec::new();
    for (w, n) in written.iter().zip(&names) {
        let p = dir.join(n);
        if let Err(e) = std::fs::write(&p, &w.text) {
            return fail(e);
        }
        paths.push(p.display().to_string());
    }
    eprint!("{}", alarms::summary(&written, &paths, upload));
    ExitCode::SUCCESS
}

fn init_logs(format: LogFormat, command: &Command) {
    // `check` prints every finding itself: its logs would say it twice.
    let level = if matches!(command, Command::Check { .. }) {
        "error"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RPO_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},aws_config=warn,aws_smithy_runtime=warn"
        ))
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        // Without the module path, `target` is free for our own field (the
        // measured target's name), which log pipelines group by.
        LogFormat::Json => b.json().flatten_event(true).with_target(false).init(),
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("rpo-agent: invalid configuration\n{e}");
        ExitCode::from(2)
    })
}

/// The `[agent] web_config` file (TLS, basic auth), loaded and checked; a
/// bad one is a configuration error (exit 2) naming the key.
fn load_web(cfg: &Config) -> Result<Option<rpo_exporter::WebConfig>, ExitCode> {
    let Some(path) = &cfg.agent.web_config else {
        return Ok(None);
    };
    rpo_exporter::WebConfig::load(path).map(Some).map_err(|e| {
        eprintln!("rpo-agent: invalid web configuration ([agent] web_config)\n{e}");
        ExitCode::from(2)
    })
}

/// jemalloc, not glibc's malloc: with 1000 targets glibc's allocator was a
/// quarter of the agent's CPU (`malloc_consolidate`, `_int_malloc`) and kept
/// freed memory resident in per-thread arenas (BENCHMARKS.md: 43 → 38 MiB,
/// 1.57 → 1.04 ms per canary; mimalloc was faster than glibc but held more).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): two arenas for the two tokio workers,
/// a background thread that returns freed pages after a second, not ten.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: MallocConf =
    MallocConf(b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0".as_ptr());

/// A C string for jemalloc to read; it is never written.
#[repr(transparent)]
struct MallocConf(*const u8);
// SAFETY: it points to a static, immutable, NUL-terminated string.
unsafe impl Sync for MallocConf {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format, &cli.command);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let result = match cli.command {
            Command::Run { config } => match load(config.as_deref()) {
                Ok(c) => match load_web(&c) {
                    Ok(web) => run(c, web).await,
                    Err(code) => return code,
                },
                Err(code) => return code,
            },
            Command::Once { config, wait } => match load(config.as_deref()) {
                Ok(c) => run_once(c, wait).await,
                Err(code) => return code,
            },
            Command::Check { config, fix } => match load(config.as_deref()) {
                Ok(c) => match load_web(&c) {
                    Ok(_) => run_check(c, fix).await,
                    Err(code) => return code,
                },
                Err(code) => return code,
            },
            Command::Init { config } => match load(config.as_deref()) {
                Ok(c) => Ok(init(c).await),
                Err(code) => return code,
            },
            Command::Validate { config } => match load(config.as_deref()) {
                Ok(c) => {
                    if let Err(code) = load_web(&c) {
                        return code;
                    }
                    println!("configuration ok: {} target(s)", c.targets.len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(code) => return code,
            },
            Command::Report(args) => return run_report(args).await,
            Command::Alarms {
                config,
                out,
                out_dir,
                s3,
            } => match load(config.as_deref()) {
                Ok(c) => {
                    return write_alarms(
                        &c,
                        config.as_deref(),
                        out.as_deref(),
                        out_dir.as_deref(),
                        s3,
                    )
                }
                Err(code) => return code,
            },
            Command::Healthcheck { url, ca_file } => {
                let ca = ca_file.as_deref();
                match rpo_exporter::healthcheck::check_with(&url, Duration::from_secs(3), ca).await
                {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(e) => {
                        eprintln!("rpo-agent healthcheck: {e}");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        };
        result.unwrap_or_else(|e| {
            error!("{e:#}");
            eprintln!("rpo-agent: {e:#}");
            ExitCode::FAILURE
        })
    })
}

async fn run(cfg: Config, web: Option<rpo_exporter::WebConfig>) -> anyhow::Result<ExitCode> {
    let id = agent_id::resolve(cfg.agent.id.as_deref()).await;
    let registry = Registry::new();
    let metrics = Metrics::new(&registry, VERSION).context("registering metrics")?;
    let board = StatusBoard::new(&id, VERSION);
    let listener = rpo_exporter::server::bind(&cfg.agent.listen.to_string()).await?;
    info!(agent_id = %id, listen = %listener.local_addr()?, targets = cfg.targets.len(), version = VERSION, "rpo-agent starting");
    let aws = AwsPlumbing::new(metrics.clone());
    let routes = routes::build(&cfg, &id, &aws).await?;
    let fleet = match &cfg.fleet {
        Some(f) => {
            let targets: Vec<(String, &'static str)> = cfg
                .targets
                .iter()
                .map(|t| (t.name.clone(), t.kind.as_str()))
                .collect();
            Some(Fleet::new(f, &id, &targets, &aws).await)
        }
        None => None,
    };
    let gates = fleet.as_ref().map(Fleet::gates).unwrap_or_default();

    let (stop_tx, shutdown) = Shutdown::new();
    // The lease manager sees SIGTERM with the writers: it releases the
    // leases at once, so another agent writes within one interval.
    let fleet_task = fleet.map(|f| tokio::spawn(f.run(shutdown.clone())));
    let (server_stop_tx, mut server_stop) = Shutdown::new();
    let server = tokio::spawn(rpo_exporter::server::serve_with(
        listener,
        metrics.exposition(),
        board.clone(),
        web,
        async move { server_stop.recv().await },
    ));
    let sched = tokio::spawn(scheduler::run(
        routes,
        metrics,
        board,
        shutdown,
        cfg.agent.shutdown_grace,
        gates,
        emf_plan(&cfg, &id),
    ));

    wait_for_signal().await;
    info!("shutting down: no new canaries; waiting for in-flight reads");
    let _ = stop_tx.send(true);
    if let Some(f) = fleet_task {
        if let Err(e) = f.await {
            error!("fleet task failed: {e}");
        }
    }
    if let Err(e) = sched.await {
        error!("scheduler task failed: {e}");
    }
    let _ = server_stop_tx.send(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("http server: {e}"),
        Err(e) => error!("http server task failed: {e}"),
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `[emf]` as the scheduler wants it; None without `[emf]`.
fn emf_plan(cfg: &Config, agent_id: &str) -> Option<scheduler::EmfPlan> {
    let e = cfg.emf.as_ref()?;
    Some(scheduler::EmfPlan {
        settings: rpo_exporter::emf::Settings {
            namespace: e.namespace.clone(),
            storage_resolution: e.storage_resolution,
            dimensions: e.dimensions.clone(),
            agent_id: agent_id.to_string(),
        },
        to: e.to.clone(),
        every: e.every,
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run_once(cfg: Config, wait: Duration) -> anyhow::Result<ExitCode> {
    let id = agent_id::resolve(cfg.agent.id.as_deref()).await;
    let aws = AwsPlumbing::new(Metrics::new(&Registry::new(), VERSION)?);
    let routes = routes::build(&cfg, &id, &aws).await?;
    let rows = once::run(&routes, wait).await;
    print!("{}", once::table(&rows));
    Ok(if rows.iter().all(|r| r.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_check(cfg: Config, fix: bool) -> anyhow::Result<ExitCode> {
    if fix && init(cfg.clone()).await != ExitCode::SUCCESS {
        println!("(--fix could not create every table; the checks below say why)");
    }
    let id = agent_id::resolve(cfg.agent.id.as_deref()).await;
    let aws = AwsPlumbing::new(Metrics::new(&Registry::new(), VERSION)?);
    let routes = routes::build(&cfg, &id, &aws).await?;
    let fleet = match &cfg.fleet {
        Some(f) => Some(Fleet::new(f, &id, &[], &aws).await),
        None => None,
    };
    let fleet_line = || async {
        let f = fleet.as_ref()?;
        Some(check::fleet_line(f.table(), cfg.fleet.as_ref()?).await)
    };
    let mut lines = check::run(&routes).await;
    lines.extend(fleet_line().await);
    // A table `--fix` just created reaches the replicas by replication:
    // give it a few seconds before calling its absence a problem.
    let patience = std::time::Instant::now() + Duration::from_secs(10);
    while fix && lines.iter().any(|l| !l.ok()) && std::time::Instant::now() < patience {
        tokio::time::sleep(Duration::from_millis(500)).await;
        lines = check::run(&routes).await;
        lines.extend(fleet_line().await);
    }
    if let Some(e) = &cfg.emf {
        lines.push(check::emf_line(e).await);
    }
    print!("{}", check::render(&lines));
    Ok(if lines.iter().all(|l| l.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn init(cfg: Config) -> ExitCode {
    let aws = match Metrics::new(&Registry::new(), VERSION) {
        Ok(m) => AwsPlumbing::new(m),
        Err(e) => {
            eprintln!("rpo-agent init: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let mut any = false;
    if let Some(f) = &cfg.fleet {
        any = true;
        let fleet = Fleet::new(f, "init", &[], &aws).await;
        match fleet.table().create().await {
            Ok(true) => println!(
                "✓ fleet {}: lease table {} created in {}",
                f.name, f.table, f.region
            ),
            Ok(false) => println!(
                "✓ fleet {}: lease table {} exists in {}",
                f.name, f.table, f.region
            ),
            Err(e) => {
                failed = true;
                println!("✗ fleet {}: {} ({}): {}", f.name, e.op, e.code, e.message);
            }
        }
    }
    for t in &cfg.targets {
        if !matches!(t.kind, config::Kind::Postgres | config::Kind::Mysql) {
            continue;
        }
        any = true;
        match rpo_agent::probe::sql::init(t, &aws).await {
            Ok(at) => println!("✓ {}: table rpo_canary ready on {at}", t.name),
            Err(e) => {
                failed = true;
                println!("✗ {}: {} ({}): {}", t.name, e.op, e.code, e.message);
            }
        }
    }
    if !any {
        println!("no [fleet], postgres or mysql targets: nothing to create");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
