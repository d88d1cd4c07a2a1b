//! The AWS adapters against moto's server: the shipped flows provision and destroy a prod
//! environment through EC2, EKS and ELBv2, and the AWS side is inspected directly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use std::sync::Mutex;

use aws_config::BehaviorVersion;
use aws_sdk_ec2::types::Filter;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use envplane_aws::{AwsCloud, AwsSettings};
use envplane_cloud::Cloud;
use envplane_domain::environment::Phase;
use envplane_domain::{Blueprint, EnvName, Tier, VpcCidr};
use envplane_store::StateStore;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::{Executor, Flow, VirtualClock};
use time::OffsetDateTime;

async fn moto_config() -> Option<aws_config::SdkConfig> {
    let endpoint = envplane_store::testing::moto_endpoint()?;
    Some(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await,
    )
}

async fn any_image(config: &aws_config::SdkConfig) -> String {
    let images = aws_sdk_ec2::Client::new(config)
        .describe_images()
        .send()
        .await
        .unwrap();
    images
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto ships images")
        .to_owned()
}

/// Keeps the body of every request sent, to check what moto drops from its answers.
#[derive(Debug, Default, Clone)]
struct RequestLog(Arc<Mutex<Vec<String>>>);

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context
            .request()
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().push(body);
        Ok(())
    }
}

impl RequestLog {
    fn find(&self, needle: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|b| b.contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no request with {needle}"))
    }
}

fn env_filter(env: &str) -> Filter {
    Filter::builder()
        .name("tag:envplane:environment")
        .values(env)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_is_provisioned_and_destroyed_through_ec2_eks_and_elbv2() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    let config = plane.config.clone();
    let (cloud, store, log) = (&plane.cloud, &plane.store, &plane.log);
    let env = unique('p');
    let name = env.to_string();
    let op =
        envplane_store::testing::mutations::create(store.as_ref(), &env, Tier::Prod, 2, |_| {})
            .await;
    plane.run(Flow::Provision, &env, &op).await;
    assert_eq!(
        store.environment(&env).await.unwrap().unwrap().status.phase,
        Phase::Ready
    );

    // What AWS holds, read with the SDK, not through the adapter.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpcs = ec2
        .describe_vpcs()
        .filters(env_filter(&name))
        .send()
        .await
        .unwrap();
    assert_eq!(
        vpcs.vpcs()
            .iter()
            .map(|v| v.cidr_block().unwrap())
            .collect::<Vec<_>>(),
        vec!["10.2.0.0/16"]
    );
    let subnets = ec2
        .describe_subnets()
        .filters(env_filter(&name))
        .send()
        .await
        .unwrap();
    let cidrs: BTreeSet<&str> = subnets
        .subnets()
        .iter()
        .map(|s| s.cidr_block().unwrap())
        .collect();
    assert_eq!(
        cidrs,
        (1..=6)
            .map(|i| format!("10.2.{i}.0/24"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    let zones: BTreeSet<&str> = subnets
        .subnets()
        .iter()
        .map(|s| s.availability_zone().unwrap())
        .collect();
    assert_eq!(zones.len(), 3);
    let igws = ec2
        .describe_internet_gateways()
        .filters(env_filter(&name))
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1);
    assert_eq!(igws.internet_gateways()[0].attachments().len(), 1);
    // moto ignores the tag filter of DescribeNatGateways: filter here too.
    let nats = ec2
        .describe_nat_gateways()
        .filter(env_filter(&name))
        .send()
        .await
        .unwrap();
    let ours = |tags: &[aws_sdk_ec2::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == Some("envplane:environment") && t.value() == Some(name.as_str()))
    };
    let nats: Vec<_> = nats
        .nat_gateways()
        .iter()
        .filter(|g| ours(g.tags()) && g.state().map(|s| s.as_str()) != Some("deleted"))
        .collect();
    assert_eq!(nats.len(), 3);
    let groups = ec2
        .describe_security_groups()
        .filters(env_filter(&name))
        .send()
        .await
        .unwrap();
    let by_name = |suffix: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(&format!("{name}-{suffix}")))
            .unwrap()
    };
    let (db, cluster) = (by_name("sg-db"), by_name("sg-cluster"));
    let rule = &db.ip_permissions()[0];
    assert_eq!((rule.from_port(), rule.to_port()), (Some(5432), Some(5432)));
    assert_eq!(
        rule.user_id_group_pairs()[0].group_id(),
        cluster.group_id(),
        "5432 only from the cluster's group"
    );
    assert!(rule.ip_ranges().is_empty());

    let eks = aws_sdk_eks::Client::new(&config);
    let described = eks
        .describe_cluster()
        .name(format!("{name}-eks"))
        .send()
        .await
        .unwrap();
    assert_eq!(described.cluster().unwrap().version(), Some("1.31"));
    for (group, instance_type) in [("frontend", "t3.large"), ("backend", "t3.xlarge")] {
        let ng = eks
            .describe_nodegroup()
            .cluster_name(format!("{name}-eks"))
            .nodegroup_name(format!("{name}-{group}"))
            .send()
            .await
            .unwrap();
        let ng = ng.nodegroup().unwrap();
        let scaling = ng.scaling_config().unwrap();
        assert_eq!(
            (
                scaling.min_size(),
                scaling.desired_size(),
                scaling.max_size()
            ),
            (Some(3), Some(3), Some(6))
        );
        assert_eq!(ng.instance_types(), [instance_type.to_owned()]);
    }
    let instances = ec2
        .describe_instances()
        .filters(env_filter(&name))
        .send()
        .await
        .unwrap();
    let instance = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
        .unwrap();
    assert_eq!(
        instance.instance_type().map(|t| t.as_str()),
        Some("t3.xlarge")
    );
    let volumes = ec2
        .describe_volumes()
        .filters(env_filter(&name))
        .send()
        .await
        .unwrap();
    let volume = &volumes.volumes()[0];
    assert_eq!(
        (
            volume.size(),
            volume.volume_type().map(|t| t.as_str()),
            volume.iops()
        ),
        (Some(100), Some("gp3"), Some(3000))
    );
    assert_eq!(
        volume.attachments()[0].instance_id(),
        instance.instance_id()
    );
    assert!(
        volume
            .tags()
            .iter()
            .any(|t| t.key() == Some("Backup") && t.value() == Some("true"))
    );
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let tgs = elb
        .describe_target_groups()
        .names(format!("{name}-tg-frontend"))
        .names(format!("{name}-tg-backend"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tgs.target_groups()
            .iter()
            .map(|t| t.port().unwrap())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([3000, 3001])
    );
    // The environment's own load balancer: internet-facing in the three public subnets, its
    // listener forwarding to the frontend's blue track (the green one at 0) and, on /api/*,
    // to the backend's; all tagged with the stack.
    let balancers = elb
        .describe_load_balancers()
        .names(format!("{name}-alb"))
        .send()
        .await
        .unwrap();
    let alb = &balancers.load_balancers()[0];
    assert_eq!(alb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    assert_eq!(alb.availability_zones().len(), 3);
    let alb_arn = alb.load_balancer_arn().unwrap();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(alb_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listeners.listeners().len(),
        1,
        "HTTP only: the spec names no certificate"
    );
    let listener = &listeners.listeners()[0];
    assert_eq!(listener.port(), Some(80));
    let tgs_all = elb
        .describe_target_groups()
        .names(format!("{name}-tg-frontend"))
        .names(format!("{name}-tg-frontend-green"))
        .names(format!("{name}-tg-backend"))
        .names(format!("{name}-tg-backend-green"))
        .send()
        .await
        .unwrap();
    let tg_arn = |suffix: &str| {
        let wanted = format!("{name}-tg-{suffix}");
        let all = tgs_all.target_groups();
        all.iter()
            .find(|t| t.target_group_name() == Some(wanted.as_str()))
            .and_then(|t| t.target_group_arn())
            .unwrap()
            .to_owned()
    };
    let weights = |action: &aws_sdk_elasticloadbalancingv2::types::Action| {
        action
            .forward_config()
            .unwrap()
            .target_groups()
            .iter()
            .map(|t| {
                (
                    t.target_group_arn().unwrap().to_owned(),
                    t.weight().unwrap(),
                )
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        weights(&listener.default_actions()[0]),
        BTreeSet::from([(tg_arn("frontend"), 100), (tg_arn("frontend-green"), 0)])
    );
    let rules = elb
        .describe_rules()
        .listener_arn(listener.listener_arn().unwrap())
        .send()
        .await
        .unwrap();
    let api = rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some("10"))
        .unwrap();
    assert_eq!(
        api.conditions()[0].path_pattern_config().unwrap().values(),
        ["/api/*".to_owned()]
    );
    assert_eq!(
        weights(&api.actions()[0]),
        BTreeSet::from([(tg_arn("backend"), 100), (tg_arn("backend-green"), 0)])
    );
    let tagged = elb
        .describe_tags()
        .resource_arns(alb_arn)
        .resource_arns(listener.listener_arn().unwrap())
        .send()
        .await
        .unwrap();
    for d in tagged.tag_descriptions() {
        assert!(
            d.tags().iter().any(|t| t.key() == Some("envplane:stack")),
            "{d:?}"
        );
    }

    // What moto leaves out of its answers, checked on the requests the SDK sent.
    let volume_request = log.find("Action=CreateVolume");
    for field in [
        "VolumeType=gp3",
        "Size=100",
        "Iops=3000",
        "Throughput=125",
        "Encrypted=true",
        "ClientToken=",
    ] {
        assert!(
            volume_request.contains(field),
            "{field} missing from {volume_request}"
        );
    }
    let nodegroup_request: serde_json::Value =
        serde_json::from_str(&log.find("\"nodegroupName\":\"")).unwrap();
    assert_eq!(nodegroup_request["version"], "1.31", "{nodegroup_request}");
    assert!(nodegroup_request["clientRequestToken"].is_string());
    // The worker's role is the cluster's admin through an access entry: its deployments
    // authenticate with presigned STS tokens (envplane-kube).
    let cluster_request: serde_json::Value =
        serde_json::from_str(&log.find("\"bootstrapClusterCreatorAdminPermissions\"")).unwrap();
    assert_eq!(
        cluster_request["accessConfig"],
        serde_json::json!({"authenticationMode": "API_AND_CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": true})
    );
    let user_data = log.find("Action=RunInstances");
    assert!(
        user_data.contains("UserData=") && user_data.contains("ClientToken="),
        "{user_data}"
    );

    // Ensuring the network again finds everything by its tags and creates nothing more.
    let spec = Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2));
    let network: Vec<_> = envplane_domain::resources::plan(&env, &spec)
        .into_iter()
        .filter(|p| p.group == envplane_domain::resources::Group::Network)
        .collect();
    let again = cloud
        .ensure(&env, "another-operation", &network)
        .await
        .unwrap();
    assert_eq!(again.len(), network.len());
    assert!(
        again.iter().all(|r| r.tags["envplane:operation"] == op),
        "nothing new was created"
    );
    let before = cloud.list(&env).await.unwrap().len();

    // Destroy: nothing tagged with the environment is left.
    let op = envplane_store::testing::mutations::delete(store.as_ref(), &env).await;
    plane.run(Flow::Destroy, &env, &op).await;
    let left = cloud.list(&env).await.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
    let planned = envplane_domain::resources::plan(
        &env,
        &Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2)),
    )
    .len();
    assert_eq!(
        before, planned,
        "one AWS resource per planned resource, none twice"
    );
    assert!(
        ec2.describe_vpcs()
            .filters(env_filter(&name))
            .send()
            .await
            .unwrap()
            .vpcs()
            .is_empty()
    );
    assert!(
        ec2.describe_subnets()
            .filters(env_filter(&name))
            .send()
            .await
            .unwrap()
            .subnets()
            .is_empty()
    );
    let gone = elb
        .describe_load_balancers()
        .names(format!("{name}-alb"))
        .send()
        .await;
    assert!(gone.is_err(), "the load balancer is gone: {gone:?}");
}

/// The adapters of one test: AWS clients on moto (recording requests), an embedded store, and
/// the local executor running the shipped flows.
struct MotoPlane {
    config: aws_config::SdkConfig,
    cloud: Arc<AwsCloud>,
    counter: envplane_aws::CallCounter,
    store: Arc<dyn StateStore>,
    executor: Executor,
    log: RequestLog,
    _dir: tempfile::TempDir,
}

impl MotoPlane {
    async fn new() -> Option<Self> {
        let config = moto_config().await?;
        let settings = AwsSettings {
            stack: "arn:aws:cloudformation:us-east-1:123456789012:stack/envplane-test/1".into(),
            cluster_role_arn: "arn:aws:iam::123456789012:role/envplane-eks-cluster".into(),
            node_role_arn: "arn:aws:iam::123456789012:role/envplane-eks-node".into(),
            db_image_id: any_image(&config).await,
            backup_bucket: None,
            db_instance_profile: None,
        };
        let log = RequestLog::default();
        let counter = envplane_aws::CallCounter::default();
        let clients = envplane_aws::Clients {
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&config)
                    .interceptor(log.clone())
                    .interceptor(counter.clone())
                    .build(),
            )
            .into(),
            eks: aws_sdk_eks::Client::from_conf(
                aws_sdk_eks::config::Builder::from(&config)
                    .interceptor(log.clone())
                    .interceptor(counter.clone())
                    .build(),
            )
            .into(),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
                    .interceptor(log.clone())
                    .interceptor(counter.clone())
                    .build(),
            )
            .into(),
        };
        let cloud = Arc::new(AwsCloud::new(clients, settings));
        let (dir, store) = envplane_store::testing::embedded_store();
        let store: Arc<dyn StateStore> = Arc::new(store);
        // Production's updates and destruction wait for two approvers, who approve.
        let approving = envplane_worker::testing::Approving::new(
            Arc::new(Worker::new(store.clone(), cloud.clone())),
            store.clone(),
        );
        let executor = Executor::new(
            approving.clone(),
            Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH)),
        );
        approving.attach(executor.clone());
        Some(Self {
            config,
            cloud,
            counter,
            store,
            executor,
            log,
            _dir: dir,
        })
    }

    async fn run(&self, flow: Flow, env: &EnvName, op: &str) {
        let outcome = self
            .executor
            .execute(
                &flow.local_definition().unwrap(),
                execution_input(env, op),
                op,
            )
            .await;
        assert_eq!(outcome.status, "SUCCEEDED", "{flow:?}: {outcome:?}");
    }

    /// Runs the provision flow for `op` with the `state` step failing right after its calls.
    async fn provision_failing_after(
        &self,
        env: &EnvName,
        op: &str,
        state: &'static str,
    ) -> envplane_workflow::Outcome {
        let executor = Executor::new(
            Arc::new(FailAfter {
                worker: Worker::new(self.store.clone(), self.cloud.clone()),
                state,
            }),
            Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH)),
        );
        executor
            .execute(
                &Flow::Provision.local_definition().unwrap(),
                execution_input(env, op),
                op,
            )
            .await
    }

    fn jobs(&self) -> envplane_worker::jobs::Jobs {
        let counter = self.counter.clone();
        envplane_worker::jobs::Jobs::new(
            self.store.clone(),
            self.cloud.clone(),
            Arc::new(move || counter.get()),
        )
    }
}

fn unique(prefix: char) -> EnvName {
    // A unique name: the moto server is shared by every test of the run.
    EnvName::parse(&format!(
        "{prefix}{}",
        &ulid::Ulid::new().to_string().to_lowercase()[20..]
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_is_scaled_and_its_database_host_resized_in_place_on_moto() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    let env = unique('d');
    let mutations = envplane_store::testing::mutations::create;
    let op = mutations(plane.store.as_ref(), &env, Tier::Dev, 0, |_| {}).await;
    plane.run(Flow::Provision, &env, &op).await;

    let op = envplane_store::testing::mutations::update(
        plane.store.as_ref(),
        &env,
        &serde_json::json!({
            "cluster": {"frontend": {"desired": 3}},
            "database": {"instance_type": "t3.xlarge", "volume": {"size_gb": 80}},
        }),
        false,
    )
    .await;
    plane.run(Flow::Update, &env, &op).await;

    // From the AWS side.
    let eks = aws_sdk_eks::Client::new(&plane.config);
    let frontend = eks
        .describe_nodegroup()
        .cluster_name(format!("{env}-eks"))
        .nodegroup_name(format!("{env}-frontend"))
        .send()
        .await
        .unwrap();
    let scaling = frontend.nodegroup().unwrap().scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.desired_size(),
            scaling.max_size()
        ),
        (Some(2), Some(3), Some(4))
    );
    let ec2 = aws_sdk_ec2::Client::new(&plane.config);
    let instances = ec2
        .describe_instances()
        .filters(env_filter(env.as_str()))
        .send()
        .await
        .unwrap();
    let hosts: Vec<_> = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(hosts.len(), 1, "resized in place, not replaced");
    assert_eq!(
        hosts[0].instance_type().map(|t| t.as_str()),
        Some("t3.xlarge")
    );
    assert_eq!(
        hosts[0].state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running")
    );
    let volumes = ec2
        .describe_volumes()
        .filters(env_filter(env.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(volumes.volumes()[0].size(), Some(80));
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            Filter::builder()
                .name("tag:envplane:operation")
                .values(&op)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(snapshots.snapshots().len(), 1, "one snapshot, taken first");
    let record = plane.store.operation(&op).await.unwrap().unwrap();
    let changes: Vec<String> = record
        .changes
        .iter()
        .map(|c| format!("{}: {}", c.resource, c.change))
        .collect();
    // The node groups and the database are changed by parallel branches: order within each.
    assert!(changes.contains(&format!(
        "{env}-frontend: scaling 2/2/4 → 2/3/4 (min/desired/max)"
    )));
    let database: Vec<String> = changes
        .into_iter()
        .filter(|c| c.starts_with(&format!("{env}-db")))
        .collect();
    assert_eq!(
        database,
        vec![
            format!("{env}-db-data: volume to 80 GiB, 3000 IOPS, 125 MiB/s"),
            format!("{env}-db: snapshot of {env}-db-data taken; stop to change type"),
            format!("{env}-db: instance type t3.large → t3.xlarge"),
            format!("{env}-db: start"),
        ]
    );
    // The order on the wire: snapshot before stop, stop before the type change, start last.
    let wire: Vec<String> = plane.log.0.lock().unwrap().clone();
    let at = |needle: &str| {
        wire.iter()
            .position(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("no {needle}"))
    };
    assert!(at("Action=CreateSnapshot") < at("Action=StopInstances"));
    assert!(at("Action=StopInstances") < at("Action=ModifyInstanceAttribute"));
    assert!(at("Action=ModifyInstanceAttribute") < at("Action=StartInstances"));

    // The snapshot is the environment's: it goes when the environment does.
    let tracked = plane.cloud.snapshots(&env).await.unwrap();
    assert_eq!(tracked.len(), 1, "{tracked:?}");
    let op = envplane_store::testing::mutations::delete(plane.store.as_ref(), &env).await;
    plane.run(Flow::Destroy, &env, &op).await;
    let left = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(env_filter(env.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        left.snapshots().len(),
        0,
        "the snapshot outlived its environment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_changes_on_moto_are_found_by_drift_and_repaired_by_reconcile() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    let env = unique('q');
    let op =
        envplane_store::testing::mutations::create(plane.store.as_ref(), &env, Tier::Qa, 1, |_| {})
            .await;
    plane.run(Flow::Provision, &env, &op).await;
    let jobs = plane.jobs();
    let clean = jobs.drift(&[Tier::Qa], 1000).await.unwrap();
    assert_eq!(clean.checked.len(), 1);
    assert_eq!(
        clean.checked[0].status,
        envplane_domain::drift::DriftStatus::InSync,
        "{clean:?}"
    );

    // Out of band, with plain SDK clients: a rule removed, a subnet deleted, a node group scaled.
    let ec2 = aws_sdk_ec2::Client::new(&plane.config);
    let eks = aws_sdk_eks::Client::new(&plane.config);
    let groups = ec2
        .describe_security_groups()
        .filters(env_filter(env.as_str()))
        .send()
        .await
        .unwrap();
    let alb = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(&format!("{env}-sg-alb")))
        .unwrap();
    ec2.revoke_security_group_ingress()
        .group_id(alb.group_id().unwrap())
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let subnets = ec2
        .describe_subnets()
        .filters(env_filter(env.as_str()))
        .filters(
            Filter::builder()
                .name("tag:Name")
                .values(format!("{env}-private-2"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    ec2.delete_subnet()
        .subnet_id(subnets.subnets()[0].subnet_id().unwrap())
        .send()
        .await
        .unwrap();
    eks.update_nodegroup_config()
        .cluster_name(format!("{env}-eks"))
        .nodegroup_name(format!("{env}-frontend"))
        .scaling_config(
            aws_sdk_eks::types::NodegroupScalingConfig::builder()
                .min_size(2)
                .desired_size(4)
                .max_size(4)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // And the load balancer's listener deleted.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&plane.config);
    let alb = elb
        .describe_load_balancers()
        .names(format!("{env}-alb"))
        .send()
        .await
        .unwrap();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(alb.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    elb.delete_listener()
        .listener_arn(listeners.listeners()[0].listener_arn().unwrap())
        .send()
        .await
        .unwrap();

    let run = jobs.drift(&[Tier::Qa], 1000).await.unwrap();
    let line = &run.checked[0];
    println!(
        "drift run: {} {:?} with {} AWS calls for {} resource kinds: {}",
        line.environment, line.status, line.api_calls, line.kinds, line.summary
    );
    assert_eq!(line.status, envplane_domain::drift::DriftStatus::Drifted);
    // One describe per kind, one DescribeNodegroup for the second node group, and one
    // DescribeTags: ELBv2 describes carry no tags, and a target group is only ours with them.
    assert!(
        line.api_calls <= line.kinds as u64 + 2,
        "{} calls for {} kinds",
        line.api_calls,
        line.kinds
    );
    let report = plane
        .store
        .environment(&env)
        .await
        .unwrap()
        .unwrap()
        .drift
        .unwrap();
    assert_eq!(
        report
            .missing
            .iter()
            .map(|m| m.resource.clone())
            .collect::<Vec<_>>(),
        vec![format!("{env}-private-2"), format!("{env}-listener-80")]
    );
    let changed: Vec<(String, String)> = report
        .changed
        .iter()
        .map(|d| (d.resource.clone(), d.attribute.clone()))
        .collect();
    assert_eq!(
        changed,
        vec![
            (format!("{env}-rt-private-2"), "subnets".to_owned()),
            (format!("{env}-sg-alb"), "ingress".to_owned()),
            (format!("{env}-frontend"), "desired".to_owned()),
        ]
    );

    let op = envplane_store::testing::mutations::reconcile(plane.store.as_ref(), &env).await;
    plane.run(Flow::Update, &env, &op).await;
    let after = jobs.drift(&[Tier::Qa], 1000).await.unwrap();
    assert_eq!(
        after.checked[0].status,
        envplane_domain::drift::DriftStatus::InSync,
        "{after:?}"
    );
    let recreated = elb
        .describe_listeners()
        .load_balancer_arn(alb.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(recreated.listeners().len(), 1, "the listener is back");
    let frontend = eks
        .describe_nodegroup()
        .cluster_name(format!("{env}-eks"))
        .nodegroup_name(format!("{env}-frontend"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        frontend
            .nodegroup()
            .unwrap()
            .scaling_config()
            .unwrap()
            .desired_size(),
        Some(2)
    );
}

/// The worker, failing the named Task state right after it ran for real: the AWS calls of the
/// step are made, then the step reports an error no Retry takes (as a timed-out call can).
struct FailAfter {
    worker: Worker,
    state: &'static str,
}

#[async_trait::async_trait]
impl envplane_workflow::TaskRunner for FailAfter {
    async fn run(
        &self,
        resource: &str,
        payload: serde_json::Value,
        context: &envplane_workflow::TaskContext,
    ) -> Result<serde_json::Value, envplane_workflow::Failure> {
        let answer = self.worker.run(resource, payload, context).await?;
        if context.state == self.state {
            return Err(envplane_workflow::Failure::new(
                "Envplane.Invalid",
                format!("injected failure after {}", self.state),
            ));
        }
        Ok(answer)
    }
}

/// Every resource of `name` AWS still holds, read with plain SDK calls (deleted, terminated
/// and deleting ones left out), as `kind id`.
async fn live_on_aws(config: &aws_config::SdkConfig, name: &str) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let mut out = Vec::new();
    let f = || env_filter(name);
    let ours = |tags: &[aws_sdk_ec2::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == Some("envplane:environment") && t.value() == Some(name))
    };
    for v in ec2
        .describe_vpcs()
        .filters(f())
        .send()
        .await
        .unwrap()
        .vpcs()
    {
        out.push(format!("vpc {}", v.vpc_id().unwrap()));
    }
    for s in ec2
        .describe_subnets()
        .filters(f())
        .send()
        .await
        .unwrap()
        .subnets()
    {
        out.push(format!("subnet {}", s.subnet_id().unwrap()));
    }
    let igws = ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .unwrap();
    for g in igws.internet_gateways() {
        out.push(format!("igw {}", g.internet_gateway_id().unwrap()));
    }
    for a in ec2
        .describe_addresses()
        .filters(f())
        .send()
        .await
        .unwrap()
        .addresses()
    {
        out.push(format!("eip {}", a.allocation_id().unwrap()));
    }
    for g in ec2
        .describe_nat_gateways()
        .filter(f())
        .send()
        .await
        .unwrap()
        .nat_gateways()
    {
        let state = g.state().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if ours(g.tags()) && state != "deleted" && state != "deleting" {
            out.push(format!("nat {}", g.nat_gateway_id().unwrap()));
        }
    }
    for t in ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        out.push(format!("rtb {}", t.route_table_id().unwrap()));
    }
    let groups = ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .unwrap();
    for g in groups.security_groups() {
        out.push(format!("sg {}", g.group_id().unwrap()));
    }
    for v in ec2
        .describe_volumes()
        .filters(f())
        .send()
        .await
        .unwrap()
        .volumes()
    {
        out.push(format!("volume {}", v.volume_id().unwrap()));
    }
    let reservations = ec2.describe_instances().filters(f()).send().await.unwrap();
    for i in reservations
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
    {
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned());
        if !matches!(state.as_deref(), Some("terminated" | "shutting-down")) {
            out.push(format!("instance {}", i.instance_id().unwrap()));
        }
    }
    let eks = aws_sdk_eks::Client::new(config);
    if let Ok(c) = eks
        .describe_cluster()
        .name(format!("{name}-eks"))
        .send()
        .await
        && c.cluster().and_then(|c| c.status()).map(|s| s.as_str()) != Some("DELETING")
    {
        out.push(format!("cluster {name}-eks"));
    }
    for group in ["frontend", "backend"] {
        if let Ok(g) = eks
            .describe_nodegroup()
            .cluster_name(format!("{name}-eks"))
            .nodegroup_name(format!("{name}-{group}"))
            .send()
            .await
            && g.nodegroup().and_then(|g| g.status()).map(|s| s.as_str()) != Some("DELETING")
        {
            out.push(format!("nodegroup {name}-{group}"));
        }
    }
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
    for group in ["frontend", "backend"] {
        if elb
            .describe_target_groups()
            .names(format!("{name}-tg-{group}"))
            .send()
            .await
            .is_ok()
        {
            out.push(format!("target group {name}-tg-{group}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provision_failing_after_the_nat_cluster_node_group_or_host_step_rolls_back_on_moto() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    // Egress makes the NAT gateways, Database the host and its volume.
    for (i, state) in ["Egress", "Cluster", "NodeGroups", "Database"]
        .into_iter()
        .enumerate()
    {
        let env = unique('r');
        let name = env.to_string();
        let op = envplane_store::testing::mutations::create(
            plane.store.as_ref(),
            &env,
            Tier::Dev,
            u8::try_from(40 + i).unwrap(),
            |_| {},
        )
        .await;
        let outcome = plane.provision_failing_after(&env, &op, state).await;
        assert_eq!(outcome.status, "FAILED", "{state}");
        let operation = plane.store.operation(&op).await.unwrap().unwrap();
        let cause = operation.error.unwrap().cause;
        assert!(
            cause.contains(&format!("injected failure after {state}")),
            "{cause}"
        );
        let record = plane.store.environment(&env).await.unwrap().unwrap();
        assert_eq!(record.active_operation, None, "{state}: lock held");
        assert_eq!(record.status.phase, Phase::Failed);
        let left = live_on_aws(&plane.config, &name).await;
        assert_eq!(left, Vec::<String>::new(), "after a failure at {state}");
        println!("moto: provision failing after {state}: 0 resources left on AWS");
    }

    // Kept for inspection, the same failure leaves what it made, on AWS's side too, until a
    // delete removes it.
    let env = unique('k');
    let op = envplane_store::testing::mutations::create_with(
        plane.store.as_ref(),
        &env,
        Tier::Dev,
        50,
        envplane_domain::operation::OnFailure::Keep,
        |_| {},
    )
    .await;
    let outcome = plane.provision_failing_after(&env, &op, "Cluster").await;
    assert_eq!(outcome.status, "FAILED");
    let kept = live_on_aws(&plane.config, env.as_str()).await;
    assert!(kept.len() > 10, "{kept:?}");
    let op = envplane_store::testing::mutations::delete(plane.store.as_ref(), &env).await;
    plane.run(Flow::Destroy, &env, &op).await;
    assert_eq!(
        live_on_aws(&plane.config, env.as_str()).await,
        Vec::<String>::new()
    );
    println!("moto: kept {} resources; 0 after a delete", kept.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_look_alikes_survive_a_create_and_a_delete_on_moto() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    let env = unique('f');
    let name = env.to_string();
    let ec2 = aws_sdk_ec2::Client::new(&plane.config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&plane.config);
    // Someone else's VPC, with a security group and a target group carrying envplane's names
    // for this environment and even its environment tag, but not the stack's.
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.250.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let sg = ec2
        .create_security_group()
        .group_name(format!("{name}-sg-alb"))
        .description("not envplane's")
        .vpc_id(&vpc)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(tag("envplane:environment", &name))
                .tags(tag("Name", &format!("{name}-sg-alb")))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sg = sg.group_id().unwrap().to_owned();
    let tg = elb
        .create_target_group()
        .name(format!("{name}-tg-frontend"))
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(3001)
        .vpc_id(&vpc)
        .tags(
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key("envplane:environment")
                .value(&name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tg = tg.target_groups()[0].target_group_arn().unwrap().to_owned();

    let op = envplane_store::testing::mutations::create(
        plane.store.as_ref(),
        &env,
        Tier::Dev,
        60,
        |_| {},
    )
    .await;
    let created = plane
        .executor
        .execute(
            &Flow::Provision.local_definition().unwrap(),
            execution_input(&env, &op),
            &op,
        )
        .await;
    // The target group's name is taken in the region, so the environment cannot have its own:
    // the create may fail on it (and roll back), but never takes the foreign one over.
    if created.status != "SUCCEEDED" {
        let cause = plane
            .store
            .operation(&op)
            .await
            .unwrap()
            .unwrap()
            .error
            .unwrap()
            .cause;
        assert!(cause.contains("CreateTargetGroup"), "{cause}");
    }
    let seen = plane.cloud.list(&env).await.unwrap();
    assert!(
        seen.iter().all(|r| r.id != sg && r.id != tg),
        "a foreign resource was adopted: {seen:?}"
    );
    let op = envplane_store::testing::mutations::delete(plane.store.as_ref(), &env).await;
    plane.run(Flow::Destroy, &env, &op).await;

    let groups = ec2
        .describe_security_groups()
        .group_ids(&sg)
        .send()
        .await
        .unwrap();
    assert_eq!(
        groups.security_groups().len(),
        1,
        "the foreign group was deleted"
    );
    let target_groups = elb
        .describe_target_groups()
        .target_group_arns(&tg)
        .send()
        .await
        .unwrap();
    assert_eq!(
        target_groups.target_groups().len(),
        1,
        "the foreign target group was deleted"
    );
    println!(
        "moto: foreign {name}-sg-alb and {name}-tg-frontend survive a create ({}) and a delete",
        created.status
    );
}

#[tokio::test]
async fn daily_backups_are_tagged_snapshots_and_the_sweep_spares_the_newest_and_foreign_ones() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    let env = unique('b');
    let op = envplane_store::testing::mutations::create(
        plane.store.as_ref(),
        &env,
        Tier::Dev,
        3,
        |_| {},
    )
    .await;
    plane.run(Flow::Provision, &env, &op).await;
    let ec2 = aws_sdk_ec2::Client::new(&plane.config);
    let volume = ec2
        .describe_volumes()
        .filters(env_filter(env.as_str()))
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .volume_id()
        .unwrap()
        .to_owned();
    // Someone else's snapshot of the same volume: never touched.
    let foreign = ec2
        .create_snapshot()
        .volume_id(&volume)
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_owned();
    let at = |iso: &str| {
        let now =
            OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339).unwrap();
        plane.jobs().with_clock(Arc::new(move || now))
    };
    let ours = || async {
        let found = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(env_filter(env.as_str()))
            .send()
            .await
            .unwrap();
        // The data volume's recovery points: an image's snapshots are the image's.
        found
            .snapshots()
            .iter()
            .filter(|s| !s.tags().iter().any(|t| t.key() == Some("envplane:image")))
            .map(|s| s.snapshot_id().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Today's backup is due (it is past 05:00 and nothing was taken): one tagged snapshot.
    let now = OffsetDateTime::now_utc().replace_time(time::macros::time!(06:00));
    let first = at(&now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap())
    .housekeeping()
    .await
    .unwrap();
    assert_eq!(first.backups.len(), 1, "{first:?}");
    let taken = ours().await;
    assert_eq!(taken.len(), 1, "one snapshot, tagged with the environment");

    // Eight days on: the next day's backup, and dev's seven days have passed for the first.
    let later = now + time::Duration::days(8);
    let next = at(&later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap())
    .housekeeping()
    .await
    .unwrap();
    assert_eq!(next.backups.len(), 1, "{next:?}");
    assert_eq!(next.expired_snapshots.len(), 1, "{next:?}");

    let left = ours().await;
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], taken[0], "the old one went, the newest stays");
    let still = ec2
        .describe_snapshots()
        .snapshot_ids(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(
        still.snapshots().len(),
        1,
        "the foreign snapshot is untouched"
    );
}

/// The weekly images on moto: listed when they carry this stack's and the environment's tags,
/// deregistered by the adapter, and a foreign image of the same host refused. (moto's
/// CreateImage raises NotImplementedError on the snapshot tags AWS takes, so the create
/// request itself is checked in `tests/aws/images.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_listed_and_deregistered_only_when_they_are_this_stacks() {
    let Some(plane) = MotoPlane::new().await else {
        return;
    };
    let env = unique('i');
    let op = envplane_store::testing::mutations::create(
        plane.store.as_ref(),
        &env,
        Tier::Dev,
        4,
        |_| {},
    )
    .await;
    plane.run(Flow::Provision, &env, &op).await;
    let ec2 = aws_sdk_ec2::Client::new(&plane.config);
    let host = ec2
        .describe_instances()
        .filters(env_filter(env.as_str()))
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/envplane-test/1";
    let ours = ec2
        .create_image()
        .instance_id(&host)
        .name(format!("{env}-db-weekly-2026w49"))
        .no_reboot(true)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Image)
                .tags(tag("envplane:environment", env.as_str()))
                .tags(tag("envplane:stack", stack))
                .tags(tag("envplane:operation", "weekly-2026w49"))
                .tags(tag("Name", &format!("{env}-db-weekly-2026w49")))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();
    let foreign = ec2
        .create_image()
        .instance_id(&host)
        .name(format!("{env}-someone-elses"))
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Image)
                .tags(tag("envplane:environment", env.as_str()))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();
    let listed = plane.cloud.images(&env).await.unwrap();
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [ours.as_str()],
        "only this stack's image"
    );
    assert_eq!(listed[0].name, format!("{env}-db-weekly-2026w49"));
    let mut forged = listed[0].clone();
    forged.id = foreign.clone();
    forged.tags.remove("envplane:stack");
    assert!(
        plane.cloud.delete_image(&forged).await.is_err(),
        "refused without the stack's tag"
    );
    plane.cloud.delete_image(&listed[0]).await.unwrap();
    assert!(plane.cloud.images(&env).await.unwrap().is_empty());
    let still = ec2
        .describe_images()
        .image_ids(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(still.images().len(), 1, "the foreign image is untouched");
}
