//! A service's traffic split on moto's ELBv2: the listener's forward weights after each canary
//! step, read back with plain SDK calls; a rollback puts 100/0 back in one change; a listener
//! without this stack's tag is never changed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ProtocolEnum, Tag, TargetTypeEnum,
};
use envplane_aws::ListenerWeights;
use envplane_domain::resources::tags;

struct Listener {
    arn: String,
    stable: String,
    canary: String,
}

/// A VPC with two subnets, an ALB, two target groups and an HTTP listener forwarding to the
/// stable group, its listener tagged for `stack` (or not).
async fn listener(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    config: &aws_config::SdkConfig,
    stack: Option<&str>,
) -> Listener {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.9.{i}.0/24"))
            .availability_zone(*zone)
            .send()
            .await
            .unwrap();
        subnets.push(subnet.subnet().unwrap().subnet_id().unwrap().to_owned());
    }
    let suffix = ulid::Ulid::new().to_string()[20..].to_lowercase();
    let lb = elb
        .create_load_balancer()
        .name(format!("lb-{suffix}"))
        .set_subnets(Some(subnets))
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let mut groups = Vec::new();
    for role in ["stable", "canary"] {
        let group = elb
            .create_target_group()
            .name(format!("{role}-{suffix}"))
            .protocol(ProtocolEnum::Http)
            .port(3001)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await
            .unwrap();
        groups.push(
            group.target_groups()[0]
                .target_group_arn()
                .unwrap()
                .to_owned(),
        );
    }
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(&groups[0])
        .build();
    let mut create = elb
        .create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(forward);
    if let Some(stack) = stack {
        create = create
            .tags(Tag::builder().key(tags::STACK).value(stack).build())
            .tags(Tag::builder().key(tags::ENVIRONMENT).value("prod").build());
    }
    let arn = create.send().await.unwrap().listeners()[0]
        .listener_arn()
        .unwrap()
        .to_owned();
    Listener {
        arn,
        stable: groups[0].clone(),
        canary: groups[1].clone(),
    }
}

#[tokio::test]
async fn canary_weights_are_set_in_one_change_and_rolled_back_to_100_0() {
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
    let ours = listener(&elb, &config, Some("envplane-test")).await;
    let weights = ListenerWeights::new(elb.clone(), "envplane-test");

    // Read back with plain SDK calls after each step.
    let plain = |elb: aws_sdk_elasticloadbalancingv2::Client, arn: String| async move {
        let listeners = elb
            .describe_listeners()
            .listener_arns(arn)
            .send()
            .await
            .unwrap();
        let forward = listeners.listeners()[0].default_actions()[0]
            .forward_config()
            .cloned()
            .unwrap();
        forward
            .target_groups()
            .iter()
            .map(|g| {
                (
                    g.target_group_arn().unwrap().to_owned(),
                    g.weight().unwrap(),
                )
            })
            .collect::<BTreeMap<String, i32>>()
    };
    for step in [5u8, 25, 100] {
        weights
            .set(&ours.arn, &ours.stable, &ours.canary, step)
            .await
            .unwrap();
        let read = plain(elb.clone(), ours.arn.clone()).await;
        assert_eq!(
            (read[&ours.stable], read[&ours.canary]),
            (100 - i32::from(step), i32::from(step)),
            "after the {step} % step"
        );
    }
    weights
        .set(&ours.arn, &ours.stable, &ours.canary, 0)
        .await
        .unwrap();
    let read = weights.read(&ours.arn).await.unwrap();
    assert_eq!(
        (read[&ours.stable], read[&ours.canary]),
        (100, 0),
        "rolled back"
    );

    // Someone else's listener: refused, unchanged.
    let foreign = listener(&elb, &config, None).await;
    let refused = weights
        .set(&foreign.arn, &foreign.stable, &foreign.canary, 50)
        .await;
    assert!(
        matches!(&refused, Err(envplane_cloud::CloudError::Invalid(m)) if m.contains("does not carry")),
        "{refused:?}"
    );
    let untouched = weights.read(&foreign.arn).await.unwrap();
    assert_eq!(untouched, BTreeMap::from([(foreign.stable.clone(), 100)]));
}
