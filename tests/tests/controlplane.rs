//! The sandbox's control plane: TLS and authentication, real RBAC for ServiceAccounts,
//! controllers that act (Deployment → ReplicaSet → Pods), helm, the S3 endpoint with SigV4,
//! Prometheus discovering Pods through the apiserver, and `up` itself (a no-op when healthy, a
//! dead kubelet restarted). Pods run by the kubelet are `tests/kubelet.rs`'s.
//!
//! These need the binaries of `scripts/sandbox-bootstrap.sh`; without them they fail with a
//! message naming the script. They share one sandbox (started on first use, left running; stop
//! it with `ferrokv-sandbox down`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use ferrokv_tests::controlplane::{K8S_VERSION, client_from_kubeconfig};
use ferrokv_tests::harness::{TestNs, shared_sandbox};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

const SANDBOX_EXE: &str = env!("CARGO_BIN_EXE_ferrokv-sandbox");
const WAIT: Duration = Duration::from_secs(60);

async fn test_ns(prefix: &str) -> anyhow::Result<TestNs> {
    TestNs::new(prefix, Path::new(SANDBOX_EXE))
        .await
        .context("starting the sandbox")
}

#[tokio::test]
async fn apiserver_serves_verified_tls_and_authenticates_callers() -> anyhow::Result<()> {
    let t = test_ns("tls").await?;
    let readyz = t
        .client
        .request_text(http::Request::get("/readyz?verbose").body(Vec::new())?)
        .await?;
    assert!(readyz.contains("readyz check passed"), "{readyz}");
    let version = t.client.apiserver_version().await?;
    assert_eq!(version.git_version, K8S_VERSION);

    // A client that does not trust the sandbox's CA is refused during the TLS handshake.
    let untrusting = kube::Config::new(t.sandbox().apiserver_url().parse()?);
    let err = kube::Client::try_from(untrusting)?
        .apiserver_version()
        .await
        .expect_err("an untrusted CA must fail");
    assert!(!matches!(err, kube::Error::Api(_)), "expected a TLS failure, got {err}");

    // A caller that trusts the CA but has no credentials is unauthenticated (anonymous auth is off).
    let anonymous = kube::config::Kubeconfig::from_yaml(&format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\n\
         users: [{{name: nobody, user: {{}}}}]\ncontexts: [{{name: s, context: {{cluster: s, user: nobody}}}}]\n\
         current-context: s\n",
        t.sandbox().apiserver_url(),
        t.sandbox().pki().ca().cert.display()
    ))?;
    let anonymous = kube::Config::from_custom_kubeconfig(anonymous, &Default::default()).await?;
    match kube::Client::try_from(anonymous)?.apiserver_version().await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 for an anonymous caller, got {other:?}"),
    }
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn service_account_is_forbidden_until_a_role_binding_grants_it() -> anyhow::Result<()> {
    let t = test_ns("rbac").await?;
    t.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n")
        .await?;
    let kubeconfig = t
        .sandbox()
        .service_account_kubeconfig(&t.client, &t.name, "reader", Duration::from_secs(600))
        .await?;
    let as_reader = client_from_kubeconfig(&kubeconfig).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(as_reader.clone(), &t.name);

    match config_maps.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("a ServiceAccount without a Role must get 403, got {other:?}"),
    }

    t.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: configmap-reader
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader-reads-configmaps
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: configmap-reader
subjects:
  - kind: ServiceAccount
    name: reader
"#,
    )
    .await?;
    // The authorizer's informers see the binding shortly after it is written.
    let listed = t
        .wait_for("the reader to list configmaps", WAIT, || async {
            config_maps
                .list(&ListParams::default())
                .await
                .map(|l| Some(l.items.len()))
        })
        .await?;
    // Every namespace has kube-root-ca.crt once the publisher controller ran.
    assert!(listed <= 1, "unexpected configmaps: {listed}");

    // The binding grants exactly what the Role says: secrets stay forbidden.
    match Api::<Secret>::namespaced(as_reader, &t.name)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("secrets must stay forbidden, got {other:?}"),
    }
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn deployment_creates_a_replicaset_and_its_pods() -> anyhow::Result<()> {
    let t = test_ns("deploy").await?;
    t.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: ferrokv-sandbox-test:latest
"#,
    )
    .await?;
    let replica_sets: Api<ReplicaSet> = t.api();
    let rs = t
        .wait_for("the deployment controller to create a ReplicaSet", WAIT, || async {
            let list = replica_sets.list(&ListParams::default().labels("app=web")).await?;
            Ok::<_, kube::Error>(list.items.into_iter().find(|rs| {
                rs.owner_references()
                    .iter()
                    .any(|o| o.kind == "Deployment" && o.name == "web")
                    && rs.spec.as_ref().and_then(|s| s.replicas) == Some(2)
            }))
        })
        .await?;
    let rs_name = rs.name_any();
    let pods: Api<Pod> = t.api();
    let created = t
        .wait_for("the replicaset controller to create 2 Pods", WAIT, || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let owned: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| o.kind == "ReplicaSet" && o.name == rs_name)
                })
                .collect();
            Ok::<_, kube::Error>((owned.len() == 2).then_some(owned))
        })
        .await?;
    for pod in &created {
        // The admission chain ran: the ServiceAccount admission plugin mounted a token volume.
        let spec = pod.spec.as_ref().context("pod spec")?;
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        assert!(
            spec.volumes
                .iter()
                .flatten()
                .any(|v| v.name.starts_with("kube-api-access-")),
            "no projected token volume in {:?}",
            spec.volumes
        );
    }
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn helm_installs_a_chart() -> anyhow::Result<()> {
    let t = test_ns("helm").await?;
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/charts/tiny");
    let output = t
        .helm()?
        .args(["install", "tiny"])
        .arg(&chart)
        .args(["--set", "greeting=bonjour"])
        .output()?;
    assert!(
        output.status.success(),
        "helm install failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let cm = t.api::<ConfigMap>().get("tiny-greeting").await?;
    assert_eq!(
        cm.data.unwrap_or_default().get("greeting").map(String::as_str),
        Some("bonjour")
    );
    assert_eq!(
        cm.metadata
            .labels
            .unwrap_or_default()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("Helm")
    );

    let output = t.helm()?.args(["status", "tiny"]).output()?;
    let status = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && status.contains("STATUS: deployed"),
        "{status}"
    );
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn s3_endpoint_stores_objects_for_signed_requests_only() -> anyhow::Result<()> {
    let sandbox = shared_sandbox(Path::new(SANDBOX_EXE)).await?;
    let creds = &sandbox.state().s3;
    let client = |secret: &str| {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(creds.region.clone()))
            .endpoint_url(sandbox.s3_endpoint())
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &creds.access_key,
                secret,
                None,
                None,
                "ferrokv-sandbox",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    };
    let s3 = client(&creds.secret_key);
    let key = format!("e2e/{}.bin", std::process::id());
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket(&creds.bucket)
        .key(&key)
        .body(body.clone().into())
        .send()
        .await?;
    let got = s3
        .get_object()
        .bucket(&creds.bucket)
        .key(&key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());
    let listed = s3.list_objects_v2().bucket(&creds.bucket).prefix("e2e/").send().await?;
    assert!(listed.contents().iter().any(|o| o.key() == Some(key.as_str())));

    let forged = client("not-the-secret");
    let err = forged
        .get_object()
        .bucket(&creds.bucket)
        .key(&key)
        .send()
        .await
        .expect_err("a bad signature must fail");
    let code = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(code, Some(403), "{err:?}");

    s3.delete_object().bucket(&creds.bucket).key(&key).send().await?;
    Ok(())
}

#[tokio::test]
async fn prometheus_scrapes_an_annotated_pod_it_discovers_through_the_apiserver() -> anyhow::Result<()> {
    let t = test_ns("prom").await?;
    // The Pod's metrics endpoint: the test serves it itself and writes the Pod's IP into its
    // status as a kubelet would; the Pod names a node that does not exist so that the sandbox's
    // kubelet never claims it (the kubelet tests cover Pods it runs).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            let body = "# TYPE ferrokv_sandbox_probe gauge\nferrokv_sandbox_probe 42\n";
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        }
    });
    t.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: scraped
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "{port}"
spec:
  nodeName: no-such-node
  containers:
    - name: app
      image: ferrokv-sandbox-test:latest
"#
    ))
    .await?;
    t.api::<Pod>()
        .patch_status(
            "scraped",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}
            })),
        )
        .await?;
    let query = format!("ferrokv_sandbox_probe{{namespace=\"{}\",pod=\"scraped\"}}", t.name);
    let sample = t
        .wait_for("Prometheus to scrape the pod", Duration::from_secs(90), || async {
            let result = t.prometheus_query(&query).await?;
            Ok::<_, ferrokv_tests::harness::HarnessError>(result.first().cloned())
        })
        .await?;
    assert_eq!(
        sample.pointer("/value/1").and_then(|v| v.as_str()),
        Some("42"),
        "{sample}"
    );
    server.abort();
    // No kubelet runs on `no-such-node` to confirm the Pod's termination: without a forced
    // delete it, and so the namespace, would stay Terminating forever.
    t.api::<Pod>()
        .delete(
            "scraped",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await?;
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn up_is_a_no_op_when_healthy_and_restarts_a_dead_kubelet() -> anyhow::Result<()> {
    use ferrokv_tests::controlplane::Component;
    let sandbox = shared_sandbox(Path::new(SANDBOX_EXE)).await?;
    let exe = Path::new(SANDBOX_EXE);
    // Under the harness's lock, as every `up` of a test run.
    let lock = std::fs::File::create(sandbox.dir().join("up.lock"))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?;

    let again = sandbox.up(exe).await?;
    assert!(
        again.started.is_empty(),
        "a healthy sandbox restarted {:?}",
        again.started
    );
    println!("warm up (nothing to start): {:.1}s", again.elapsed.as_secs_f64());

    // A kubelet that died (SIGKILL: no chance to clean up) is started again, and its Node is
    // Ready with a fresh heartbeat before `up` returns.
    let pid = sandbox
        .running(Component::Kubelet)
        .context("the kubelet does not run")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let deadline = std::time::Instant::now() + WAIT;
    while sandbox.running(Component::Kubelet).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed kubelet is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = sandbox.up(exe).await?;
    assert_eq!(restarted.started, vec!["kubelet"]);
    println!(
        "up with a dead kubelet: {:.1}s (node Ready at {:.1}s)",
        restarted.elapsed.as_secs_f64(),
        restarted.kubelet_ready.as_secs_f64()
    );
    drop(lock);
    Ok(())
}
