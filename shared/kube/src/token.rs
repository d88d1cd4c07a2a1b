//! The bearer token EKS accepts: a presigned STS `GetCallerIdentity` URL bound to the cluster
//! by the signed `x-k8s-aws-id` header, base64url-encoded behind `k8s-aws-v1.` (what
//! `aws eks get-token` prints). The cluster's authenticator calls STS with it to learn who the
//! caller is, and an EKS access entry maps that role to Kubernetes permissions.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningParams, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envplane_cloud::CloudError;

/// The prefix EKS expects.
pub const PREFIX: &str = "k8s-aws-v1.";

/// How long the presigned URL is valid: EKS refuses longer, and a token is made per call.
const EXPIRES: Duration = Duration::from_secs(60);

/// A token for `cluster` signed with `credentials` in `region` at `now`.
pub fn presigned(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, CloudError> {
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES);
    let identity = credentials.clone().into();
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| CloudError::Invalid(format!("signing parameters: {e}")))?
        .into();
    let headers = [("x-k8s-aws-id", cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| CloudError::Invalid(format!("the STS request: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| CloudError::Invalid(format!("signing the STS request: {e}")))?
        .into_parts();
    let mut request = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(|e| CloudError::Invalid(format!("the STS request: {e}")))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode(request.uri().to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let token = presigned(
            &credentials,
            "eu-west-1",
            "prod-eks",
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let encoded = token
            .strip_prefix(PREFIX)
            .unwrap_or_else(|| panic!("{token}"));
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).unwrap_or_default())
            .unwrap_or_default();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F19700101%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        // Another cluster, another signature: the token cannot be replayed elsewhere.
        let other = presigned(&credentials, "eu-west-1", "dev-eks", SystemTime::UNIX_EPOCH)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(token, other);
    }
}
