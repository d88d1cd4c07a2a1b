//! Deployments of a service's new version: the request, parsed field by field; the tier's
//! defaults (dev rolls out at once; production goes 5 → 25 → 100 with a gate before 100); and
//! the state a deployment keeps on its operation as the deploy flow walks the steps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blueprint::Tier;
use crate::canary::{Analysis, CanaryPolicy, Decision, Progress, Strategy};
use crate::names::Service;
use crate::validation::ValidationErrors;

/// A version of a service: what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
    /// The version's name, e.g. `2.4.1`.
    pub version: String,
    /// The container image, when it is not derived from the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The container's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// What a deployment does and where it stands (kept on its operation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    /// The service.
    #[schema(value_type = String)]
    pub service: Service,
    /// The version deployed.
    pub release: Release,
    /// The version it replaces, kept warm until the deployment completes.
    pub previous: Option<Release>,
    /// How traffic moves.
    pub strategy: Strategy,
    /// Steps, thresholds and limits (a rolling or blue/green deployment uses its thresholds
    /// only).
    pub canary: CanaryPolicy,
    /// The new version's weight and counts so far.
    pub progress: Progress,
    /// Every analysis, in order, with its figures, thresholds and verdict.
    #[serde(default)]
    pub analyses: Vec<Analysis>,
    /// The last decision taken.
    pub decision: Option<Decision>,
    /// The flow's task token while it waits for a person (a gate, or a hold); never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub wait_token: Option<String>,
    /// The deployment this one undoes: a rollback after success puts the version it replaced,
    /// still warm, back in front in one weight change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
}

/// A replaced version kept running, taking no traffic, for the rollback window of the
/// deployment that replaced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WarmRelease {
    /// The version kept warm.
    pub release: Release,
    /// The deployment (operation id) that replaced it, which `rollback` undoes.
    pub replaced_by: String,
    /// When it stops and the rollback window closes.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: time::OffsetDateTime,
}

/// What the deployment of a service's stable version found: its operation and every
/// analysis, attached to a promotion of that version elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// The deployment (operation id).
    pub operation: String,
    /// The version it deployed.
    pub version: String,
    /// Its analyses, in order (none for a rolling deployment).
    pub analyses: Vec<Analysis>,
}

/// Why a deployment cannot be rolled back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackRefused {
    /// A later deployment (or a rollback) replaced the version, or none was kept warm.
    #[error("deployment {0} is not the service's latest release with a warm previous version")]
    NotLatest(String),
    /// The window closed and the previous version stopped.
    #[error("the rollback window of deployment {id} closed at {until}")]
    WindowClosed {
        /// The deployment.
        id: String,
        /// When it closed.
        until: String,
    },
}

/// The deployment that undoes `done` (a succeeded deployment of `service`) on `environment`
/// at `at`: the warm previous version back in front, in one weight change. Refused once a
/// later deployment replaced it or its window closed.
pub fn rollback_of(
    environment: &crate::Environment,
    done: &Deployment,
    id: &str,
    at: time::OffsetDateTime,
) -> Result<Deployment, RollbackRefused> {
    let warm = environment
        .warm
        .get(&done.service)
        .filter(|w| w.replaced_by == id)
        .ok_or_else(|| RollbackRefused::NotLatest(id.to_owned()))?;
    if warm.until <= at {
        return Err(RollbackRefused::WindowClosed {
            id: id.to_owned(),
            until: warm
                .until
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
    }
    Ok(Deployment {
        service: done.service,
        release: warm.release.clone(),
        previous: environment.releases.get(&done.service).cloned(),
        strategy: Strategy::Rolling,
        canary: done.canary.clone(),
        progress: Progress::default(),
        analyses: Vec::new(),
        decision: None,
        wait_token: None,
        rollback_of: Some(id.to_owned()),
    })
}

/// A deployment of `release` of `service` to `environment`, with its deploy policy: what a
/// promotion runs for each service.
pub fn of_release(
    service: Service,
    release: Release,
    environment: &crate::Environment,
) -> Deployment {
    let (strategy, canary) = environment_policy(environment);
    Deployment {
        service,
        release,
        previous: None,
        strategy,
        canary,
        progress: Progress::default(),
        analyses: Vec::new(),
        decision: None,
        wait_token: None,
        rollback_of: None,
    }
}

fn text(body: &Value, field: &str, errors: &mut ValidationErrors) -> Option<String> {
    match body.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(s.clone())
        }
        Some(_) => {
            errors.push(
                field,
                "must be 1–128 visible ASCII characters (no spaces), e.g. 1.4.2",
            );
            None
        }
    }
}

/// The strategy and canary policy deployments get on `tier` with an environment's own
/// `policy` over the tier's defaults; the fields at fault (`canary.…`, `strategy`) named.
pub fn policy_of(
    tier: Tier,
    policy: Option<&crate::spec::DeployPolicy>,
) -> Result<(Strategy, CanaryPolicy), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let strategy = policy
        .and_then(|p| p.strategy)
        .unwrap_or_else(|| default_strategy(tier));
    let canary = match policy.and_then(|p| p.canary.as_ref()) {
        None => CanaryPolicy::for_tier(tier),
        Some(patch) => merged(CanaryPolicy::for_tier(tier), patch, &mut errors),
    };
    errors.into_result()?;
    Ok((strategy, canary))
}

/// `patch` merged over `base`; its faults named (`canary`, `canary.…`).
fn merged(base: CanaryPolicy, patch: &Value, errors: &mut ValidationErrors) -> CanaryPolicy {
    let mut value = serde_json::to_value(&base).unwrap_or_default();
    crate::merge_patch::apply(&mut value, patch);
    let policy = match serde_json::from_value::<CanaryPolicy>(value) {
        Ok(policy) => policy,
        Err(e) => {
            errors.push("canary", format!("not a canary policy: {e}"));
            return base;
        }
    };
    if let Err(bad) = policy.validate() {
        for (field, why) in bad {
            errors.push(field, why);
        }
    }
    policy
}

/// The deploy policy of `environment`: its tier's, with its spec's overrides (validated when
/// the spec was accepted; a policy that no longer validates falls back to the tier's).
pub fn environment_policy(environment: &crate::Environment) -> (Strategy, CanaryPolicy) {
    policy_of(environment.tier, environment.spec.deploy.as_ref()).unwrap_or_else(|_| {
        (
            default_strategy(environment.tier),
            CanaryPolicy::for_tier(environment.tier),
        )
    })
}

/// Parses a deployment request (`{"service", "version", "image"?, "env"?, "strategy"?,
/// "canary"?}`) to `environment`, with its deploy policy for what it leaves out; every field
/// at fault is named.
pub fn parse(
    body: &Value,
    environment: &crate::Environment,
) -> Result<Deployment, ValidationErrors> {
    let (base_strategy, base_canary) = environment_policy(environment);
    let mut errors = ValidationErrors::default();
    if !body.is_object() {
        errors.push("", "the body must be a JSON object");
        return Err(errors);
    }
    const KNOWN: [&str; 6] = ["service", "version", "image", "env", "strategy", "canary"];
    if let Some(obj) = body.as_object() {
        for key in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            errors.push(key.clone(), "unknown field");
        }
    }
    let service = match body.get("service") {
        None => {
            errors.push("service", "required: frontend or backend");
            None
        }
        Some(v) => serde_json::from_value::<Service>(v.clone())
            .map_err(|_| errors.push("service", "must be frontend or backend"))
            .ok(),
    };
    let version = text(body, "version", &mut errors);
    if version.is_none() && !errors.0.iter().any(|e| e.field == "version") {
        errors.push("version", "required");
    }
    let image = text(body, "image", &mut errors);
    let env = match body.get("env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value::<BTreeMap<String, String>>(v.clone())
            .map_err(|_| errors.push("env", "must be an object of strings"))
            .unwrap_or_default(),
    };
    let strategy = match body.get("strategy") {
        None | Some(Value::Null) => base_strategy,
        Some(v) => serde_json::from_value::<Strategy>(v.clone())
            .map_err(|_| errors.push("strategy", "must be canary, blue_green or rolling"))
            .unwrap_or(base_strategy),
    };
    let canary = match body.get("canary") {
        None | Some(Value::Null) => base_canary,
        Some(v) => merged(base_canary, v, &mut errors),
    };
    match (service, version) {
        (Some(service), Some(version)) if errors.0.is_empty() => Ok(Deployment {
            service,
            release: Release {
                version,
                image,
                env,
            },
            previous: None,
            strategy,
            canary,
            progress: Progress::default(),
            analyses: Vec::new(),
            decision: None,
            wait_token: None,
            rollback_of: None,
        }),
        _ => Err(errors),
    }
}

/// The tier's strategy: production deploys by canary, other tiers roll out.
pub fn default_strategy(tier: Tier) -> Strategy {
    if tier == Tier::Prod {
        Strategy::Canary
    } else {
        Strategy::Rolling
    }
}

/// The deployment moved on (launched, analysed, advanced, held, rolled back): the operation
/// records it, with `status` when it changes (waiting for a person, or running again).
pub fn progressed(
    environment: &crate::Environment,
    operation: &crate::Operation,
    deployment: Deployment,
    status: Option<crate::OperationStatus>,
    at: time::OffsetDateTime,
) -> crate::lifecycle::Transition {
    let mut op = crate::lifecycle::next_operation(operation, at);
    op.deployment = Some(deployment);
    if let Some(status) = status {
        op.status = status;
    }
    crate::lifecycle::Transition {
        environment: crate::lifecycle::next(environment, at),
        operation: op,
        audit: None,
        release_cidr: false,
    }
}

/// An interval was judged: the deployment records the analysis and the decision, and the
/// verdict goes into the audit chain with its figures, thresholds and what was decided.
pub fn analysed(
    environment: &crate::Environment,
    operation: &crate::Operation,
    deployment: Deployment,
    at: time::OffsetDateTime,
) -> crate::lifecycle::Transition {
    let mut t = progressed(environment, operation, deployment.clone(), None, at);
    let entry = crate::audit::AuditEntry {
        principal: crate::lifecycle::SYSTEM_PRINCIPAL.into(),
        role: crate::auth::Role::Admin,
        action: "deployment.analysis".into(),
        operation: Some(operation.id.clone()),
        change: serde_json::json!({
            "service": deployment.service,
            "version": deployment.release.version,
            "analysis": deployment.analyses.last(),
            "decision": deployment.decision,
        }),
    };
    let audit =
        crate::audit::AuditEvent::link(&environment.name, &environment.audit_head, at, entry);
    t.environment.audit_head = audit.head();
    t.audit = Some(audit);
    t
}

/// The new version is stable: the environment records it as the service's release, keeps the
/// version it replaced warm for the rollback window (a rollback keeps nothing warm), and the
/// evidence of its analyses; audited with every verdict.
pub fn completed(
    environment: &crate::Environment,
    operation: &crate::Operation,
    at: time::OffsetDateTime,
) -> Option<crate::lifecycle::Transition> {
    let deployment = operation.deployment.clone()?;
    let mut env = crate::lifecycle::next(environment, at);
    env.releases
        .insert(deployment.service, deployment.release.clone());
    match (&deployment.previous, &deployment.rollback_of) {
        (Some(previous), None) => {
            let window =
                time::Duration::seconds(i64::from(deployment.canary.rollback_window_seconds));
            env.warm.insert(
                deployment.service,
                WarmRelease {
                    release: previous.clone(),
                    replaced_by: operation.id.clone(),
                    until: at + window,
                },
            );
        }
        _ => {
            env.warm.remove(&deployment.service);
        }
    }
    env.evidence.insert(
        deployment.service,
        Evidence {
            operation: operation.id.clone(),
            version: deployment.release.version.clone(),
            analyses: deployment.analyses.clone(),
        },
    );
    let action = if deployment.rollback_of.is_some() {
        "deployment.rolled_back"
    } else {
        "deployment.completed"
    };
    let entry = crate::audit::AuditEntry {
        principal: crate::lifecycle::SYSTEM_PRINCIPAL.into(),
        role: crate::auth::Role::Admin,
        action: action.into(),
        operation: Some(operation.id.clone()),
        change: serde_json::json!({
            "service": deployment.service,
            "release": deployment.release,
            "previous": deployment.previous,
            "rollback_of": deployment.rollback_of,
            "analyses": deployment.analyses.iter().map(|a| serde_json::json!({
                "weight": a.weight, "verdict": a.verdict, "reasons": a.reasons,
            })).collect::<Vec<_>>(),
        }),
    };
    let audit =
        crate::audit::AuditEvent::link(&environment.name, &environment.audit_head, at, entry);
    env.audit_head = audit.head();
    Some(crate::lifecycle::Transition {
        environment: env,
        operation: crate::lifecycle::next_operation(operation, at),
        audit: Some(audit),
        release_cidr: false,
    })
}

/// The warm version of `service` stopped at the end of its window: the environment forgets it
/// (no audit: nothing a person decided, and the deployment's audit named the window).
pub fn cooled(
    environment: &crate::Environment,
    service: Service,
    at: time::OffsetDateTime,
) -> crate::Environment {
    let mut env = crate::lifecycle::next(environment, at);
    env.warm.remove(&service);
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env_of(tier: Tier) -> crate::Environment {
        let spec = crate::Blueprint::for_tier(tier).spec(crate::VpcCidr::from_second_octet(1));
        let mut env: crate::Environment = serde_json::from_value(json!({
            "name": "e1", "tier": tier, "spec": spec, "status": {"phase": "ready", "conditions": []},
            "version": 1, "active_operation": null, "audit_head": {"seq": 0, "hash": ""},
            "created_at": "2026-01-01T00:00:00Z", "created_by": "t",
            "updated_at": "2026-01-01T00:00:00Z", "updated_by": "t",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        env.spec = spec;
        env
    }

    #[test]
    fn a_request_takes_the_tiers_defaults() {
        let prod = parse(
            &json!({"service": "frontend", "version": "2.0"}),
            &env_of(Tier::Prod),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(prod.strategy, Strategy::Canary);
        assert_eq!(prod.canary.steps, vec![5, 25, 100]);
        assert_eq!(prod.canary.gates, vec![100]);
        let dev = parse(
            &json!({"service": "backend", "version": "2.0", "env": {"DEMO_ERROR_RATE": "0.3"},
                    "canary": {"interval_seconds": 30}}),
            &env_of(Tier::Dev),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(dev.strategy, Strategy::Rolling);
        assert_eq!(dev.canary.interval_seconds, 30);
        assert_eq!(dev.release.env["DEMO_ERROR_RATE"], "0.3");
    }

    #[test]
    fn bad_requests_name_every_field() {
        let errors = parse(
            &json!({"service": "db", "version": "", "strategy": "yolo", "colour": 1,
                    "canary": {"steps": [50, 25]}}),
            &env_of(Tier::Prod),
        )
        .err()
        .unwrap_or_default();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        for field in ["service", "version", "strategy", "colour", "canary.steps"] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
    }
}
