//! The weekly image's create request, at the SDK level (aws-smithy-mocks): moto's CreateImage
//! raises NotImplementedError on snapshot tag specifications, which AWS takes, so what the
//! adapter asks for is checked here — the host imaged without a reboot, the image and its
//! snapshots tagged with the environment and the stack, the snapshots also with
//! `envplane:image` (never taken for the data volume's recovery points) — and a retried
//! create that finds the image makes no second one.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use aws_sdk_ec2::operation::create_image::CreateImageOutput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::types::{Image as Ec2Image, ResourceType};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use envplane_aws::{AwsCloud, AwsSettings, Clients};
use envplane_cloud::{Cloud, Resource, ResourceState};
use envplane_domain::EnvName;
use envplane_domain::resources::{Observed, Power, observed};

const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/envplane-test/1";

fn cloud(ec2: aws_sdk_ec2::Client) -> AwsCloud {
    let config = aws_sdk_eks::Config::builder()
        .behavior_version(aws_sdk_eks::config::BehaviorVersion::latest())
        .region(aws_sdk_eks::config::Region::new("us-east-1"))
        .build();
    let elb = aws_sdk_elasticloadbalancingv2::Config::builder()
        .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
        .region(aws_sdk_elasticloadbalancingv2::config::Region::new(
            "us-east-1",
        ))
        .build();
    AwsCloud::new(
        Clients {
            ec2: ec2.into(),
            eks: aws_sdk_eks::Client::from_conf(config).into(),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb).into(),
        },
        AwsSettings {
            stack: STACK.into(),
            cluster_role_arn: "arn:aws:iam::123456789012:role/c".into(),
            node_role_arn: "arn:aws:iam::123456789012:role/n".into(),
            db_image_id: "ami-12345678".into(),
            backup_bucket: None,
            db_instance_profile: None,
        },
    )
}

fn host(env: &EnvName) -> Resource {
    Resource {
        id: "i-0abc".into(),
        name: format!("{env}-db"),
        state: ResourceState::Active,
        observed: Observed::DbInstance(observed::DbInstance {
            instance_type: Some("m6i.large".into()),
            az: None,
            power: Power::Running,
        }),
        updating: false,
        tags: BTreeMap::from([
            ("envplane:environment".to_owned(), env.to_string()),
            ("envplane:stack".to_owned(), STACK.to_owned()),
        ]),
        created_at: None,
    }
}

#[tokio::test]
async fn the_weekly_image_tags_itself_and_its_snapshots_and_is_made_once() {
    let env = EnvName::parse("shop").unwrap();
    let none = mock!(aws_sdk_ec2::Client::describe_images)
        .then_output(|| DescribeImagesOutput::builder().build());
    let create = mock!(aws_sdk_ec2::Client::create_image)
        .match_requests(|r| {
            let spec = |kind: ResourceType| {
                r.tag_specifications()
                    .iter()
                    .find(|s| s.resource_type() == Some(&kind))
                    .map(|s| {
                        s.tags()
                            .iter()
                            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
                            .collect::<BTreeMap<_, _>>()
                    })
                    .unwrap_or_default()
            };
            let image = spec(ResourceType::Image);
            let snapshot = spec(ResourceType::Snapshot);
            r.instance_id() == Some("i-0abc")
                && r.no_reboot() == Some(true)
                && r.name() == Some("shop-db-weekly-2026w49")
                && image.get("envplane:stack") == Some(&STACK)
                && image.get("envplane:environment") == Some(&"shop")
                && snapshot.get("envplane:stack") == Some(&STACK)
                && snapshot.get("envplane:image") == Some(&"weekly-2026w49")
        })
        .then_output(|| CreateImageOutput::builder().image_id("ami-0new").build());
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&none, &create]);
    cloud(ec2)
        .image(&env, "weekly-2026w49", &host(&env))
        .await
        .unwrap();
    assert_eq!(
        create.num_calls(),
        1,
        "one CreateImage, with the expected tags"
    );

    // A retried create finds the image by its label and makes no second one.
    let found = mock!(aws_sdk_ec2::Client::describe_images).then_output(|| {
        DescribeImagesOutput::builder()
            .images(Ec2Image::builder().image_id("ami-0new").build())
            .build()
    });
    let never = mock!(aws_sdk_ec2::Client::create_image)
        .then_output(|| CreateImageOutput::builder().image_id("ami-0twice").build());
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &never]);
    cloud(ec2)
        .image(&env, "weekly-2026w49", &host(&env))
        .await
        .unwrap();
    assert_eq!(never.num_calls(), 0);

    // A host without this stack's tag is never imaged.
    let mut foreign = host(&env);
    foreign.tags.remove("envplane:stack");
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&none, &create]);
    assert!(
        cloud(ec2)
            .image(&env, "weekly-2026w49", &foreign)
            .await
            .is_err()
    );
}
