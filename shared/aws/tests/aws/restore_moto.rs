//! A restore in place on moto's server through the shipped restore flow: the worker with the
//! AWS cloud and database adapters, the snapshot a backup took, then a volume from it, a new
//! host of the same spec, the volume attached, the WAL replay and the checks sent through SSM
//! Run Command (moto records commands and never runs them: the request level is what is
//! tested), the private DNS record switched in Route 53 and the old host stopped — in that
//! order, every new resource tagged with the environment and the stack.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use envplane_aws::{AwsCloud, AwsDatabases, AwsSettings, DatabaseClients, RESTORE_TAG};
use envplane_domain::restore::{RestoreInto, RestorePoint};
use envplane_domain::{EnvName, Tier};
use envplane_store::StateStore;
use envplane_store::testing::mutations;
use envplane_worker::{Worker, execution_input};
use envplane_workflow::{Executor, Flow, VirtualClock};
use time::OffsetDateTime;

/// The name of every operation sent, in order.
#[derive(Debug, Default, Clone)]
struct OperationLog(Arc<Mutex<Vec<String>>>);

impl Intercept for OperationLog {
    fn name(&self) -> &'static str {
        "OperationLog"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            self.0.lock().unwrap().push(meta.name().to_owned());
        }
        Ok(())
    }
}

impl OperationLog {
    fn taken(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_in_place_on_moto_makes_its_calls_in_order() {
    let Some(endpoint) = envplane_store::testing::moto_endpoint() else {
        return;
    };
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let image = aws_sdk_ec2::Client::new(&config)
        .describe_images()
        .send()
        .await
        .unwrap()
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto ships images")
        .to_owned();
    let stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/envplane-restore/1".to_owned();
    let log = OperationLog::default();
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&config)
            .interceptor(log.clone())
            .build(),
    );
    let clients = envplane_aws::Clients {
        ec2: ec2.clone().into(),
        eks: aws_sdk_eks::Client::new(&config).into(),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config).into(),
    };
    let cloud = Arc::new(AwsCloud::new(
        clients,
        AwsSettings {
            stack: stack.clone(),
            cluster_role_arn: "arn:aws:iam::123456789012:role/envplane-eks-cluster".into(),
            node_role_arn: "arn:aws:iam::123456789012:role/envplane-eks-node".into(),
            db_image_id: image,
            backup_bucket: None,
            db_instance_profile: None,
        },
    ));
    let databases = Arc::new(AwsDatabases::new(
        DatabaseClients {
            ec2: ec2.into(),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&config)
                    .interceptor(log.clone())
                    .build(),
            )
            .into(),
            route53: aws_sdk_route53::Client::from_conf(
                aws_sdk_route53::config::Builder::from(&config)
                    .interceptor(log.clone())
                    .build(),
            )
            .into(),
        },
        stack.clone(),
        "us-east-1".into(),
        None,
        Some("envplane-backups-test".into()),
    ));
    let (_dir, store) = envplane_store::testing::embedded_store();
    let store: Arc<dyn StateStore> = Arc::new(store);
    let worker = Worker::new(store.clone(), cloud.clone()).with_databases(databases.clone());
    let approving = envplane_worker::testing::Approving::new(Arc::new(worker), store.clone());
    let executor = Executor::new(
        approving.clone(),
        Arc::new(VirtualClock::new(OffsetDateTime::UNIX_EPOCH)),
    );
    approving.attach(executor.clone());
    let run = |flow: Flow, env: EnvName, op: String| {
        let executor = executor.clone();
        async move {
            executor
                .execute(
                    &flow.local_definition().unwrap(),
                    execution_input(&env, &op),
                    &op,
                )
                .await
        }
    };

    // A dev environment: provisioned, its database record made, then a backup.
    let env = EnvName::parse(&format!(
        "r{}",
        &ulid::Ulid::new().to_string().to_lowercase()[20..]
    ))
    .unwrap();
    let op = mutations::create(store.as_ref(), &env, Tier::Dev, 61, |_| {}).await;
    let outcome = run(Flow::Provision, env.clone(), op).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let provisioned = log.taken();
    assert!(
        provisioned.iter().any(|o| o == "CreateHostedZone"),
        "{provisioned:?}"
    );
    assert!(provisioned.iter().any(|o| o == "ChangeResourceRecordSets"));
    let jobs = envplane_worker::jobs::Jobs::new(store.clone(), cloud.clone(), Arc::new(|| 0))
        .with_databases(databases.clone());
    let point = jobs.back_up_now(&env).await.unwrap();
    log.taken();

    // In place, after its approver, from that recovery point.
    let op = mutations::restore(
        store.as_ref(),
        &env,
        RestorePoint::Backup {
            backup_id: point.id.clone(),
        },
        RestoreInto::InPlace,
        0,
    )
    .await;
    let outcome = run(Flow::Restore, env.clone(), op.clone()).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:?}");
    let calls = log.taken();
    // The mutating calls, in order (describes and lists between them left out).
    let mutating: Vec<&str> = calls
        .iter()
        .map(String::as_str)
        .filter(|c| !c.starts_with("Describe") && !c.starts_with("List") && !c.starts_with("Get"))
        .collect();
    assert_eq!(
        mutating,
        [
            "CreateVolume",
            "RunInstances",
            "AttachVolume",
            "SendCommand",
            "SendCommand",
            "ChangeResourceRecordSets",
            "StopInstances"
        ],
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c == "DescribeSnapshots"));
    assert!(calls.iter().any(|c| c == "GetCommandInvocation"));
    println!("moto: restore in place of {env}: {}", calls.join(" → "));

    // What it made carries the environment's and the stack's tags, and the restore's.
    let restore = envplane_worker::restore_id(&op);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let filter = |k: &str, v: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{k}"))
            .values(v)
            .build()
    };
    let volumes = ec2
        .describe_volumes()
        .filters(filter(RESTORE_TAG, &restore))
        .filters(filter("envplane:environment", env.as_str()))
        .filters(filter("envplane:stack", &stack))
        .send()
        .await
        .unwrap();
    let volume = volumes.volumes().first().expect("the restored volume");
    assert_eq!(volume.snapshot_id(), Some(point.id.as_str()));
    let hosts = ec2
        .describe_instances()
        .filters(filter(RESTORE_TAG, &restore))
        .filters(filter("envplane:stack", &stack))
        .send()
        .await
        .unwrap();
    let host = hosts.reservations()[0].instances()[0].clone();
    // In the environment's database subnet.
    let subnets = ec2
        .describe_subnets()
        .filters(filter(
            "Name",
            &envplane_domain::names::subnet(&env, false, 1),
        ))
        .filters(filter("envplane:stack", &stack))
        .send()
        .await
        .unwrap();
    assert_eq!(host.subnet_id(), subnets.subnets()[0].subnet_id());
    assert_eq!(
        volume.attachments().first().and_then(|a| a.instance_id()),
        host.instance_id()
    );
    // The record now points at the new host, and the old host is stopped.
    let zones = aws_sdk_route53::Client::new(&config)
        .list_hosted_zones_by_name()
        .dns_name(format!("{env}.envplane.internal."))
        .send()
        .await
        .unwrap();
    let zone = zones.hosted_zones()[0].id().to_owned();
    let records = aws_sdk_route53::Client::new(&config)
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    let a = records
        .resource_record_sets()
        .iter()
        .find(|r| r.r#type() == &aws_sdk_route53::types::RrType::A)
        .expect("the database record");
    assert_eq!(
        a.resource_records()[0].value(),
        host.private_ip_address().unwrap()
    );
    let old = ec2
        .describe_instances()
        .filters(filter("Name", &envplane_domain::names::database_host(&env)))
        .filters(filter("envplane:stack", &stack))
        .send()
        .await
        .unwrap();
    let old_state = old.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert_eq!(
        old_state,
        Some(aws_sdk_ec2::types::InstanceStateName::Stopped)
    );
}
