//! Egress for Docker stages with `network: {allow: [...]}`.
//!
//! The stage's container joins a network of its own, created `internal` (no route out) and with
//! `inhibit_ipv4` (the host holds no address on it, so the host's own services are out of reach
//! too). The only other member is a proxy container, which is also on the egress network
//! (`bridge`, or `LIGHTSOUT_EGRESS_NETWORK`) and runs `lightsout egress-proxy`: it admits only
//! the stage's allow-list and prints every decision, which the runner records. The proxy
//! container runs this very binary: its image is built once per binary from the executable and
//! the shared libraries it has loaded, `FROM scratch`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest};
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt as _;
use tokio::sync::{OnceCell, mpsc};
use tokio::task::JoinHandle;

use super::image::short_hash;
use super::{Docker, FALLBACK_UID, labels};
use crate::egress::{Decision, Subnet};
use crate::executor::Job;

/// The port the proxy listens on, inside its container.
pub const PROXY_PORT: u16 = 3128;
/// The network the proxy reaches the outside through, unless `LIGHTSOUT_EGRESS_NETWORK` names
/// another.
pub const DEFAULT_EGRESS_NETWORK: &str = "bridge";

/// The range stage networks take their subnets from, unless `LIGHTSOUT_EGRESS_SUBNETS` names
/// another; and the size of each (16 addresses: the proxy and the stage need two).
pub const DEFAULT_EGRESS_SUBNETS: &str = "10.213.0.0/16";
const SUBNET_PREFIX: u32 = 28;

/// The proxy image, built at most once per process.
static PROXY_IMAGE: OnceCell<(String, Vec<String>)> = OnceCell::const_new();

/// A stage's network and proxy, while the stage runs.
pub struct Egress {
    pub network: String,
    pub proxy: String,
    /// `http://<proxy address>:3128`, for the stage's `HTTP_PROXY` and `HTTPS_PROXY`.
    pub url: String,
    pump: JoinHandle<()>,
}

/// Files of the proxy image: (name in the image, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// The executable and the shared objects this process has mapped (from `/proc/self/maps`), as
/// (name in the image, bytes); and the command that starts the executable there.
fn runtime_files() -> Result<(Files, Vec<String>), String> {
    let exe = std::fs::read("/proc/self/exe").map_err(|e| format!("cannot read this executable: {e}"))?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
    let exe_path = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let mut libs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && *p != exe_path && p.to_string_lossy().contains(".so"))
        .collect();
    libs.sort();
    libs.dedup();
    let mut files = vec![("lightsout".to_owned(), exe)];
    let mut loader = None;
    for lib in libs {
        let Some(name) = lib.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if name.starts_with("ld-") {
            loader = Some(name.clone());
        }
        let bytes = std::fs::read(&lib).map_err(|e| format!("cannot read {}: {e}", lib.display()))?;
        files.push((format!("lib/{name}"), bytes));
    }
    // A dynamic executable starts through its loader, which finds the libraries in /lib.
    let command = match loader {
        Some(ld) => vec![format!("/lib/{ld}"), "--library-path".into(), "/lib".into(), "/lightsout".into()],
        None => vec!["/lightsout".into()],
    };
    Ok((files, command))
}

fn image_tar(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, name, data).map_err(|e| e.to_string())
    };
    add("Dockerfile", b"FROM scratch\nCOPY . /\n", 0o644)?;
    for (name, data) in files {
        add(name, data, 0o755)?;
    }
    builder.into_inner().map_err(|e| e.to_string())
}

impl Docker {
    /// The proxy image's tag and the command that starts `lightsout` in it.
    async fn proxy_image(&self) -> Result<&'static (String, Vec<String>), String> {
        PROXY_IMAGE
            .get_or_try_init(|| async {
                let (files, command) = runtime_files()?;
                let tar = image_tar(&files)?;
                let tag = format!("lightsout-egress:{}", short_hash(&tar));
                if self.client().inspect_image(&tag).await.is_err() {
                    let opts = BuildImageOptionsBuilder::new().t(&tag).rm(true).forcerm(true).pull("false").build();
                    let mut stream = self.client().build_image(opts, None, Some(bollard::body_full(tar.into())));
                    while let Some(item) = stream.next().await {
                        let err = match item {
                            Ok(info) => info.error_detail.and_then(|d| d.message),
                            Err(e) => Some(e.to_string()),
                        };
                        if let Some(err) = err {
                            return Err(format!("docker: building the egress proxy image: {err}"));
                        }
                    }
                    self.prune_proxy_images(&tag).await;
                }
                Ok((tag, command))
            })
            .await
    }

    /// Removes the proxy images of other lightsout builds (one per binary would pile up); an
    /// image a container still uses stays.
    async fn prune_proxy_images(&self, keep: &str) {
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("reference", vec!["lightsout-egress"])]);
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build();
        let Ok(images) = self.client().list_images(Some(opts)).await else { return };
        for image in images {
            if image.repo_tags.iter().any(|t| t == keep) {
                continue;
            }
            for tag in &image.repo_tags {
                let _ =
                    self.client().remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
            }
        }
    }

    /// Creates the stage's internal network and starts its proxy; decisions go to `decisions`.
    pub(crate) async fn egress_start(
        &self,
        job: &Job,
        name: &str,
        decisions: mpsc::Sender<Decision>,
    ) -> Result<Egress, String> {
        let (image, command) = self.proxy_image().await?;
        let network = format!("{name}-net");
        let proxy = format!("{name}-egress");
        self.create_stage_network(job, &network).await?;
        // From here on, the caller removes what was created, whatever fails.
        let started = self.proxy_start(job, image, command, &network, &proxy, decisions).await;
        match started {
            Ok((url, pump)) => Ok(Egress { network, proxy, url, pump }),
            Err(e) => {
                self.egress_remove(&proxy, &network).await;
                Err(e)
            }
        }
    }

    /// Creates the stage's network on a /28 of its own from the egress range: Docker's default
    /// pools hold about thirty networks, too few for many networked stages at once. A /28 another
    /// network holds already is skipped.
    async fn create_stage_network(&self, job: &Job, network: &str) -> Result<(), String> {
        let range = self.egress_subnets();
        let pool = Subnet::parse(range).filter(|p| p.blocks(SUBNET_PREFIX) > 0).ok_or_else(|| {
            format!("LIGHTSOUT_EGRESS_SUBNETS `{range}` is not an IPv4 range of /28 or more, such as {DEFAULT_EGRESS_SUBNETS}")
        })?;
        let count = pool.blocks(SUBNET_PREFIX);
        // A random start (the hasher's keys are random), so that runners rarely try the same /28.
        let start = {
            use std::hash::BuildHasher as _;
            std::collections::hash_map::RandomState::new().hash_one((network, std::process::id()))
        };
        let mut last = String::new();
        for k in 0..64u64 {
            #[expect(clippy::cast_possible_truncation, reason = "the remainder is below `count`, a u32")]
            let n = ((start.wrapping_add(k.wrapping_mul(7919))) % u64::from(count)) as u32;
            let Some(subnet) = pool.block(SUBNET_PREFIX, n) else { continue };
            let request = NetworkCreateRequest {
                name: network.to_owned(),
                driver: Some("bridge".into()),
                internal: Some(true),
                enable_ipv6: Some(false),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig { subnet: Some(subnet), ..IpamConfig::default() }]),
                    ..Ipam::default()
                }),
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.inhibit_ipv4".to_owned(),
                    "true".to_owned(),
                )])),
                labels: Some(labels(job)),
                ..NetworkCreateRequest::default()
            };
            match self.client().create_network(request).await {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().to_ascii_lowercase().contains("overlap") => last = e.to_string(),
                Err(e) => return Err(format!("docker: creating the stage's network: {e}")),
            }
        }
        Err(format!("docker: no free /28 in the egress range {range} ({last}); widen LIGHTSOUT_EGRESS_SUBNETS"))
    }

    /// The proxy's container: on the egress network, no capabilities, read-only, small.
    fn proxy_host_config(&self) -> HostConfig {
        HostConfig {
            network_mode: Some(self.egress_network().to_owned()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            memory: Some(128 << 20),
            memory_swap: Some(128 << 20),
            nano_cpus: Some(1_000_000_000),
            pids_limit: Some(64),
            init: Some(true),
            ipc_mode: Some("private".into()),
            // Decisions are read from the proxy's output, whatever the engine's default driver.
            log_config: Some(bollard::models::HostConfigLogConfig { typ: Some("json-file".into()), config: None }),
            ..HostConfig::default()
        }
    }

    async fn proxy_start(
        &self,
        job: &Job,
        image: &str,
        command: &[String],
        network: &str,
        proxy: &str,
        decisions: mpsc::Sender<Decision>,
    ) -> Result<(String, JoinHandle<()>), String> {
        let fault = |what: &str, e: &dyn std::fmt::Display| format!("docker: {what}: {e}");
        let info = self.client().inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>);
        let info = info.await.map_err(|e| fault("inspecting the stage's network", &e))?;
        let subnet = info
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().find_map(|c| c.subnet))
            .ok_or_else(|| format!("docker: the network {network} has no IPv4 subnet"))?;
        let mut cmd = command.to_vec();
        cmd.extend(["egress-proxy".into(), "--listen".into(), format!("0.0.0.0:{PROXY_PORT}")]);
        cmd.extend(["--clients".into(), subnet]);
        for host in &job.egress {
            cmd.extend(["--allow".into(), host.clone()]);
        }
        let host = self.proxy_host_config();
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(cmd),
            user: Some(format!("{FALLBACK_UID}:{FALLBACK_UID}")),
            labels: Some(labels(job)),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(proxy).build();
        // Depending on the engine's version, a missing egress network fails the create or the start.
        let missing = |what: &str, e: bollard::errors::Error| match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, message }
                if message.contains("network") =>
            {
                format!(
                    "docker: the egress network `{}` does not exist; create it, or set LIGHTSOUT_EGRESS_NETWORK to one that does",
                    self.egress_network()
                )
            }
            other => fault(what, &other),
        };
        self.client().create_container(Some(opts), body).await.map_err(|e| missing("creating the egress proxy", e))?;
        let connect = NetworkConnectRequest { container: Some(proxy.to_owned()), endpoint_config: None };
        self.client()
            .connect_network(network, connect)
            .await
            .map_err(|e| fault("connecting the proxy to the stage's network", &e))?;
        self.client()
            .start_container(proxy, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| missing("starting the egress proxy", e))?;

        let opts = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).build();
        let mut stream = self.client().logs(proxy, Some(opts));
        // The proxy says when it listens; the stage starts after that.
        let first = tokio::time::timeout(Duration::from_secs(20), async {
            let mut said = Vec::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(out) => {
                        said.extend_from_slice(&out.into_bytes());
                        if said.contains(&b'\n') {
                            return Ok(String::from_utf8_lossy(&said).into_owned());
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err(format!("it exited: {}", String::from_utf8_lossy(&said).trim()))
        })
        .await;
        match first {
            Ok(Ok(line)) if line.contains("\"listening\"") => {}
            Ok(Ok(line)) => return Err(format!("docker: the egress proxy did not start: {}", line.trim())),
            Ok(Err(e)) => return Err(format!("docker: the egress proxy did not start: {e}")),
            Err(_) => return Err("docker: the egress proxy did not start within 20s".into()),
        }
        let pump = tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(Ok(out)) = stream.next().await {
                pending.extend_from_slice(&out.into_bytes());
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    if let Ok(d) = serde_json::from_slice::<Decision>(&line)
                        && decisions.send(d).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
        let inspect =
            self.client().inspect_container(proxy, None::<bollard::query_parameters::InspectContainerOptions>);
        let inspect = inspect.await.map_err(|e| fault("inspecting the egress proxy", &e))?;
        let ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        if let Some(ip) = ip {
            Ok((format!("http://{ip}:{PROXY_PORT}"), pump))
        } else {
            pump.abort();
            Err(format!("docker: the egress proxy has no address on {network}"))
        }
    }

    /// Stops the proxy and removes the stage's network; the stage's container must be gone.
    pub(crate) async fn egress_stop(&self, egress: Egress) {
        let opts = bollard::query_parameters::KillContainerOptionsBuilder::new().signal("KILL").build();
        let _ = self.client().kill_container(&egress.proxy, Some(opts)).await;
        // The log stream ends when the proxy has stopped: every decision it printed is sent.
        let _ = tokio::time::timeout(Duration::from_secs(5), egress.pump).await;
        self.egress_remove(&egress.proxy, &egress.network).await;
    }

    async fn egress_remove(&self, proxy: &str, network: &str) {
        let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        let _ = self.client().remove_container(proxy, Some(opts)).await;
        let _ = self.client().remove_network(network).await;
    }
}
