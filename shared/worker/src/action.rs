//! The payload every Task state sends, typed: which action, on which environment and
//! operation, with the action's own fields.

use envplane_domain::resources::{Group, ResourceKind};
use serde::Deserialize;
use serde_json::Value;

/// One Task state's payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Task {
    /// The environment's name.
    pub environment: String,
    /// The operation's id.
    pub operation: String,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// Where a wait loop is: its last interval and how many polls it made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Poll {
    /// Interval used last time, seconds.
    #[serde(default)]
    pub wait: Option<u64>,
    /// Polls made so far.
    #[serde(default)]
    pub polls: u64,
}

/// What a Task state asks the worker to do, by its `action` field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action")]
pub enum Action {
    /// Mark the operation running (every flow's first step).
    #[serde(rename = "operation.start")]
    Start,
    /// Wait for the operation's approvals: store the task token that ends the wait (a
    /// `.waitForTaskToken` Task; the API completes it once enough approvers approved).
    #[serde(rename = "approval.wait")]
    AwaitApproval {
        /// Step Functions' task token (`$$.Task.Token`).
        token: String,
    },
    /// Run the new version and give it its first weight (deploy).
    #[serde(rename = "deploy.launch")]
    DeployLaunch,
    /// Judge the last interval's metrics and move on as the canary's rules say (deploy).
    #[serde(rename = "deploy.analyse")]
    DeployAnalyse,
    /// Wait for a person at a gate, or on a canary held for insufficient data (deploy).
    #[serde(rename = "deploy.wait")]
    DeployWait {
        /// Step Functions' task token (`$$.Task.Token`).
        token: String,
    },
    /// A person promoted: traffic moves to the next step (deploy).
    #[serde(rename = "deploy.advance")]
    DeployAdvance,
    /// All traffic back on the stable version in one change, the new one stopped (deploy).
    #[serde(rename = "deploy.rollback")]
    DeployRollback,
    /// The new version becomes the stable one and the environment records it (deploy).
    #[serde(rename = "deploy.complete")]
    DeployComplete,
    /// Restore the source's database beside the target's (restore).
    #[serde(rename = "restore.replay")]
    RestoreReplay {
        /// The wait loop.
        #[serde(flatten)]
        poll: Poll,
    },
    /// Check the restored database (restore).
    #[serde(rename = "restore.verify")]
    RestoreVerify,
    /// Make the restored database the target's (restore).
    #[serde(rename = "restore.switch")]
    RestoreSwitch,
    /// Remove a restored database not switched to (restore's undo).
    #[serde(rename = "restore.discard")]
    RestoreDiscard,
    /// Create a group's missing resources and report which are not usable yet (provision).
    #[serde(rename = "ensure")]
    Ensure {
        /// The group.
        group: Group,
        /// The wait loop.
        #[serde(flatten)]
        poll: Poll,
    },
    /// Bring a group to the spec: create what is missing, change what differs (update).
    #[serde(rename = "converge")]
    Converge {
        /// The group.
        group: Group,
        /// The wait loop.
        #[serde(flatten)]
        poll: Poll,
    },
    /// Delete the environment's resources of some kinds (destroy).
    #[serde(rename = "teardown")]
    Teardown {
        /// The kinds.
        kinds: Vec<ResourceKind>,
        /// The wait loop.
        #[serde(flatten)]
        poll: Poll,
    },
    /// A step failed: answer what a rollback deletes, in teardown steps (none when the
    /// operation keeps what it made, or is not a provisioning).
    #[serde(rename = "operation.failing")]
    Failing,
    /// Finish the operation (every flow's last step).
    #[serde(rename = "operation.succeed")]
    Succeed,
    /// Record the failure a Catch caught and release the environment.
    #[serde(rename = "operation.fail")]
    Fail {
        /// The caught error, `{"Error": …, "Cause": …}`.
        #[serde(default)]
        error: Value,
        /// Whether a rollback deleted what the operation had made.
        #[serde(default)]
        rolled_back: bool,
        /// The error the rollback itself ended with, when it failed.
        #[serde(default)]
        rollback_error: Option<Value>,
    },
}

impl Action {
    /// The action's name as the flows send it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Start => "operation.start",
            Action::AwaitApproval { .. } => "approval.wait",
            Action::DeployLaunch => "deploy.launch",
            Action::DeployAnalyse => "deploy.analyse",
            Action::DeployWait { .. } => "deploy.wait",
            Action::DeployAdvance => "deploy.advance",
            Action::DeployRollback => "deploy.rollback",
            Action::DeployComplete => "deploy.complete",
            Action::RestoreReplay { .. } => "restore.replay",
            Action::RestoreVerify => "restore.verify",
            Action::RestoreSwitch => "restore.switch",
            Action::RestoreDiscard => "restore.discard",
            Action::Ensure { .. } => "ensure",
            Action::Converge { .. } => "converge",
            Action::Teardown { .. } => "teardown",
            Action::Failing => "operation.failing",
            Action::Succeed => "operation.succeed",
            Action::Fail { .. } => "operation.fail",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_parse_into_their_actions() {
        let task: Task = serde_json::from_value(json!({
            "action": "converge", "environment": "dev", "operation": "op1",
            "group": "node_groups", "wait": 30, "polls": 2
        }))
        .expect("converge");
        assert_eq!(
            task.action,
            Action::Converge {
                group: Group::NodeGroups,
                poll: Poll {
                    wait: Some(30),
                    polls: 2
                }
            }
        );
        let teardown: Task = serde_json::from_value(json!({
            "action": "teardown", "environment": "dev", "operation": "op1", "kinds": ["vpc"]
        }))
        .expect("teardown");
        assert_eq!(teardown.action.name(), "teardown");
        let unknown = serde_json::from_value::<Task>(json!({
            "action": "explode", "environment": "dev", "operation": "op1"
        }));
        assert!(unknown.is_err());
        let no_group = serde_json::from_value::<Task>(json!({
            "action": "ensure", "environment": "dev", "operation": "op1"
        }));
        assert!(no_group.is_err(), "ensure needs a group");
    }
}
