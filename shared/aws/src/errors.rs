//! One mapping from SDK failures to the ports' errors.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use envplane_cloud::CloudError;

/// Error codes AWS uses for throttling across EC2, EKS and ELBv2.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

/// Codes that mean the resource is gone, which a delete treats as done.
pub(crate) const NOT_FOUND: &[&str] = &[
    "ResourceNotFoundException",
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "ListenerNotFound",
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidAllocationID.NotFound",
    "NatGatewayNotFound",
    "InvalidNatGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidVolume.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidAssociationID.NotFound",
    "Gateway.NotAttached",
];

/// The error code of an SDK failure, if the service sent one.
pub(crate) fn code<E: ProvideErrorMetadata>(error: &E) -> Option<&str> {
    error.code()
}

/// Maps an SDK failure: throttling and service faults are retried by the flows; dependency and
/// quota errors are conflicts; the rest is an invalid request.
pub(crate) fn cloud_error<E>(what: &str, error: E) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = format!(
        "{what}: {}",
        aws_smithy_types::error::display::DisplayErrorContext(&error)
    );
    // No code: the request did not reach the service (timeout, connection).
    let Some(code) = error.code().filter(|c| !c.is_empty()) else {
        return CloudError::Transient(message);
    };
    if THROTTLING.contains(&code) {
        CloudError::Throttled(message)
    } else if code.starts_with("Internal")
        || matches!(
            code,
            "ServiceUnavailable" | "Unavailable" | "ServerException"
        )
    {
        // The service failed inside.
        CloudError::Transient(message)
    } else if code.contains("DependencyViolation")
        || code.contains("InUse")
        || code.contains("LimitExceeded")
        || code == "IncorrectState"
    {
        CloudError::Conflict(message)
    } else {
        CloudError::Invalid(message)
    }
}
