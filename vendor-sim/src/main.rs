//! `vendor-sim`: serves fake Lianke, Zhimu and WeCom APIs on one port (see README.md).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use vendor_sim::{
    LiankeDeviceSpec, Sim, SimConfig, WecomDeviceSpec, WecomModelSpec, WecomPushConfig,
    ZhimuAppSpec, ZhimuShareSpec,
};

/// Fake Lianke (/api/...), Zhimu (/openapi...) and WeCom (/cgi-bin/openhw/...) cloud-printer
/// APIs on one port, with a control API under /_sim/... (faults, fixtures, request ledger).
#[derive(Debug, Parser)]
#[command(name = "vendor-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_BIND", default_value = "127.0.0.1:9000")]
    bind: SocketAddr,
    /// Lianke ApiKey header values accepted (comma separated).
    #[arg(long, env = "SIM_LIANKE_API_KEYS", value_delimiter = ',', default_value = vendor_sim::DEFAULT_LIANKE_API_KEY)]
    lianke_api_keys: Vec<String>,
    /// Milliseconds a Lianke task spends in each stage (READY, PARSING, SENDING).
    #[arg(long, env = "SIM_LIANKE_STAGE_MS", default_value_t = 1000)]
    lianke_stage_ms: u64,
    /// Milliseconds a Zhimu task spends in each stage (SUBMITTED, QUEUED, PRINTING).
    #[arg(long, env = "SIM_ZHIMU_STAGE_MS", default_value_t = 1000)]
    zhimu_stage_ms: u64,
    /// Scales Lianke's callback schedule (0/5/10 s) and the WeCom push retries; 0.01 gives
    /// 0/50/100 ms.
    #[arg(long, env = "SIM_CALLBACK_TIME_SCALE", default_value_t = 1.0)]
    callback_time_scale: f64,
    /// Accept http:// callbackUrl values (Lianke itself requires https).
    #[arg(long, env = "SIM_ALLOW_HTTP_CALLBACKS")]
    allow_http_callbacks: bool,
    /// Accept self-signed / invalid TLS certificates when delivering callbacks.
    #[arg(long, env = "SIM_ACCEPT_INVALID_CERTS")]
    accept_invalid_certs: bool,
    /// Zhimu token lifetime in seconds (documented: 86400).
    #[arg(long, env = "SIM_ZHIMU_TOKEN_TTL_SECS", default_value_t = 86_400)]
    zhimu_token_ttl_secs: u64,
    /// WeCom model/device token lifetime in seconds (documented: 7200).
    #[arg(long, env = "SIM_WECOM_TOKEN_TTL_SECS", default_value_t = 7_200)]
    wecom_token_ttl_secs: u64,
    /// URL receiving WeCom pushes (printer_job_submit, printer_job_del, bind).
    #[arg(long, env = "SIM_WECOM_PUSH_URL")]
    wecom_push_url: Option<String>,
    /// Token for the WeCom push msg_signature.
    #[arg(long, env = "SIM_WECOM_PUSH_TOKEN", default_value = "sim-push-token")]
    wecom_push_token: String,
    /// 43-character EncodingAESKey for WeCom pushes.
    #[arg(
        long,
        env = "SIM_WECOM_PUSH_AES_KEY",
        default_value = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    )]
    wecom_push_aes_key: String,
    /// receiveid appended to encrypted WeCom pushes.
    #[arg(long, env = "SIM_WECOM_RECEIVE_ID", default_value = "")]
    wecom_receive_id: String,
    /// Seed for fault probabilities and latency jitter, so a run can be replayed (default:
    /// random).
    #[arg(long, env = "SIM_FAULT_SEED")]
    fault_seed: Option<u64>,
    /// Register the demo fixtures (see README): Lianke box demo-lk-1/demo-lk-key,
    /// Zhimu app demo-app/demo-appkey with share 830487711/2598, WeCom model demo-model.
    #[arg(long, env = "SIM_DEMO_FIXTURES")]
    demo_fixtures: bool,
}

fn demo_fixtures(config: &mut SimConfig) {
    let f = &mut config.fixtures;
    f.lianke_devices
        .push(LiankeDeviceSpec::new("demo-lk-1", "demo-lk-key"));
    f.zhimu_apps.push(ZhimuAppSpec {
        appid: "demo-app".to_owned(),
        appkey: "demo-appkey".to_owned(),
    });
    f.zhimu_shares.push(ZhimuShareSpec::new(
        "830487711",
        "2598",
        "pkDgrqeA",
        "佳能复合机",
    ));
    f.wecom_models.push(WecomModelSpec {
        model_id: "demo-model".to_owned(),
        model_secret: "demo-model-secret".to_owned(),
        model_ticket: "demo-model-ticket".to_owned(),
    });
    f.wecom_devices.push(WecomDeviceSpec {
        model_id: "demo-model".to_owned(),
        device_sn: "demo-wecom-sn".to_owned(),
        device_secret: "demo-device-secret".to_owned(),
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let base = SimConfig::realistic();
    let mut config = SimConfig {
        bind: args.bind,
        lianke_api_keys: args.lianke_api_keys,
        lianke_stage_delay: Duration::from_millis(args.lianke_stage_ms),
        zhimu_stage_delay: Duration::from_millis(args.zhimu_stage_ms),
        lianke_callback_schedule: vendor_sim::scaled(
            &base.lianke_callback_schedule,
            args.callback_time_scale,
        ),
        wecom_push_schedule: vendor_sim::scaled(
            &base.wecom_push_schedule,
            args.callback_time_scale,
        ),
        allow_http_callbacks: args.allow_http_callbacks,
        fault_seed: args.fault_seed,
        accept_invalid_certs: args.accept_invalid_certs,
        zhimu_token_ttl: Duration::from_secs(args.zhimu_token_ttl_secs),
        wecom_token_ttl: Duration::from_secs(args.wecom_token_ttl_secs),
        wecom_push: args.wecom_push_url.map(|url| WecomPushConfig {
            url,
            token: args.wecom_push_token,
            encoding_aes_key: args.wecom_push_aes_key,
            receive_id: args.wecom_receive_id,
        }),
        ..base
    };
    if args.demo_fixtures {
        demo_fixtures(&mut config);
    }
    let sim = Sim::start(config).await?;
    println!("VENDOR_SIM_URL={}", sim.base_url());
    let control = sim.control();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("shutting down");
            control.shutdown_signal();
        }
    });
    sim.wait().await;
    Ok(())
}
