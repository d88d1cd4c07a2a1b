//! Promotions: the versions running in one environment deployed to another, as one operation
//! on the target with the target's strategy and approvals, each service after the other, and
//! the source's evidence attached. A failure puts back the versions the promotion already
//! replaced, so the target never runs half a promotion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Environment;
use crate::deployment::{self, Deployment, Evidence, WarmRelease};
use crate::lifecycle::Transition;
use crate::name::EnvName;
use crate::names::Service;
use crate::validation::ValidationErrors;

/// A parsed `POST /v1/promotions` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRequest {
    /// Where the versions run now.
    pub from: EnvName,
    /// Where they go.
    pub to: EnvName,
    /// Which services; `None`: every service `from` runs.
    pub services: Option<Vec<Service>>,
}

/// A promotion under way, kept on its operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Promotion {
    /// The source environment.
    #[schema(value_type = String)]
    pub from: EnvName,
    /// The services promoted, in order.
    #[schema(value_type = Vec<String>)]
    pub services: Vec<Service>,
    /// Deployments still to run, in order (the current one is the operation's deployment).
    pub pending: Vec<Deployment>,
    /// Deployments completed by this promotion, in order; undone if a later one fails.
    pub done: Vec<Deployment>,
    /// The source's evidence for each promoted version.
    #[schema(value_type = Object)]
    pub evidence: BTreeMap<Service, Evidence>,
}

fn env_name(body: &Value, field: &str, errors: &mut ValidationErrors) -> Option<EnvName> {
    match body.get(field) {
        Some(Value::String(raw)) => EnvName::parse(raw)
            .map_err(|e| errors.push(field, e.to_string()))
            .ok(),
        None | Some(Value::Null) => {
            errors.push(field, "required: an environment's name");
            None
        }
        Some(_) => {
            errors.push(field, "must be an environment's name");
            None
        }
    }
}

/// Parses `{"from", "to", "services"?}`, naming every field at fault.
pub fn parse(body: &Value) -> Result<PromotionRequest, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let Some(obj) = body.as_object() else {
        errors.push("", "the body must be a JSON object");
        return Err(errors);
    };
    for key in obj
        .keys()
        .filter(|k| !["from", "to", "services"].contains(&k.as_str()))
    {
        errors.push(key.clone(), "unknown field");
    }
    let from = env_name(body, "from", &mut errors);
    let to = env_name(body, "to", &mut errors);
    if from.is_some() && from == to {
        errors.push("to", "must differ from `from`");
    }
    let services = match body.get("services") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut services = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match serde_json::from_value::<Service>(item.clone()) {
                    Ok(s) if services.contains(&s) => {
                        errors.push(format!("services[{i}]"), "named twice");
                    }
                    Ok(s) => services.push(s),
                    Err(_) => errors.push(format!("services[{i}]"), "must be frontend or backend"),
                }
            }
            Some(services)
        }
        Some(_) => {
            errors.push("services", "must be a non-empty array of services");
            None
        }
    };
    match (from, to) {
        (Some(from), Some(to)) if errors.is_empty() => Ok(PromotionRequest { from, to, services }),
        _ => Err(errors),
    }
}

/// The deployments that bring `target` to the versions `source` runs, for `services` (every
/// service `source` runs when `None`), with the target's strategy and policy. A service whose
/// version the target already runs is left out; nothing left to do is an error naming
/// `services`.
pub fn plan(
    source: &Environment,
    target: &Environment,
    services: Option<&[Service]>,
) -> Result<(Deployment, Promotion), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let wanted: Vec<Service> = match services {
        Some(list) => list.to_vec(),
        None => source.releases.keys().copied().collect(),
    };
    if wanted.is_empty() {
        errors.push("from", format!("{} runs no service yet", source.name));
        return Err(errors);
    }
    let mut deployments = Vec::new();
    let mut evidence = BTreeMap::new();
    for (i, service) in wanted.iter().enumerate() {
        let Some(release) = source.releases.get(service) else {
            errors.push(
                format!("services[{i}]"),
                format!("{} runs no {}", source.name, service.as_str()),
            );
            continue;
        };
        if target.releases.get(service) == Some(release) {
            continue;
        }
        if let Some(found) = source.evidence.get(service) {
            evidence.insert(*service, found.clone());
        }
        deployments.push(deployment::of_release(*service, release.clone(), target));
    }
    errors.clone().into_result()?;
    let mut queue = deployments.into_iter();
    let Some(first) = queue.next() else {
        errors.push(
            "services",
            format!("{} already runs these versions", target.name),
        );
        return Err(errors);
    };
    let promotion = Promotion {
        from: source.name.clone(),
        services: wanted,
        pending: queue.collect(),
        done: Vec::new(),
        evidence,
    };
    Ok((first, promotion))
}

/// After a service's deployment completed: the promotion's next deployment becomes the
/// operation's, replacing what the target runs now; its service, or `None` when the promotion
/// is done.
pub fn next_service(t: &mut Transition) -> Option<Service> {
    let promotion = t.operation.promotion.as_mut()?;
    if promotion.pending.is_empty() {
        return None;
    }
    let mut next = promotion.pending.remove(0);
    if let Some(done) = t.operation.deployment.take() {
        promotion.done.push(done);
    }
    next.previous = t.environment.releases.get(&next.service).cloned();
    let service = next.service;
    t.operation.deployment = Some(next);
    Some(service)
}

/// After a failure: the services the promotion already completed are back on the versions
/// they ran before (the promoted ones stay warm until housekeeping's next run stops them).
pub fn undone(mut t: Transition) -> Transition {
    let Some(promotion) = t.operation.promotion.as_mut() else {
        return t;
    };
    let at = t.environment.updated_at;
    for done in std::mem::take(&mut promotion.done) {
        t.environment.evidence.remove(&done.service);
        match done.previous {
            Some(previous) => {
                t.environment.releases.insert(done.service, previous);
                t.environment.warm.insert(
                    done.service,
                    WarmRelease {
                        release: done.release,
                        replaced_by: t.operation.id.clone(),
                        until: at,
                    },
                );
            }
            None => {
                t.environment.releases.remove(&done.service);
                t.environment.warm.remove(&done.service);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_name_every_field_at_fault() {
        let errors = parse(&json!({"from": "staging", "to": "staging",
                                   "services": ["frontend", "db", "frontend"], "x": 1}))
        .err()
        .unwrap_or_default();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["x", "to", "services[1]", "services[2]"]);
        let ok = parse(&json!({"from": "staging", "to": "prod"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.services, None);
    }
}
