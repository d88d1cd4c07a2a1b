//! An environment service's traffic split on AWS: the load balancer listener's forward action
//! between the stable and the canary target group, changed in one `ModifyListener`. Only a
//! listener carrying this stack's tags is ever changed.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use envplane_cloud::{CloudError, check_owned};

use crate::OnFirstUse;
use crate::errors::cloud_error;

/// The weights of one listener, changed and read.
#[derive(Debug, Clone)]
pub struct ListenerWeights {
    elb: OnFirstUse<Client>,
    stack: String,
}

/// ELBv2 weights run from 0 to 999; envplane gives percentages.
fn tuple(target_group: &str, weight: u8) -> TargetGroupTuple {
    TargetGroupTuple::builder()
        .target_group_arn(target_group)
        .weight(i32::from(weight))
        .build()
}

/// A weighted forward: `canary_percent` (at most 100) to `canary`, the rest to `stable`.
fn forward(stable: &str, canary: &str, canary_percent: u8) -> Action {
    let canary_percent = canary_percent.min(100);
    let config = ForwardActionConfig::builder()
        .target_groups(tuple(stable, 100 - canary_percent))
        .target_groups(tuple(canary, canary_percent))
        .build();
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(config)
        .build()
}

impl ListenerWeights {
    /// Weights on listeners owned by `stack`.
    pub fn new(elb: impl Into<OnFirstUse<Client>>, stack: impl Into<String>) -> Self {
        Self {
            elb: elb.into(),
            stack: stack.into(),
        }
    }

    /// Refuses a listener or rule `arn` without this stack's tags.
    async fn check(&self, arn: &str) -> Result<(), CloudError> {
        let described = self
            .elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeTags", e))?;
        let tags: BTreeMap<String, String> = described
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect();
        check_owned(&tags, &self.stack, arn)
    }

    /// Gives the canary `canary_percent` of the listener's requests and the stable group the
    /// rest, in one change.
    pub async fn set(
        &self,
        listener: &str,
        stable: &str,
        canary: &str,
        canary_percent: u8,
    ) -> Result<(), CloudError> {
        self.check(listener).await?;
        self.elb
            .modify_listener()
            .listener_arn(listener)
            .default_actions(forward(stable, canary, canary_percent))
            .send()
            .await
            .map_err(|e| cloud_error("ModifyListener", e))?;
        Ok(())
    }

    /// The same on a listener rule (the backend's, on `/api/*`), in one `ModifyRule`; only on
    /// a rule carrying this stack's tags.
    pub async fn set_rule(
        &self,
        rule: &str,
        stable: &str,
        canary: &str,
        canary_percent: u8,
    ) -> Result<(), CloudError> {
        self.check(rule).await?;
        self.elb
            .modify_rule()
            .rule_arn(rule)
            .actions(forward(stable, canary, canary_percent))
            .send()
            .await
            .map_err(|e| cloud_error("ModifyRule", e))?;
        Ok(())
    }

    /// The listener's forward weights, by target group.
    pub async fn read(&self, listener: &str) -> Result<BTreeMap<String, u16>, CloudError> {
        let described = self
            .elb
            .describe_listeners()
            .listener_arns(listener)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeListeners", e))?;
        let mut weights = BTreeMap::new();
        for action in described
            .listeners()
            .iter()
            .flat_map(|l| l.default_actions())
        {
            if let Some(forward) = action.forward_config() {
                for group in forward.target_groups() {
                    if let Some(arn) = group.target_group_arn() {
                        let weight = group.weight().unwrap_or(1).clamp(0, 999);
                        weights.insert(arn.to_owned(), u16::try_from(weight).unwrap_or(0));
                    }
                }
            } else if let Some(arn) = action.target_group_arn() {
                weights.insert(arn.to_owned(), 100);
            }
        }
        Ok(weights)
    }
}
