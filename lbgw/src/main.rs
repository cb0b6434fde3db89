//! The `lbgw` command: `check`, `route`, `run`, `maps`, `status`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lbgw",
    version,
    about = "eBPF L4 load balancer and Gateway API data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the LoadBalancer IP pool comes from, shared by `check` and `run`.
#[derive(clap::Args, Clone)]
struct PoolArgs {
    /// A CIDR of the LoadBalancer IP pool (repeatable). Overrides CILIUM_LB_CIDR and any
    /// CiliumLoadBalancerIPPool objects.
    #[arg(long = "lb-cidr", value_name = "CIDR")]
    lb_cidr: Vec<String>,
    /// File where allocations are remembered so every object keeps its IP across restarts.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/lbgw/ipam.json")]
    state: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print the VIP plan (object → IP, pool) and the Gateway
    /// API status (Gateway, listener and HTTPRoute conditions). Exit code 0 only when the
    /// configuration is valid and every object got its address; status problems are warned
    /// about and fail the command only with --strict.
    Check {
        /// Kubernetes YAML files or directories of them (repeatable).
        #[arg(long, short, required = true, value_name = "PATH")]
        config: Vec<PathBuf>,
        #[command(flatten)]
        pool: PoolArgs,
        /// Also fail (exit code 1) when a Gateway, listener or HTTPRoute condition reports a
        /// problem.
        #[arg(long)]
        strict: bool,
    },
    /// Explain how a request would be routed: Gateway and listener, HTTPRoute rule and match,
    /// filters, and backends with their endpoints, without serving it. Exit code 0 when a
    /// route matches.
    Route(Box<RouteArgs>),
    /// Run the data plane: XDP on an interface and the Gateway API proxy beside it, or the
    /// proxy alone with --no-xdp.
    Run(Box<lbgw_run::RunArgs>),
    /// Print the counters of the XDP programs currently loaded (per VIP and global).
    Maps,
    /// Remove the data plane a pinned lbgw left running in this network namespace: detach its
    /// XDP and sk_lookup programs, free its maps, delete its local routes.
    Cleanup {
        /// The pin directory lbgw ran with.
        #[arg(long, value_name = "DIR", default_value = lbgw::dataplane::pin::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Print what a running `lbgw run --admin ADDR` serves: VIPs, listeners, routes,
    /// endpoints and their health, fetched from its admin endpoint.
    Status {
        /// The admin endpoint of the running lbgw.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9901")]
        admin: std::net::SocketAddr,
        /// Print the JSON report instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// A duration: `500ms`, `10s`, `5m`, or a number of seconds (`2.5`).
fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    let value = value.trim();
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else {
        (value, 1.0)
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a duration like 500ms, 10s, 5m or 2.5"))?;
    std::time::Duration::try_from_secs_f64(number * scale).map_err(|e| format!("{value:?}: {e}"))
}

mod lbgw_run {
    use super::*;
    use lbgw::dataplane::AttachMode;

    #[derive(clap::Args)]
    pub struct RunArgs {
        /// Kubernetes YAML files or directories of them (repeatable; required unless
        /// --kubernetes).
        #[arg(
            long,
            short,
            required_unless_present = "kubernetes",
            conflicts_with = "kubernetes",
            value_name = "PATH"
        )]
        pub config: Vec<PathBuf>,
        /// Interface to announce VIPs on and attach the XDP program to (required unless
        /// --no-xdp, or --iface-regex with --kubernetes).
        #[arg(long, value_name = "IFACE", required_unless_present_any = ["no_xdp", "iface_regex"])]
        pub iface: Option<String>,
        #[command(flatten)]
        pub kube: crate::kube_args::KubeArgs,
        /// Run only the Gateway API proxy: no XDP program, no VIP announcements.
        #[arg(long, conflicts_with = "iface")]
        pub no_xdp: bool,
        /// Address the proxy binds each Gateway listener port on. Default with XDP: loopback,
        /// an ephemeral port per Gateway port, with connections to the VIPs handed over by the
        /// sk_lookup program; with --no-xdp: all addresses, IPv6 and IPv4.
        #[arg(long, value_name = "ADDR")]
        pub bind: Option<std::net::IpAddr>,
        /// Ports the L4 forwarder uses for source NAT (externalTrafficPolicy: Cluster). Keep
        /// them outside net.ipv4.ip_local_port_range (default 32768-60999).
        #[arg(long, value_name = "FIRST-LAST", default_value = "61000-65535", value_parser = parse_port_range)]
        pub snat_ports: (u16, u16),
        /// bpffs directory where the data plane is pinned, so it keeps running across lbgw
        /// restarts and upgrades (the next lbgw adopts it; `lbgw cleanup` removes it).
        #[arg(long, value_name = "DIR", default_value = lbgw::dataplane::pin::DEFAULT_PIN_DIR)]
        pub pin_dir: PathBuf,
        /// Do not pin: the data plane (XDP, sk_lookup, local routes) goes away when lbgw exits.
        #[arg(long)]
        pub no_pin: bool,
        #[command(flatten)]
        pub pool: PoolArgs,
        /// XDP attach mode: auto tries native (driver) mode and falls back to generic.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        pub xdp_mode: AttachMode,
        /// Also answer and announce on this 802.1Q VLAN of IFACE (repeatable).
        #[arg(long = "vlan", value_name = "ID", value_parser = clap::value_parser!(u16).range(1..4095))]
        pub vlans: Vec<u16>,
        /// Seconds between repeated gratuitous ARP / unsolicited NA for every VIP (0: only at start).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        pub announce_interval: u64,
        /// Seconds between logs of the XDP counters, when they changed (0: only at exit).
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        pub stats_interval: u64,
        /// Pass traffic to unallocated pool addresses and to VIP ports nothing serves to the
        /// kernel instead of dropping it in XDP.
        #[arg(long)]
        pub no_early_drop: bool,
        /// Serve /metrics, /healthz, /readyz, /config and /status on this address (off by
        /// default; 127.0.0.1:9901 keeps it local).
        #[arg(long, value_name = "ADDR:PORT")]
        pub admin: Option<std::net::SocketAddr>,
        /// After SIGTERM/SIGINT, how long in-flight requests may go on before lbgw exits.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        pub drain_timeout: std::time::Duration,
        /// Access log: one line per request on stdout (`text`, `json`), as tracing events
        /// with target `lbgw::access` on stderr (`tracing`), or `off`.
        #[arg(long, value_enum, default_value_t = lbgw::proxy::AccessLogFormat::Text)]
        pub access_log: lbgw::proxy::AccessLogFormat,
        /// Do not reload when the --config files change (SIGHUP still reloads).
        #[arg(long)]
        pub no_watch: bool,
        /// File changes within this long are applied as one reload.
        #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
        pub watch_debounce: std::time::Duration,
        /// Proxy worker threads, each serving the connections it accepts (with its own
        /// SO_REUSEPORT socket per port and its own backend connections). Default: one per CPU.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        pub workers: Option<u16>,
        #[command(flatten)]
        pub limits: LimitArgs,
    }

    /// Proxy hardening and backend health (`lbgw run`).
    #[derive(clap::Args)]
    pub struct LimitArgs {
        /// Client connections open at once; more are closed on accept.
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        pub max_connections: usize,
        /// Largest request head in bytes (over it: 431).
        #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
        pub max_header_bytes: usize,
        /// Most header fields in an HTTP/1.1 request (over it: 431).
        #[arg(long, value_name = "N", default_value_t = 100)]
        pub max_headers: usize,
        /// Time for a client to send an HTTP/1.1 request head (slowloris).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        pub header_read_timeout: std::time::Duration,
        /// Close connections with no request in progress for this long.
        #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
        pub idle_timeout: std::time::Duration,
        /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.
        #[arg(long, value_name = "N", default_value_t = 250)]
        pub h2_max_concurrent_streams: u32,
        /// HTTP/2 streams a client may reset before they are accepted (GOAWAY over it).
        #[arg(long, value_name = "N", default_value_t = 50)]
        pub h2_max_pending_accept_reset_streams: usize,
        /// Requests a connection may abandon before their response (HTTP/2 rapid reset,
        /// CVE-2023-44487) before it is closed, when they are half its requests or more.
        #[arg(long, value_name = "N", default_value_t = 100)]
        pub max_premature_resets: u64,
        /// Failures in a row (connect errors, resets, 5xx) that eject an endpoint; 0: off.
        #[arg(long, value_name = "N", default_value_t = 5)]
        pub outlier_consecutive_failures: u32,
        /// First ejection length; the n-th ejection lasts n times as long.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        pub outlier_base_ejection: std::time::Duration,
        /// Longest ejection.
        #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
        pub outlier_max_ejection: std::time::Duration,
    }

    pub fn run(args: RunArgs) -> Result<ExitCode> {
        if args.kube.kubernetes {
            return crate::kube_args::run(args);
        }
        let opts = run_options(args);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(lbgw::daemon::run(opts))?;
        Ok(ExitCode::SUCCESS)
    }

    /// The options of `lbgw run` both modes share.
    pub fn run_options(args: RunArgs) -> lbgw::daemon::RunOptions {
        lbgw::daemon::RunOptions {
            config: args.config,
            iface: args.iface,
            lb_cidrs: args.pool.lb_cidr,
            env_lb_cidr: std::env::var("CILIUM_LB_CIDR").ok(),
            state: args.pool.state,
            xdp_mode: args.xdp_mode,
            vlans: args.vlans,
            announce_interval: std::time::Duration::from_secs(args.announce_interval),
            stats_interval: std::time::Duration::from_secs(args.stats_interval),
            no_early_drop: args.no_early_drop,
            bind: args.bind,
            // --node-name / NODE_NAME (shared with --kubernetes), else the host name: matched
            // against EndpointSlice nodeName for externalTrafficPolicy: Local.
            node_name: args.kube.node_name.clone().or_else(host_name),
            snat_ports: args.snat_ports,
            pinning: if args.no_pin {
                lbgw::dataplane::pin::Pinning::None
            } else {
                lbgw::dataplane::pin::Pinning::Dir(args.pin_dir)
            },
            admin: args.admin,
            drain_timeout: args.drain_timeout,
            access_log: args.access_log,
            workers: args
                .workers
                .map_or_else(lbgw::proxy::default_workers, usize::from),
            limits: lbgw::proxy::Limits {
                max_connections: args.limits.max_connections,
                max_header_bytes: args.limits.max_header_bytes,
                max_headers: args.limits.max_headers,
                header_read_timeout: args.limits.header_read_timeout,
                idle_timeout: args.limits.idle_timeout,
                h2_max_concurrent_streams: args.limits.h2_max_concurrent_streams,
                h2_max_pending_accept_reset_streams: args
                    .limits
                    .h2_max_pending_accept_reset_streams,
                max_premature_resets: args.limits.max_premature_resets,
                ..lbgw::proxy::Limits::default()
            },
            outlier: lbgw::proxy::OutlierOptions {
                consecutive_failures: args.limits.outlier_consecutive_failures,
                base_ejection: args.limits.outlier_base_ejection,
                max_ejection: args.limits.outlier_max_ejection,
            },
            // Kubernetes mode has no files to watch.
            watch: !args.no_watch && !args.kube.kubernetes,
            watch_debounce: args.watch_debounce,
        }
    }

    /// `FIRST-LAST` → (first, count).
    fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
        let (first, last) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a port range FIRST-LAST"))?;
        let first: u16 = first
            .trim()
            .parse()
            .map_err(|e| format!("{first:?}: {e}"))?;
        let last: u16 = last.trim().parse().map_err(|e| format!("{last:?}: {e}"))?;
        if first == 0 || last < first {
            return Err(format!("{s:?}: need 1 <= FIRST <= LAST"));
        }
        let count = u16::try_from(u32::from(last) - u32::from(first) + 1)
            .map_err(|_| format!("{s:?}: at most 65535 ports"))?;
        Ok((first, count))
    }

    /// The kernel's host name (uname nodename), as Kubernetes names a node by default.
    fn host_name() -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// `lbgw maps`: the counters of every loaded lbgw XDP program.
    pub fn maps() -> Result<ExitCode> {
        let reports = lbgw::dataplane::stats::loaded_reports()?;
        if reports.is_empty() {
            println!("no lbgw XDP program is loaded");
            return Ok(ExitCode::SUCCESS);
        }
        for report in reports {
            println!(
                "program {} ({})",
                report.program_id,
                lbgw_common::names::XDP_PROGRAM
            );
            println!(
                "  {:<40} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
                "VIP", "ARP replies", "NA replies", "echo", "dropped", "passed", "forwarded"
            );
            for vip in &report.vips {
                println!(
                    "  {:<40} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
                    vip.ip.to_string(),
                    vip.arp_replies,
                    vip.na_replies,
                    vip.echo_replies,
                    vip.dropped_unserved,
                    vip.passed,
                    vip.forwarded
                );
            }
            println!("  counters: {}", report.counters);
        }
        Ok(ExitCode::SUCCESS)
    }
}

mod kube_args;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LBGW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            config,
            pool,
            strict,
        } => cmd_check(&config, &pool, strict),
        Command::Route(args) => cmd_route(&args),
        Command::Run(args) => lbgw_run::run(*args),
        Command::Maps => lbgw_run::maps(),
        Command::Cleanup { pin_dir } => cmd_cleanup(&pin_dir),
        Command::Status { admin, json } => cmd_status(admin, json),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lbgw: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lbgw cleanup`: removes a pinned data plane and lbgw's local routes from this namespace.
fn cmd_cleanup(pin_dir: &std::path::Path) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = runtime.block_on(lbgw::daemon::cleanup(pin_dir))?;
    if done.is_empty() {
        println!("nothing to clean up in this network namespace");
    }
    for line in done {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `lbgw status`: the running lbgw's `/status`, as tables or JSON.
fn cmd_status(admin: std::net::SocketAddr, json: bool) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(lbgw::admin::fetch_status(admin))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", lbgw::admin::view::render(&status));
    }
    Ok(if status.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `lbgw check`: loads the configuration, resolves the pools (`--lb-cidr`, else
/// `CILIUM_LB_CIDR`, else CiliumLoadBalancerIPPool objects), reads the IPAM state without ever
/// writing it (a missing file is fine), allocates, and prints the VIP plan and the Gateway API
/// status to stdout, every error to stderr and every status problem to stderr as a warning.
/// Exit code 0 only when there is no error (and, with `strict`, no status problem).
fn cmd_check(config: &[PathBuf], pool: &PoolArgs, strict: bool) -> Result<ExitCode> {
    use lbgw::{config::error_chain, ipam};

    fn report<E: std::error::Error>(errors: &[E]) -> ExitCode {
        for err in errors {
            eprintln!("lbgw: {}", error_chain(err));
        }
        ExitCode::FAILURE
    }

    let config = match lbgw::config::load(config) {
        Ok(config) => config,
        Err(err) => return Ok(report(err.errors())),
    };
    let env = match std::env::var("CILIUM_LB_CIDR") {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("CILIUM_LB_CIDR is not valid UTF-8")
        }
    };
    let pools = match ipam::Pools::resolve(&pool.lb_cidr, env.as_deref(), &config) {
        Ok(pools) => pools,
        Err(err) => return Ok(report(err.errors())),
    };
    let previous = match ipam::State::load(&pool.state) {
        Ok(state) => state,
        Err(err) => return Ok(report(err.errors())),
    };
    let plan = ipam::allocate(&pools, &config, &previous);
    print!("{}", plan.table());
    let (_, status) = lbgw::gateway::GatewayModel::build(&config, &plan);
    print!("{status}");
    let mut code = if plan.is_ok() {
        ExitCode::SUCCESS
    } else {
        report(&plan.errors)
    };
    let problems = status.problems();
    for problem in &problems {
        eprintln!("lbgw: warning: {problem}");
    }
    if strict && !problems.is_empty() {
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// What `lbgw route` explains.
#[derive(clap::Args)]
struct RouteArgs {
    /// Kubernetes YAML files or directories of them (repeatable).
    #[arg(long, short, required = true, value_name = "PATH")]
    config: Vec<PathBuf>,
    /// The request URL, e.g. `https://ai.homelab.internal/ollama/api/tags`. Without a port,
    /// the listener port is 80 for http and 443 for https; an IP address as host selects the
    /// Gateway with that VIP.
    #[arg(long, value_name = "URL")]
    url: String,
    /// The request method.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "GET"
    )]
    method: String,
    /// A request header, `Name: value` (repeatable); `Host` overrides the URL host for routing.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Only consider this Gateway (`NAMESPACE/NAME`, or `NAME` in namespace default).
    #[arg(long, value_name = "NS/NAME")]
    gateway: Option<String>,
    #[command(flatten)]
    pool: PoolArgs,
}

/// `lbgw route`: builds the model as `lbgw run` would (VIPs best effort: an IPAM problem only
/// leaves Gateways without addresses) and prints what would happen to the request.
fn cmd_route(args: &RouteArgs) -> Result<ExitCode> {
    use anyhow::Context as _;
    use lbgw::{config::error_chain, gateway, ipam};

    let config = match lbgw::config::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            for e in err.errors() {
                eprintln!("lbgw: {}", error_chain(e));
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let env = std::env::var("CILIUM_LB_CIDR").ok();
    let pools =
        ipam::Pools::resolve(&args.pool.lb_cidr, env.as_deref(), &config).unwrap_or_else(|err| {
            eprintln!("lbgw: warning: no VIPs: {}", error_chain(&err));
            ipam::Pools {
                source: ipam::PoolSource::Objects,
                pools: Vec::new(),
            }
        });
    let previous = ipam::State::load(&args.pool.state).unwrap_or_else(|err| {
        eprintln!("lbgw: warning: IPAM state ignored: {}", error_chain(&err));
        ipam::State::new(Vec::new())
    });
    let plan = ipam::allocate(&pools, &config, &previous);
    let (model, status) = gateway::GatewayModel::build(&config, &plan);

    let url: http::Uri = args
        .url
        .parse()
        .with_context(|| format!("invalid URL {:?}", args.url))?;
    let method = http::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("invalid method {:?}", args.method))?;
    let mut headers = http::HeaderMap::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?} is not `Name: value`"))?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("invalid header name {name:?}"))?,
            http::HeaderValue::from_str(value.trim())
                .with_context(|| format!("invalid value for header {name:?}"))?,
        );
    }
    let gateway_id = args.gateway.as_deref().map(|g| {
        let (namespace, name) = g
            .split_once('/')
            .unwrap_or((lbgw::config::DEFAULT_NAMESPACE, g));
        gateway::GatewayId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    });
    let request = gateway::explain::Request::new(&url, &method, &headers, gateway_id.as_ref())?;
    let explanation = gateway::explain::explain(&model, &status, &config, &request);
    print!("{explanation}");
    Ok(if explanation.matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
