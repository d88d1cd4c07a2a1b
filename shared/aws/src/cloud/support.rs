//! What every resource module shares: paginated describes, tag specifications and tag maps,
//! not-found-tolerant calls, client tokens, and the one rule for a value AWS left out.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_smithy_async::future::pagination_stream::PaginationStream;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use envplane_cloud::{CloudError, Resource, ResourceState};
use envplane_domain::EnvName;
use envplane_domain::resources::{Observed, tags};

use crate::errors::{NOT_FOUND, cloud_error};

/// Every page of a describe, or the first failure as the ports' error.
pub(crate) async fn all_pages<O, E>(
    what: &str,
    pages: PaginationStream<Result<O, E>>,
) -> Result<Vec<O>, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    pages.try_collect().await.map_err(|e| cloud_error(what, e))
}

/// A call's result as the ports' error.
pub(crate) fn sent<T, E>(what: &str, result: Result<T, E>) -> Result<T, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| cloud_error(what, e))
}

/// A call on something that may be gone: `None` when AWS says it does not exist.
pub(crate) fn unless_gone<T, E>(what: &str, result: Result<T, E>) -> Result<Option<T>, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.code().is_some_and(|c| NOT_FOUND.contains(&c)) => Ok(None),
        Err(e) => Err(cloud_error(what, e)),
    }
}

/// Codes that mean a change of the same kind is already under way or already made.
const ALREADY: &[&str] = &[
    "ResourceInUseException",
    "InvalidPermission.Duplicate",
    "InvalidPermission.NotFound",
    "Resource.AlreadyAssociated",
];

/// An in-place change whose refusal because it is already made (or under way) counts as made.
pub(crate) fn unless_done<T, E>(what: &str, result: Result<T, E>) -> Result<(), CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code().is_some_and(|c| ALREADY.contains(&c)) => Ok(()),
        Err(e) => Err(cloud_error(what, e)),
    }
}

/// A value AWS must send: its absence is an error naming what lacks it, never `""`.
pub(crate) fn required<'a>(value: Option<&'a str>, what: &str) -> Result<&'a str, CloudError> {
    value.ok_or_else(|| CloudError::Transient(format!("AWS answered without {what}")))
}

/// Whose resources a call may see and touch: the environment's, made by this stack. Nothing
/// without both tags is ever changed or deleted, whatever its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner<'a> {
    /// The environment.
    pub(crate) env: &'a EnvName,
    /// The stack's id (`envplane:stack`).
    pub(crate) stack: &'a str,
}

impl Owner<'_> {
    /// The describe filters on both tags.
    pub(crate) fn filters(&self) -> Vec<Filter> {
        let tag = |key: &str, value: &str| {
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build()
        };
        vec![
            tag(tags::ENVIRONMENT, self.env.as_str()),
            tag(tags::STACK, self.stack),
        ]
    }

    /// Whether a resource with these tags is this environment's, made by this stack.
    pub(crate) fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(tags::ENVIRONMENT).map(String::as_str) == Some(self.env.as_str())
            && tags.get(tags::STACK).map(String::as_str) == Some(self.stack)
    }
}

/// The tags every EC2 resource of the owner's environment is created with, plus `extra`.
pub(crate) fn tag_spec(
    kind: ResourceType,
    owner: &Owner<'_>,
    operation: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> TagSpecification {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let builder = TagSpecification::builder()
        .resource_type(kind)
        .tags(tag(tags::ENVIRONMENT, owner.env.as_str()))
        .tags(tag(tags::STACK, owner.stack))
        .tags(tag(tags::OPERATION, operation))
        .tags(tag(tags::NAME, name));
    extra
        .iter()
        .fold(builder, |b, (k, v)| b.tags(tag(k, v)))
        .build()
}

/// EC2 tags as a map.
pub(crate) fn ec2_tags(list: &[Tag]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

/// EKS tags as a map.
pub(crate) fn eks_tags(
    map: Option<&std::collections::HashMap<String, String>>,
) -> BTreeMap<String, String> {
    map.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// A discovered resource, named by its `Name` tag (or its id when it has none).
pub(crate) fn resource(
    id: &str,
    tags: BTreeMap<String, String>,
    state: ResourceState,
    observed: Observed,
) -> Resource {
    let name = tags
        .get(tags::NAME)
        .cloned()
        .unwrap_or_else(|| id.to_owned());
    Resource {
        id: id.to_owned(),
        name,
        state,
        observed,
        updating: false,
        tags,
        created_at: None,
    }
}

/// An SDK timestamp as the ports' time.
pub(crate) fn timestamp(t: Option<&aws_smithy_types::DateTime>) -> Option<time::OffsetDateTime> {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
}

/// A client token for a create call: the same for every retry of one step of one operation.
pub(crate) fn client_token(operation: &str, name: &str) -> String {
    let token = format!("{operation}-{name}");
    token.chars().take(64).collect()
}

/// A count the SDK takes as `i32`.
pub(crate) fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A count AWS reported as `i32`, where it reported one.
pub(crate) fn count(n: Option<i32>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_and_bounded() {
        assert_eq!(client_token("op1", "dev-nat-1"), "op1-dev-nat-1");
        assert_eq!(client_token(&"x".repeat(60), "dev-nat-1").len(), 64);
    }
}
