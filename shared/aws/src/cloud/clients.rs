//! The SDK clients, built once per account and region. Today every environment lives in the
//! stack's home account and region; the pool is where other targets' clients will join.

use std::collections::HashMap;
use std::sync::Arc;

use crate::lazy::OnFirstUse;
use crate::metering::CallCounter;

/// An account and region envplane acts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The account id, when known (the home account need not be).
    pub account: Option<String>,
    /// The region.
    pub region: String,
}

/// The EC2, EKS and ELBv2 clients of one account and region, each made when first used.
#[derive(Debug, Clone)]
pub struct Clients {
    /// EC2.
    pub ec2: OnFirstUse<aws_sdk_ec2::Client>,
    /// EKS.
    pub eks: OnFirstUse<aws_sdk_eks::Client>,
    /// ELBv2.
    pub elb: OnFirstUse<aws_sdk_elasticloadbalancingv2::Client>,
}

impl Clients {
    /// Clients on one configuration.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            ec2: OnFirstUse::client(config, aws_sdk_ec2::Client::new),
            eks: OnFirstUse::client(config, aws_sdk_eks::Client::new),
            elb: OnFirstUse::client(config, aws_sdk_elasticloadbalancingv2::Client::new),
        }
    }

    /// Clients on one configuration whose every request attempt `counter` counts.
    pub fn counted(config: &aws_config::SdkConfig, counter: &CallCounter) -> Self {
        // Each closure owns what it needs: the configuration is a handful of `Arc`s.
        let counted = |config: &aws_config::SdkConfig| (config.clone(), counter.clone());
        let (ec2, ec2_counter) = counted(config);
        let (eks, eks_counter) = counted(config);
        let (elb, elb_counter) = counted(config);
        Self {
            ec2: OnFirstUse::new(move || {
                aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(&ec2)
                        .interceptor(ec2_counter)
                        .build(),
                )
            }),
            eks: OnFirstUse::new(move || {
                aws_sdk_eks::Client::from_conf(
                    aws_sdk_eks::config::Builder::from(&eks)
                        .interceptor(eks_counter)
                        .build(),
                )
            }),
            elb: OnFirstUse::new(move || {
                aws_sdk_elasticloadbalancingv2::Client::from_conf(
                    aws_sdk_elasticloadbalancingv2::config::Builder::from(&elb)
                        .interceptor(elb_counter)
                        .build(),
                )
            }),
        }
    }
}

/// Clients per target, the home target's always present.
#[derive(Debug, Clone)]
pub struct ClientPool {
    home: Arc<Clients>,
    others: HashMap<Target, Arc<Clients>>,
}

impl ClientPool {
    /// A pool holding the home account and region's clients.
    pub fn new(home: Clients) -> Self {
        Self {
            home: Arc::new(home),
            others: HashMap::new(),
        }
    }

    /// The clients of the stack's own account and region.
    pub fn home(&self) -> &Clients {
        &self.home
    }

    /// Adds the clients of another target.
    pub fn insert(&mut self, target: Target, clients: Clients) {
        self.others.insert(target, Arc::new(clients));
    }

    /// The clients of `target`, if it was added.
    pub fn get(&self, target: &Target) -> Option<&Clients> {
        self.others.get(target).map(Arc::as_ref)
    }
}
