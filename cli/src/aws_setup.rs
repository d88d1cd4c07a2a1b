//! What `envplane serve --aws` needs of an account before it can provision, found or made
//! when the variables do not name it: the EKS cluster and node roles by well-known names (as
//! eksctl makes its own), and the database host's image from Amazon Linux 2023's public SSM
//! parameter. The deployed stack makes its roles in `template.yaml`; this is for a plane run
//! from a laptop against an account or moto's server.

use aws_config::SdkConfig;
use envplane_aws::AwsSettings;

/// The cluster role's name when `ENVPLANE_CLUSTER_ROLE_ARN` is not set.
pub const CLUSTER_ROLE: &str = "envplane-eks-cluster";
/// The node role's name when `ENVPLANE_NODE_ROLE_ARN` is not set.
pub const NODE_ROLE: &str = "envplane-eks-nodes";
/// Amazon Linux 2023's latest x86_64 image (the database hosts are t3/m-class instances).
pub const DB_IMAGE_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// A role envplane needs: who may assume it and the AWS-managed policies it carries.
struct RoleSpec {
    name: &'static str,
    service: &'static str,
    policies: &'static [&'static str],
}

const ROLES: [RoleSpec; 2] = [
    RoleSpec {
        name: CLUSTER_ROLE,
        service: "eks.amazonaws.com",
        policies: &["AmazonEKSClusterPolicy"],
    },
    RoleSpec {
        name: NODE_ROLE,
        service: "ec2.amazonaws.com",
        policies: &[
            "AmazonEKSWorkerNodePolicy",
            "AmazonEKS_CNI_Policy",
            "AmazonEC2ContainerRegistryReadOnly",
        ],
    },
];

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The settings of a plane on AWS: each of the roles and the image from its variable when set,
/// otherwise found (or made) in the account; prints what it found or made.
pub async fn settings(config: &SdkConfig, stack: &str) -> anyhow::Result<AwsSettings> {
    let iam = aws_sdk_iam::Client::new(config);
    let [cluster, nodes] = &ROLES;
    let cluster_role_arn = match variable("ENVPLANE_CLUSTER_ROLE_ARN") {
        Some(arn) => arn,
        None => role(&iam, cluster, stack).await?,
    };
    let node_role_arn = match variable("ENVPLANE_NODE_ROLE_ARN") {
        Some(arn) => arn,
        None => role(&iam, nodes, stack).await?,
    };
    let db_image_id = match variable("ENVPLANE_DB_IMAGE_ID") {
        Some(image) => image,
        None => image(config).await?,
    };
    Ok(AwsSettings {
        stack: variable("ENVPLANE_STACK").unwrap_or_else(|| stack.to_owned()),
        cluster_role_arn,
        node_role_arn,
        db_image_id,
        backup_bucket: variable("ENVPLANE_BACKUP_BUCKET"),
        db_instance_profile: variable("DB_INSTANCE_PROFILE"),
    })
}

/// The role's ARN: the existing role of that name, or a new one trusting `spec.service`
/// (tagged with the stack, as everything envplane makes); either way with its policies
/// attached, so that a start interrupted halfway is completed by the next.
async fn role(iam: &aws_sdk_iam::Client, spec: &RoleSpec, stack: &str) -> anyhow::Result<String> {
    let existing = match iam.get_role().role_name(spec.name).send().await {
        Ok(found) => found.role().map(|r| r.arn().to_owned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => return Err(failed("GetRole", spec.name, e)),
    };
    let arn = match existing {
        Some(arn) => {
            println!("--aws: using the role {arn}");
            arn
        }
        None => {
            let trust = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": spec.service}, "Action": "sts:AssumeRole"}]
            });
            let tag = aws_sdk_iam::types::Tag::builder()
                .key("envplane:stack")
                .value(stack)
                .build()?;
            let made = iam
                .create_role()
                .role_name(spec.name)
                .assume_role_policy_document(trust.to_string())
                .description("Made by envplane serve --aws")
                .tags(tag)
                .send()
                .await
                .map_err(|e| failed("CreateRole", spec.name, e))?;
            let arn = made
                .role()
                .map(|r| r.arn().to_owned())
                .ok_or_else(|| anyhow::anyhow!("CreateRole {} answered no role", spec.name))?;
            println!("--aws: made the role {arn}");
            arn
        }
    };
    let attached = iam
        .list_attached_role_policies()
        .role_name(spec.name)
        .send()
        .await
        .map_err(|e| failed("ListAttachedRolePolicies", spec.name, e))?;
    for policy in spec.policies {
        let there = attached
            .attached_policies()
            .iter()
            .any(|p| p.policy_name() == Some(policy));
        if there {
            continue;
        }
        iam.attach_role_policy()
            .role_name(spec.name)
            .policy_arn(format!("arn:aws:iam::aws:policy/{policy}"))
            .send()
            .await
            .map_err(|e| failed("AttachRolePolicy", &format!("{policy} to {}", spec.name), e))?;
        println!("--aws: attached {policy} to {}", spec.name);
    }
    Ok(arn)
}

fn failed<E, R>(call: &str, what: &str, e: aws_sdk_iam::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    anyhow::anyhow!(
        "{call} {what}: {}",
        aws_sdk_iam::error::DisplayErrorContext(e)
    )
}

/// The latest Amazon Linux 2023 image of the region, from its public parameter.
async fn image(config: &SdkConfig) -> anyhow::Result<String> {
    let ssm = aws_sdk_ssm::Client::new(config);
    let parameter = ssm
        .get_parameter()
        .name(DB_IMAGE_PARAMETER)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "GetParameter {DB_IMAGE_PARAMETER}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(e)
            )
        })?;
    let image = parameter
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{DB_IMAGE_PARAMETER} has no value"))?;
    println!("--aws: database hosts run {image} ({DB_IMAGE_PARAMETER})");
    Ok(image)
}
