//! Blueprints: each tier's defaults, policies and monthly cost.

use axum::Json;
use envplane_domain::cost::CostBreakdown;
use envplane_domain::{Action, Blueprint, Caller, VpcCidr};

use crate::problem::{ApiError, Problem};
use crate::routes::authorize;
use crate::views::BlueprintView;

/// Tiers with their defaults, policies and monthly cost.
#[utoipa::path(get, path = "/v1/blueprints", tag = "blueprints", responses(
    (status = 200, description = "Every tier's blueprint", body = [BlueprintView]),
    (status = 401, description = "No credentials", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_blueprints(caller: Caller) -> Result<Json<Vec<BlueprintView>>, ApiError> {
    authorize(&caller, Action::Read)?;
    let views = Blueprint::all()
        .into_iter()
        .map(|blueprint| {
            let cidr = blueprint
                .default_vpc_cidr
                .unwrap_or(VpcCidr::from_second_octet(16));
            let cost = CostBreakdown::of(&blueprint.spec(cidr), blueprint.tier);
            BlueprintView { blueprint, cost }
        })
        .collect();
    Ok(Json(views))
}
