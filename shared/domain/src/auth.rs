//! Callers, roles and what each role may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::blueprint::Tier;

/// What a caller may do, each role including the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Creates, changes and destroys non-production environments.
    Operator,
    /// Also changes production and approves others' operations.
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name as used in tokens files and JWT groups.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}; roles: viewer, operator, approver, admin"
            )),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Who: a JWT subject or username, an IAM ARN, or a local token's principal.
    pub principal: String,
    /// The highest role the caller holds.
    pub role: Role,
}

/// Things a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Any read.
    Read,
    /// Create, change or destroy an environment of a tier.
    Mutate(Tier),
}

impl Action {
    /// The least role that may perform this action: changing production needs an approver.
    pub fn required_role(self) -> Role {
        match self {
            Action::Read => Role::Viewer,
            Action::Mutate(Tier::Prod) => Role::Approver,
            Action::Mutate(_) => Role::Operator,
        }
    }
}

impl Caller {
    /// `Err(required role)` when the caller's role is below what `action` needs.
    pub fn authorize(&self, action: Action) -> Result<(), Role> {
        let required = action.required_role();
        if self.role >= required {
            Ok(())
        } else {
            Err(required)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            principal: "p".into(),
            role,
        }
    }

    #[test]
    fn prod_needs_an_approver() {
        assert_eq!(
            caller(Role::Operator).authorize(Action::Mutate(Tier::Prod)),
            Err(Role::Approver)
        );
        assert_eq!(
            caller(Role::Approver).authorize(Action::Mutate(Tier::Prod)),
            Ok(())
        );
        assert_eq!(
            caller(Role::Operator).authorize(Action::Mutate(Tier::Dev)),
            Ok(())
        );
        assert_eq!(
            caller(Role::Viewer).authorize(Action::Mutate(Tier::Dev)),
            Err(Role::Operator)
        );
        assert_eq!(caller(Role::Viewer).authorize(Action::Read), Ok(()));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(
            Role::Viewer < Role::Operator
                && Role::Operator < Role::Approver
                && Role::Approver < Role::Admin
        );
        assert_eq!("approver".parse::<Role>(), Ok(Role::Approver));
        assert!("root".parse::<Role>().is_err());
    }
}
