//! [`KubeWorkloads`]: the workloads port over the Kubernetes API with the `kube` crate.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envplane_aws::OnFirstUse;
use envplane_cloud::{CloudError, Track, Workload, Workloads};
use envplane_domain::EnvName;
use envplane_domain::names::{self, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use crate::objects;

/// Where envplane's workloads live on each environment's cluster.
pub const NAMESPACE: &str = "default";

/// The field manager of every server-side apply.
const FIELD_MANAGER: &str = "envplane";

/// How to reach one environment's cluster.
#[derive(Clone)]
pub struct Cluster {
    /// The API server, e.g. `https://ABC.gr7.eu-west-1.eks.amazonaws.com`.
    pub endpoint: String,
    /// The cluster's CA certificates, DER (none: the system's roots).
    pub ca_der: Vec<Vec<u8>>,
    /// A bearer token.
    pub token: String,
}

/// Finds an environment's cluster and a token for it.
#[async_trait]
pub trait Clusters: Send + Sync {
    /// The cluster of `env`.
    async fn cluster(&self, env: &EnvName) -> Result<Cluster, CloudError>;
}

/// EKS clusters: endpoint and CA from `DescribeCluster`, a presigned STS token per call.
pub struct EksClusters {
    eks: OnFirstUse<aws_sdk_eks::Client>,
    credentials: SharedCredentialsProvider,
    region: String,
}

impl EksClusters {
    /// Clusters of `eks`'s account and region, signing tokens with `credentials`.
    pub fn new(
        eks: impl Into<OnFirstUse<aws_sdk_eks::Client>>,
        credentials: SharedCredentialsProvider,
        region: impl Into<String>,
    ) -> Self {
        Self {
            eks: eks.into(),
            credentials,
            region: region.into(),
        }
    }
}

/// The DER certificates of a PEM bundle.
fn pem_to_der(pem: &str) -> Result<Vec<Vec<u8>>, CloudError> {
    let mut out = Vec::new();
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            inside = true;
            body.clear();
        } else if line.starts_with("-----END") {
            inside = false;
            let der = STANDARD
                .decode(&body)
                .map_err(|e| CloudError::Invalid(format!("the cluster's CA: {e}")))?;
            out.push(der);
        } else if inside {
            body.push_str(line);
        }
    }
    Ok(out)
}

#[async_trait]
impl Clusters for EksClusters {
    async fn cluster(&self, env: &EnvName) -> Result<Cluster, CloudError> {
        let name = names::cluster(env);
        let described = self
            .eks
            .describe_cluster()
            .name(&name)
            .send()
            .await
            .map_err(|e| CloudError::Transient(format!("DescribeCluster {name}: {e}")))?;
        let cluster = described
            .cluster()
            .ok_or_else(|| CloudError::Invalid(format!("EKS did not describe {name}")))?;
        let endpoint = cluster
            .endpoint()
            .ok_or_else(|| CloudError::Conflict(format!("{name} has no endpoint yet")))?
            .to_owned();
        let ca_pem = cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .map(|data| STANDARD.decode(data))
            .transpose()
            .map_err(|e| CloudError::Invalid(format!("the CA of {name}: {e}")))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| CloudError::Transient(format!("credentials to sign a token: {e}")))?;
        let token = crate::token::presigned(&credentials, &self.region, &name, SystemTime::now())?;
        Ok(Cluster {
            endpoint,
            ca_der: ca_pem
                .as_deref()
                .map(pem_to_der)
                .transpose()?
                .unwrap_or_default(),
            token,
        })
    }
}

/// The workloads port on Kubernetes.
pub struct KubeWorkloads {
    clusters: Arc<dyn Clusters>,
}

fn kube_error(what: &str, e: kube::Error) -> CloudError {
    match e {
        kube::Error::Api(status) => match status.code {
            429 => CloudError::Throttled(format!("{what}: {}", status.message)),
            409 => CloudError::Conflict(format!("{what}: {}", status.message)),
            401 | 403 => CloudError::Invalid(format!(
                "{what}: {} (does envplane's role have its EKS access entry?)",
                status.message
            )),
            code if code >= 500 => CloudError::Transient(format!("{what}: {}", status.message)),
            _ => CloudError::Invalid(format!("{what}: {} ({})", status.message, status.reason)),
        },
        other => CloudError::Transient(format!("{what}: {other}")),
    }
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl KubeWorkloads {
    /// Workloads on the clusters `clusters` finds.
    pub fn new(clusters: Arc<dyn Clusters>) -> Self {
        Self { clusters }
    }

    async fn client(&self, env: &EnvName) -> Result<kube::Client, CloudError> {
        let cluster = self.clusters.cluster(env).await?;
        let url: http::Uri = cluster
            .endpoint
            .parse()
            .map_err(|e| CloudError::Invalid(format!("the cluster's endpoint: {e}")))?;
        let mut config = kube::Config::new(url);
        config.default_namespace = NAMESPACE.to_owned();
        if !cluster.ca_der.is_empty() {
            config.root_cert = Some(cluster.ca_der);
        }
        config.auth_info.token = Some(cluster.token.into());
        config.read_timeout = Some(std::time::Duration::from_secs(30));
        kube::Client::try_from(config)
            .map_err(|e| CloudError::Invalid(format!("a client for {env}'s cluster: {e}")))
    }

    async fn apply_one(
        client: &kube::Client,
        resource: &ApiResource,
        object: Value,
    ) -> Result<(), CloudError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, resource);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|e| kube_error(&format!("applying {} {name}", resource.kind), e))?;
        Ok(())
    }
}

#[async_trait]
impl Workloads for KubeWorkloads {
    async fn apply(&self, workload: &Workload<'_>) -> Result<(), CloudError> {
        let client = self.client(workload.env).await?;
        // The Service and its binding first: pods that become ready are registered at once.
        Self::apply_one(
            &client,
            &resource("", "v1", "Service"),
            objects::service(workload),
        )
        .await?;
        Self::apply_one(
            &client,
            &resource("elbv2.k8s.aws", "v1beta1", "TargetGroupBinding"),
            objects::target_group_binding(workload),
        )
        .await?;
        Self::apply_one(
            &client,
            &resource("apps", "v1", "Deployment"),
            objects::deployment(workload),
        )
        .await
    }

    async fn scale(
        &self,
        env: &EnvName,
        service: Service,
        track: Track,
        replicas: u32,
    ) -> Result<(), CloudError> {
        let client = self.client(env).await?;
        let name = format!("{}-{}", service.as_str(), track.as_str());
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, NAMESPACE, &resource("apps", "v1", "Deployment"));
        let patch = json!({"spec": {"replicas": replicas}});
        match api
            .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            // Never applied: nothing runs there.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(kube_error(&format!("scaling Deployment {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_bundle_becomes_der_certificates() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBAU=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_to_der(pem).unwrap_or_default(),
            vec![vec![0, 1, 2, 3], vec![4, 5]]
        );
        assert!(pem_to_der("-----BEGIN X-----\n!!\n-----END X-----").is_err());
    }
}
