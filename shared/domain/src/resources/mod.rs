//! The AWS resources an environment's spec calls for, named and grouped by the step of the
//! provisioning flow that creates them. Pure: the worker and the simulator both build on it,
//! and plan/what-if can diff two of them.

use std::collections::BTreeMap;

pub mod desired;
pub mod observed;

use serde::{Deserialize, Serialize};

use crate::name::EnvName;
use crate::names::{self, GroupRole, Service, Track};
use crate::spec::EnvironmentSpec;

pub use desired::{Desired, IngressRule, RuleSource};
pub use observed::{Observed, Power};

/// Kinds of resources envplane manages, in the order a teardown deletes them.
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
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A listener of the load balancer.
    Listener,
    /// The application load balancer.
    LoadBalancer,
    /// ELBv2 target group.
    TargetGroup,
    /// EKS managed node group.
    NodeGroup,
    /// EKS cluster.
    Cluster,
    /// EC2 instance of the database host.
    DbInstance,
    /// gp3 data volume of the database host.
    Volume,
    /// NAT gateway.
    NatGateway,
    /// Elastic IP of a NAT gateway.
    ElasticIp,
    /// Route table.
    RouteTable,
    /// Internet gateway.
    InternetGateway,
    /// Subnet.
    Subnet,
    /// Security group.
    SecurityGroup,
    /// The VPC.
    Vpc,
}

impl ResourceKind {
    /// Every kind, in teardown order.
    pub const TEARDOWN: [ResourceKind; 14] = [
        ResourceKind::Listener,
        ResourceKind::LoadBalancer,
        ResourceKind::TargetGroup,
        ResourceKind::NodeGroup,
        ResourceKind::Cluster,
        ResourceKind::DbInstance,
        ResourceKind::Volume,
        ResourceKind::NatGateway,
        ResourceKind::ElasticIp,
        ResourceKind::RouteTable,
        ResourceKind::InternetGateway,
        ResourceKind::Subnet,
        ResourceKind::SecurityGroup,
        ResourceKind::Vpc,
    ];

    /// A teardown in steps, dependents first: each step's kinds can go once the earlier steps'
    /// are gone (the destroy flow's and a rollback's order).
    pub const TEARDOWN_STEPS: [&'static [ResourceKind]; 5] = [
        // A target group goes once no listener forwards to it.
        &[ResourceKind::Listener, ResourceKind::NodeGroup],
        &[
            ResourceKind::LoadBalancer,
            ResourceKind::TargetGroup,
            ResourceKind::Cluster,
            ResourceKind::DbInstance,
            ResourceKind::RouteTable,
        ],
        &[ResourceKind::Volume, ResourceKind::NatGateway],
        &[
            ResourceKind::ElasticIp,
            ResourceKind::InternetGateway,
            ResourceKind::Subnet,
            ResourceKind::SecurityGroup,
        ],
        &[ResourceKind::Vpc],
    ];

    /// Typical seconds from a create call until AWS reports the resource usable: what the
    /// realistic simulator takes, and what the flows expect before they look again.
    pub fn typical_create_seconds(self) -> u64 {
        match self {
            ResourceKind::Cluster => 600,
            ResourceKind::NodeGroup => 240,
            ResourceKind::NatGateway => 120,
            ResourceKind::DbInstance => 60,
            // An ALB is `provisioning` for a few minutes.
            ResourceKind::LoadBalancer => 180,
            ResourceKind::Volume => 10,
            ResourceKind::TargetGroup
            | ResourceKind::Vpc
            | ResourceKind::InternetGateway
            | ResourceKind::SecurityGroup
            | ResourceKind::Listener => 2,
            ResourceKind::Subnet | ResourceKind::RouteTable | ResourceKind::ElasticIp => 1,
        }
    }

    /// Typical seconds from a delete call until the resource is gone.
    pub fn typical_delete_seconds(self) -> u64 {
        match self {
            ResourceKind::Cluster => 300,
            ResourceKind::NodeGroup => 180,
            ResourceKind::NatGateway => 60,
            ResourceKind::DbInstance => 45,
            ResourceKind::LoadBalancer => 30,
            ResourceKind::Volume => 5,
            _ => 1,
        }
    }

    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Listener => "listener",
            ResourceKind::LoadBalancer => "load_balancer",
            ResourceKind::TargetGroup => "target_group",
            ResourceKind::NodeGroup => "node_group",
            ResourceKind::Cluster => "cluster",
            ResourceKind::DbInstance => "db_instance",
            ResourceKind::Volume => "volume",
            ResourceKind::NatGateway => "nat_gateway",
            ResourceKind::ElasticIp => "elastic_ip",
            ResourceKind::RouteTable => "route_table",
            ResourceKind::InternetGateway => "internet_gateway",
            ResourceKind::Subnet => "subnet",
            ResourceKind::SecurityGroup => "security_group",
            ResourceKind::Vpc => "vpc",
        }
    }
}

/// The step of the provisioning flow that creates a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// VPC, subnets, internet gateway, security groups.
    Network,
    /// Elastic IPs, NAT gateways and route tables: the way out of the private subnets.
    Egress,
    /// The EKS control plane.
    Cluster,
    /// The node groups (after the cluster is active).
    NodeGroups,
    /// The database host and its volume.
    Database,
    /// The load balancer: the target groups (two tracks per service), the ALB and its
    /// listeners.
    Targets,
}

impl Group {
    /// Every group, in creation order.
    pub const ALL: [Group; 6] = [
        Group::Network,
        Group::Egress,
        Group::Cluster,
        Group::NodeGroups,
        Group::Database,
        Group::Targets,
    ];
}

/// One resource the spec calls for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// Unique name within the account and region (the `Name` tag, or the resource's own name).
    pub name: String,
    /// The step that creates it.
    pub group: Group,
    /// Names of resources it needs to exist first.
    pub depends_on: Vec<String>,
    /// What it is made with: CIDR, instance type, scaling, rules…
    pub desired: Desired,
}

impl Planned {
    /// Its kind.
    pub fn kind(&self) -> ResourceKind {
        self.desired.kind()
    }
}

/// Tag keys envplane puts on everything it creates, to find it again without its id.
pub mod tags {
    /// The environment a resource belongs to.
    pub const ENVIRONMENT: &str = "envplane:environment";
    /// The stack that made it: nothing without it is ever changed or deleted.
    pub const STACK: &str = "envplane:stack";
    /// The operation that created it.
    pub const OPERATION: &str = "envplane:operation";
    /// Marks volumes for the daily snapshot.
    pub const BACKUP: &str = "Backup";
    /// The resource's envplane name, on kinds whose AWS name is not theirs to choose.
    pub const NAME: &str = "Name";
}

/// Every resource `spec` calls for, in creation order.
pub fn plan(env: &EnvName, spec: &EnvironmentSpec) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut add = |name: String, group, depends_on: Vec<String>, desired: Desired| {
        out.push(Planned {
            name,
            group,
            depends_on,
            desired,
        });
    };
    let azs = spec.network.az_count;
    let (public, private) = spec.subnets();
    let vpc_cidr = spec.network.vpc_cidr.to_string();
    let sg = |role| names::security_group(env, role);
    add(
        names::vpc(env),
        Group::Network,
        vec![],
        Desired::Vpc(desired::Vpc {
            cidr: vpc_cidr.clone(),
        }),
    );
    for (is_public, blocks) in [(true, &public), (false, &private)] {
        for (i, cidr) in (0u8..).zip(blocks.iter()) {
            add(
                names::subnet(env, is_public, i + 1),
                Group::Network,
                vec![names::vpc(env)],
                Desired::Subnet(desired::Subnet {
                    cidr: cidr.clone(),
                    az_index: i,
                    public: is_public,
                }),
            );
        }
    }
    add(
        names::internet_gateway(env),
        Group::Network,
        vec![names::vpc(env)],
        Desired::InternetGateway {},
    );
    let nats = spec.nat_gateway_count();
    for i in 1..=nats {
        add(
            names::elastic_ip(env, i),
            Group::Egress,
            vec![],
            Desired::ElasticIp {},
        );
        let subnet = names::subnet(env, true, u8::try_from(i).unwrap_or(u8::MAX));
        add(
            names::nat_gateway(env, i),
            Group::Egress,
            vec![
                subnet.clone(),
                names::elastic_ip(env, i),
                names::internet_gateway(env),
            ],
            Desired::NatGateway(desired::NatGateway {
                subnet,
                eip: names::elastic_ip(env, i),
            }),
        );
    }
    add(
        names::public_route_table(env),
        Group::Egress,
        vec![names::internet_gateway(env)],
        Desired::RouteTable(desired::RouteTable {
            default_route: names::internet_gateway(env),
            subnets: (1..=azs).map(|i| names::subnet(env, true, i)).collect(),
        }),
    );
    for i in 1..=azs {
        let nat = names::nat_gateway(env, if nats == 1 { 1 } else { u32::from(i) });
        add(
            names::private_route_table(env, i),
            Group::Egress,
            vec![nat.clone()],
            Desired::RouteTable(desired::RouteTable {
                default_route: nat,
                subnets: vec![names::subnet(env, false, i)],
            }),
        );
    }
    add(
        sg(GroupRole::Alb),
        Group::Network,
        vec![names::vpc(env)],
        Desired::SecurityGroup(desired::SecurityGroup {
            ingress: vec![
                IngressRule::from_cidr(80, "0.0.0.0/0"),
                IngressRule::from_cidr(443, "0.0.0.0/0"),
            ],
        }),
    );
    add(
        sg(GroupRole::Cluster),
        Group::Network,
        vec![names::vpc(env), sg(GroupRole::Alb)],
        Desired::SecurityGroup(desired::SecurityGroup {
            ingress: vec![
                IngressRule::from_cidr(443, vpc_cidr.clone()),
                IngressRule::from_cidr(10250, vpc_cidr.clone()),
                IngressRule::from_group(Service::Frontend.port(), sg(GroupRole::Alb)),
                IngressRule::from_group(Service::Backend.port(), sg(GroupRole::Alb)),
            ],
        }),
    );
    add(
        sg(GroupRole::Db),
        Group::Network,
        vec![names::vpc(env), sg(GroupRole::Cluster)],
        Desired::SecurityGroup(desired::SecurityGroup {
            ingress: vec![IngressRule::from_group(5432, sg(GroupRole::Cluster))],
        }),
    );

    let private_names: Vec<String> = (1..=azs).map(|i| names::subnet(env, false, i)).collect();
    add(
        names::cluster(env),
        Group::Cluster,
        private_names
            .iter()
            .cloned()
            .chain([sg(GroupRole::Cluster)])
            .collect(),
        Desired::Cluster(desired::Cluster {
            version: spec.cluster.version.clone(),
            subnets: private_names,
            security_group: sg(GroupRole::Cluster),
        }),
    );
    for (service, group) in [
        (Service::Frontend, &spec.cluster.frontend),
        (Service::Backend, &spec.cluster.backend),
    ] {
        add(
            names::node_group(env, service),
            Group::NodeGroups,
            // Nodes in the private subnets reach the registries through the NAT gateways.
            std::iter::once(names::cluster(env))
                .chain((1..=azs).map(|i| names::private_route_table(env, i)))
                .collect(),
            Desired::NodeGroup(desired::NodeGroup {
                cluster: names::cluster(env),
                role: service,
                instance_type: group.instance_type.clone(),
                min: group.min,
                desired: group.desired,
                max: group.max,
                version: spec.cluster.version.clone(),
            }),
        );
    }
    let volume = &spec.database.volume;
    add(
        names::data_volume(env),
        Group::Database,
        vec![],
        Desired::Volume(desired::Volume {
            size_gb: volume.size_gb,
            iops: volume.iops,
            throughput_mibps: volume.throughput_mibps,
            az_index: 0,
            backup: true,
        }),
    );
    add(
        names::database_host(env),
        Group::Database,
        // The host installs PostgreSQL at first boot, through the NAT gateway.
        vec![
            names::subnet(env, false, 1),
            sg(GroupRole::Db),
            names::data_volume(env),
            names::private_route_table(env, 1),
        ],
        Desired::DbInstance(desired::DbInstance {
            instance_type: spec.database.instance_type.clone(),
            engine_version: spec.database.engine_version.clone(),
            extensions: spec.database.extensions.clone(),
            subnet: names::subnet(env, false, 1),
            security_group: sg(GroupRole::Db),
            volume: names::data_volume(env),
        }),
    );
    for service in Service::ALL {
        for track in Track::ALL {
            add(
                names::track_target_group(env, service, track),
                Group::Targets,
                vec![names::vpc(env)],
                Desired::TargetGroup(desired::TargetGroup {
                    port: service.port(),
                    health_path: "/health".into(),
                    role: service,
                    track,
                }),
            );
        }
    }
    let public_names: Vec<String> = (1..=azs).map(|i| names::subnet(env, true, i)).collect();
    add(
        names::load_balancer(env),
        Group::Targets,
        public_names
            .iter()
            .cloned()
            .chain([sg(GroupRole::Alb), names::internet_gateway(env)])
            .collect(),
        Desired::LoadBalancer(desired::LoadBalancer {
            subnets: public_names,
            security_group: sg(GroupRole::Alb),
        }),
    );
    let pair = |service| desired::TrackPair {
        blue: names::track_target_group(env, service, Track::Blue),
        green: names::track_target_group(env, service, Track::Green),
    };
    let ports = std::iter::once((80, None)).chain(
        spec.network
            .certificate_arn
            .clone()
            .map(|arn| (443, Some(arn))),
    );
    for (port, certificate_arn) in ports {
        add(
            names::listener(env, port),
            Group::Targets,
            std::iter::once(names::load_balancer(env))
                .chain(
                    Service::ALL
                        .into_iter()
                        .flat_map(|s| Track::ALL.map(|t| names::track_target_group(env, s, t))),
                )
                .collect(),
            Desired::Listener(desired::Listener {
                load_balancer: names::load_balancer(env),
                port,
                certificate_arn,
                frontend: pair(Service::Frontend),
                backend: pair(Service::Backend),
            }),
        );
    }
    out
}

/// How many resources of each kind a plan holds, for summaries and tests.
pub fn count_by_kind(plan: &[Planned]) -> BTreeMap<ResourceKind, usize> {
    let mut counts = BTreeMap::new();
    for p in plan {
        *counts.entry(p.kind()).or_insert(0) += 1;
    }
    counts
}

/// Where a database host archives its WAL (and a restore host fetches it): a pgBackRest
/// repository in the stack's bucket, one path per environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalArchive {
    /// The stack's backup bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// The environment whose repository it is (`/envplane/<env>`).
    pub environment: EnvName,
    /// Seconds after which a WAL segment is archived even when not full: the RPO's floor.
    pub archive_timeout_seconds: u32,
}

impl WalArchive {
    /// `/etc/pgbackrest/pgbackrest.conf` for this repository (the instance role's credentials).
    fn config(&self) -> String {
        format!(
            "[global]\nrepo1-type=s3\nrepo1-s3-bucket={bucket}\nrepo1-s3-region={region}\nrepo1-s3-endpoint=s3.{region}.amazonaws.com\nrepo1-s3-key-type=auto\nrepo1-path=/envplane/{env}\nrepo1-retention-full=2\nlog-level-console=info\n\n[main]\npg1-path=/var/lib/pgsql/data\n",
            bucket = self.bucket,
            region = self.region,
            env = self.environment,
        )
    }
}

/// Cloud-init user data of the database host: PostgreSQL of the spec's major version with its
/// extensions, its data directory on the gp3 volume attached as `/dev/sdf`; with `wal`, its WAL
/// archived continuously to the stack's bucket by pgBackRest, and a heartbeat row written every
/// five seconds into `envplane.heartbeat` (what a restore measures its RPO by).
pub fn database_user_data(
    engine_version: &str,
    extensions: &[String],
    wal: Option<&WalArchive>,
) -> String {
    let create_extensions: String = extensions
        .iter()
        .map(|e| format!("sudo -u postgres psql -c 'CREATE EXTENSION IF NOT EXISTS \"{e}\";'\n"))
        .collect();
    let archiving = wal.map_or_else(String::new, |wal| {
        format!(
            r#"# WAL archived continuously to the stack's bucket; a heartbeat every five seconds.
dnf install -y pgbackrest
mkdir -p /etc/pgbackrest
cat > /etc/pgbackrest/pgbackrest.conf <<'CONF'
{config}CONF
sudo -u postgres psql -c "ALTER SYSTEM SET archive_mode = 'on'"
sudo -u postgres psql -c "ALTER SYSTEM SET archive_command = 'pgbackrest --stanza=main archive-push %p'"
sudo -u postgres psql -c "ALTER SYSTEM SET archive_timeout = '{timeout}s'"
systemctl restart postgresql
sudo -u postgres pgbackrest --stanza=main stanza-create
sudo -u postgres psql -c "CREATE SCHEMA IF NOT EXISTS envplane; CREATE TABLE IF NOT EXISTS envplane.heartbeat (at timestamptz PRIMARY KEY DEFAULT clock_timestamp())"
cat > /etc/systemd/system/envplane-heartbeat.service <<'UNIT'
[Unit]
Description=envplane heartbeat: a row every five seconds, what a restore measures its RPO by
After=postgresql.service
[Service]
User=postgres
ExecStart=/bin/bash -c 'while true; do psql -qc "INSERT INTO envplane.heartbeat DEFAULT VALUES"; sleep 5; done'
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable --now envplane-heartbeat
"#,
            config = wal.config(),
            timeout = wal.archive_timeout_seconds,
        )
    });
    format!(
        r#"#!/bin/bash
# envplane database host: PostgreSQL {engine_version} on the gp3 data volume.
set -euo pipefail
device=/dev/sdf
[ -e /dev/nvme1n1 ] && device=/dev/nvme1n1
until [ -e "$device" ]; do sleep 2; done
blkid "$device" || mkfs -t xfs "$device"
mkdir -p /var/lib/pgsql
grep -q /var/lib/pgsql /etc/fstab || echo "$device /var/lib/pgsql xfs defaults,nofail 0 2" >> /etc/fstab
mount -a
dnf install -y postgresql{engine_version}-server postgresql{engine_version}-contrib
postgresql-setup --initdb || true
systemctl enable --now postgresql
{create_extensions}{archiving}"#
    )
}

/// The first boot of a restore's new host: PostgreSQL and pgBackRest installed and, with
/// `wal`, pointed at the source's repository (the replay fetches its WAL from there); nothing
/// initialised — its data comes on the volume made from the snapshot, and the restore's replay
/// (through SSM Run Command) starts it.
pub fn restore_host_user_data(wal: Option<&WalArchive>) -> String {
    let config = wal.map_or_else(String::new, |wal| {
        format!(
            "mkdir -p /etc/pgbackrest\ncat > /etc/pgbackrest/pgbackrest.conf <<'CONF'\n{}CONF\n",
            wal.config()
        )
    });
    format!(
        "#!/bin/bash
# envplane restore host: PostgreSQL and pgBackRest, data from the restored volume.
set -euo pipefail
dnf install -y postgresql15-server postgresql15-contrib pgbackrest amazon-ssm-agent
systemctl enable --now amazon-ssm-agent
{config}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::{Blueprint, Tier};
    use crate::cidr::VpcCidr;

    #[test]
    fn a_host_archives_its_wal_to_its_environments_repository_and_writes_heartbeats() {
        let wal = WalArchive {
            bucket: "envplane-backups-123".into(),
            region: "eu-west-1".into(),
            environment: EnvName::parse("prod").expect("valid"),
            archive_timeout_seconds: 60,
        };
        let boot = database_user_data("15", &["uuid-ossp".into()], Some(&wal));
        for needle in [
            "repo1-s3-bucket=envplane-backups-123",
            "repo1-path=/envplane/prod",
            "archive_command = 'pgbackrest --stanza=main archive-push %p'",
            "archive_timeout = '60s'",
            "stanza-create",
            "envplane-heartbeat",
        ] {
            assert!(boot.contains(needle), "{needle} in {boot}");
        }
        assert!(!database_user_data("15", &[], None).contains("pgbackrest"));
        let restore = restore_host_user_data(Some(&wal));
        assert!(restore.contains("repo1-path=/envplane/prod"), "{restore}");
        assert!(!restore.contains("initdb"));
    }

    #[test]
    fn prod_calls_for_three_zones_of_everything() {
        let spec = Blueprint::for_tier(Tier::Prod).spec(VpcCidr::from_second_octet(2));
        let plan = plan(&EnvName::parse("prod").expect("valid"), &spec);
        let counts = count_by_kind(&plan);
        assert_eq!(counts[&ResourceKind::Subnet], 6);
        assert_eq!(counts[&ResourceKind::NatGateway], 3);
        assert_eq!(counts[&ResourceKind::RouteTable], 4);
        assert_eq!(counts[&ResourceKind::SecurityGroup], 3);
        assert_eq!(counts[&ResourceKind::NodeGroup], 2);
        let names: std::collections::BTreeSet<&str> =
            plan.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), plan.len(), "names are unique");
        for p in &plan {
            for dep in &p.depends_on {
                assert!(
                    names.contains(dep.as_str()),
                    "{} depends on unknown {dep}",
                    p.name
                );
            }
        }
        let db_sg = plan.iter().find(|p| p.name == "prod-sg-db").expect("db sg");
        assert_eq!(
            db_sg.desired.to_json()["ingress"],
            serde_json::json!([{"port": 5432, "from_group": "prod-sg-cluster"}])
        );
    }

    #[test]
    fn the_load_balancer_listens_on_https_when_the_spec_names_a_certificate() {
        let env = EnvName::parse("stg").expect("valid");
        let mut spec = Blueprint::for_tier(Tier::Staging).spec(VpcCidr::from_second_octet(3));
        let listeners = |spec: &EnvironmentSpec| -> Vec<serde_json::Value> {
            plan(&env, spec)
                .iter()
                .filter(|p| p.kind() == ResourceKind::Listener)
                .map(|p| p.desired.to_json())
                .collect()
        };
        assert_eq!(listeners(&spec).len(), 1);
        assert_eq!(listeners(&spec)[0]["port"], 80);
        let arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c";
        spec.network.certificate_arn = Some(arn.into());
        assert!(spec.validate(Tier::Staging).is_ok());
        let both = listeners(&spec);
        assert_eq!(both.len(), 2);
        assert_eq!(
            (
                both[1]["port"].as_u64(),
                both[1]["certificate_arn"].as_str()
            ),
            (Some(443), Some(arn))
        );
        assert_eq!(both[1]["frontend"]["green"], "stg-tg-frontend-green");
        spec.network.certificate_arn = Some("arn:aws:iam::1:server-certificate/x".into());
        let errors = spec.validate(Tier::Staging).err().unwrap_or_default();
        assert_eq!(errors.0[0].field, "network.certificate_arn");
    }

    #[test]
    fn dev_shares_one_nat_gateway() {
        let spec = Blueprint::for_tier(Tier::Dev).spec(VpcCidr::from_second_octet(0));
        let plan = plan(&EnvName::parse("dev").expect("valid"), &spec);
        assert_eq!(count_by_kind(&plan)[&ResourceKind::NatGateway], 1);
        let rt = plan
            .iter()
            .find(|p| p.name == "dev-rt-private-2")
            .expect("route table");
        assert_eq!(rt.desired.to_json()["default_route"], "dev-nat-1");
    }
}
