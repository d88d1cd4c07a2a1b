//! The load balancer's listeners (80, and 443 with the spec's certificate). Each forwards to
//! the frontend's two tracks by default and to the backend's on `/api/*`, all on blue when
//! created; a deployment changes the weights (`ListenerWeights`). Listeners have no names:
//! their `Name` tag says which one a listener is.

use aws_sdk_elasticloadbalancingv2::Client;
use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, ForwardActionConfig, Listener, PathPatternConditionConfig,
    ProtocolEnum, RuleCondition, TargetGroupTuple,
};
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::resources::{Observed, desired, observed};

use crate::cloud::Creating;
use crate::cloud::elbv2::creation_tags;
use crate::cloud::support::{required, resource, sent, unless_gone};

/// The rule's priority for the backend's path.
const BACKEND_RULE_PRIORITY: i32 = 10;

/// The listeners of the load balancer `arn`.
pub(crate) async fn describe(elb: &Client, arn: &str) -> Result<Vec<Listener>, CloudError> {
    Ok(unless_gone(
        "DescribeListeners",
        elb.describe_listeners().load_balancer_arn(arn).send().await,
    )?
    .map(|found| found.listeners().to_vec())
    .unwrap_or_default())
}

/// A listener as a resource, with its tags (which hold its `Name`).
pub(crate) fn to_resource(
    l: &Listener,
    tags: BTreeMap<String, String>,
) -> Result<Resource, CloudError> {
    let arn = required(l.listener_arn(), "a listener ARN")?;
    Ok(resource(
        arn,
        tags,
        ResourceState::Active,
        Observed::Listener(observed::Listener {
            port: l.port().and_then(|p| u16::try_from(p).ok()),
            protocol: l.protocol().map(|p| p.as_str().to_owned()),
            certificate_arn: l
                .certificates()
                .first()
                .and_then(|c| c.certificate_arn())
                .map(str::to_owned),
        }),
    ))
}

/// A weighted forward with all traffic on the blue track.
fn forward_to_blue(cx: &Creating<'_>, pair: &desired::TrackPair) -> Result<Action, CloudError> {
    let tuple = |name: &str, weight: i32| -> Result<TargetGroupTuple, CloudError> {
        Ok(TargetGroupTuple::builder()
            .target_group_arn(cx.id_of(name)?)
            .weight(weight)
            .build())
    };
    Ok(Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(tuple(&pair.blue, 100)?)
                .target_groups(tuple(&pair.green, 0)?)
                .build(),
        )
        .build())
}

/// Creates the listener and its backend rule; when the rule cannot be made, the listener goes
/// again, so that a retried step makes both.
pub(crate) async fn create(
    elb: &Client,
    cx: &Creating<'_>,
    spec: &desired::Listener,
) -> Result<(), CloudError> {
    let protocol = if spec.certificate_arn.is_some() {
        ProtocolEnum::Https
    } else {
        ProtocolEnum::Http
    };
    let created = sent(
        "CreateListener",
        elb.create_listener()
            .load_balancer_arn(cx.id_of(&spec.load_balancer)?)
            .port(i32::from(spec.port))
            .protocol(protocol)
            .set_certificates(
                spec.certificate_arn
                    .as_ref()
                    .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()]),
            )
            .default_actions(forward_to_blue(cx, &spec.frontend)?)
            .set_tags(Some(creation_tags(cx)))
            .send()
            .await,
    )?;
    let arn = required(
        created.listeners().first().and_then(|l| l.listener_arn()),
        "the new listener's ARN",
    )?
    .to_owned();
    let rule = elb
        .create_rule()
        .listener_arn(&arn)
        .priority(BACKEND_RULE_PRIORITY)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .values(desired::Listener::BACKEND_PATH)
                        .build(),
                )
                .build(),
        )
        .actions(forward_to_blue(cx, &spec.backend)?)
        .set_tags(Some(creation_tags(cx)))
        .send()
        .await;
    if let Err(e) = sent("CreateRule", rule) {
        unless_gone(
            "DeleteListener",
            elb.delete_listener().listener_arn(&arn).send().await,
        )?;
        return Err(e);
    }
    Ok(())
}

/// Deletes a listener (its rules go with it).
pub(crate) async fn delete(elb: &Client, r: &Resource) -> Result<(), CloudError> {
    unless_gone(
        "DeleteListener",
        elb.delete_listener().listener_arn(&r.id).send().await,
    )
    .map(drop)
}
