//! The traffic port on AWS (`AwsTraffic`) over an environment whose network and load balancer
//! envplane made on moto: two deployments of the frontend and one of the backend, a rollback
//! to the warm version, each step's listener and rule weights read back with plain SDK calls.
//! The cluster side is a recording `Workloads` (the `kube` adapter is tested against a fake
//! API server in `envplane-kube`); CloudWatch's reads are tested at the SDK level
//! (`alb_metrics.rs`: moto does not serve the SDK's CBOR protocol).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use envplane_aws::{AlbMetrics, AwsCloud, AwsSettings, AwsTraffic, Clients};
use envplane_cloud::{Cloud, CloudError, Slot, Track, Traffic, Workload, Workloads};
use envplane_domain::deployment::Release;
use envplane_domain::names::Service;
use envplane_domain::resources::{self, Group};
use envplane_domain::{Blueprint, EnvName, Tier, VpcCidr};

const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/envplane-test/1";

/// What the cluster was asked to run, in order.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

#[async_trait]
impl Workloads for Recorded {
    async fn apply(&self, w: &Workload<'_>) -> Result<(), CloudError> {
        self.0.lock().unwrap().push(format!(
            "apply {}-{} {} x{}",
            w.service.as_str(),
            w.track.as_str(),
            w.release.version,
            w.replicas
        ));
        Ok(())
    }

    async fn scale(
        &self,
        _env: &EnvName,
        service: Service,
        track: Track,
        replicas: u32,
    ) -> Result<(), CloudError> {
        self.0.lock().unwrap().push(format!(
            "scale {}-{} to {replicas}",
            service.as_str(),
            track.as_str()
        ));
        Ok(())
    }
}

fn release(version: &str) -> Release {
    Release {
        version: version.into(),
        image: None,
        env: BTreeMap::new(),
    }
}

/// The weights of the frontend (listener) and the backend (rule), by track.
async fn weights(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    env: &EnvName,
) -> (BTreeMap<String, i32>, BTreeMap<String, i32>) {
    let lb = elb
        .describe_load_balancers()
        .names(format!("{env}-alb"))
        .send()
        .await
        .unwrap();
    let listener = elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let listener = &listener.listeners()[0];
    let groups = elb
        .describe_target_groups()
        .names(format!("{env}-tg-frontend"))
        .names(format!("{env}-tg-frontend-green"))
        .names(format!("{env}-tg-backend"))
        .names(format!("{env}-tg-backend-green"))
        .send()
        .await
        .unwrap();
    let name_of = |arn: &str| {
        let name = groups
            .target_groups()
            .iter()
            .find(|g| g.target_group_arn() == Some(arn))
            .and_then(|g| g.target_group_name())
            .unwrap();
        if name.ends_with("-green") {
            "green"
        } else {
            "blue"
        }
        .to_owned()
    };
    let by_track = |action: &aws_sdk_elasticloadbalancingv2::types::Action| {
        action
            .forward_config()
            .unwrap()
            .target_groups()
            .iter()
            .map(|t| (name_of(t.target_group_arn().unwrap()), t.weight().unwrap()))
            .collect::<BTreeMap<_, _>>()
    };
    let rules = elb
        .describe_rules()
        .listener_arn(listener.listener_arn().unwrap())
        .send()
        .await
        .unwrap();
    let backend = rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some("10"))
        .unwrap();
    (
        by_track(&listener.default_actions()[0]),
        by_track(&backend.actions()[0]),
    )
}

fn split(blue: i32, green: i32) -> BTreeMap<String, i32> {
    BTreeMap::from([("blue".to_owned(), blue), ("green".to_owned(), green)])
}

#[tokio::test]
async fn deployments_move_listener_and_rule_weights_between_the_tracks() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let clients = Clients {
        ec2: aws_sdk_ec2::Client::new(&config).into(),
        eks: aws_sdk_eks::Client::new(&config).into(),
        elb: elb.clone().into(),
    };
    let settings = AwsSettings {
        stack: STACK.into(),
        cluster_role_arn: "arn:aws:iam::123456789012:role/c".into(),
        node_role_arn: "arn:aws:iam::123456789012:role/n".into(),
        db_image_id: "ami-12345678".into(),
        backup_bucket: None,
        db_instance_profile: None,
    };
    let cloud = AwsCloud::new(clients, settings);
    let env = EnvName::parse(&format!(
        "t{}",
        &ulid::Ulid::new().to_string().to_lowercase()[20..]
    ))
    .unwrap();
    // The network and the load balancer, as the provisioning flow makes them.
    let spec = Blueprint::for_tier(Tier::Qa).spec(VpcCidr::from_second_octet(7));
    for group in [Group::Network, Group::Targets] {
        let planned: Vec<_> = resources::plan(&env, &spec)
            .into_iter()
            .filter(|p| p.group == group)
            .collect();
        let made = cloud.ensure(&env, "op-1", &planned).await.unwrap();
        assert_eq!(made.len(), planned.len(), "{group:?}");
    }
    assert_eq!(weights(&elb, &env).await, (split(100, 0), split(100, 0)));

    let recorded = Arc::new(Recorded::default());
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let traffic = AwsTraffic::new(
        elb.clone(),
        AlbMetrics::new(cloudwatch),
        recorded.clone(),
        STACK,
    );
    let frontend = Service::Frontend;

    // The first version: on the green track (blue holds nothing yet), all traffic, stable.
    traffic
        .launch(&env, frontend, Slot::Canary, &release("v1"))
        .await
        .unwrap();
    traffic.set_weight(&env, frontend, 100).await.unwrap();
    traffic
        .promote(&env, frontend, &release("v1"))
        .await
        .unwrap();
    assert_eq!(weights(&elb, &env).await.0, split(0, 100));

    // v2 by canary on blue: 5 → 25 → promoted; green (v1) stays warm at 0.
    traffic
        .launch(&env, frontend, Slot::Canary, &release("v2"))
        .await
        .unwrap();
    traffic.set_weight(&env, frontend, 5).await.unwrap();
    assert_eq!(weights(&elb, &env).await.0, split(5, 95));
    traffic.set_weight(&env, frontend, 25).await.unwrap();
    assert_eq!(weights(&elb, &env).await.0, split(25, 75));
    traffic
        .promote(&env, frontend, &release("v2"))
        .await
        .unwrap();
    assert_eq!(weights(&elb, &env).await.0, split(100, 0));
    // A retried promotion changes nothing.
    traffic
        .promote(&env, frontend, &release("v2"))
        .await
        .unwrap();
    assert_eq!(weights(&elb, &env).await.0, split(100, 0));

    // A rollback within the window: v1, still warm on green, back in one change.
    traffic
        .promote(&env, frontend, &release("v1"))
        .await
        .unwrap();
    assert_eq!(weights(&elb, &env).await.0, split(0, 100));
    traffic.retire(&env, frontend, Slot::Canary).await.unwrap();
    // A version that does not run is refused.
    let refused = traffic.promote(&env, frontend, &release("v9")).await;
    assert!(
        matches!(refused, Err(CloudError::Invalid(_))),
        "{refused:?}"
    );

    // The backend's weights move on its rule, the frontend's stay.
    traffic
        .launch(&env, Service::Backend, Slot::Canary, &release("b1"))
        .await
        .unwrap();
    traffic
        .set_weight(&env, Service::Backend, 25)
        .await
        .unwrap();
    assert_eq!(weights(&elb, &env).await, (split(0, 100), split(75, 25)));

    assert_eq!(
        *recorded.0.lock().unwrap(),
        [
            "apply frontend-green v1 x2",
            "apply frontend-blue v2 x2",
            "scale frontend-blue to 0",
            "apply backend-green b1 x2",
        ]
    );
    assert!(
        traffic
            .url(&env, frontend)
            .await
            .unwrap()
            .starts_with("http://")
    );
}
