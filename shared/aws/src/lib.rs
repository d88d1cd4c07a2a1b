//! AWS adapters of envplane's ports: [`AwsCloud`] creates, finds (by tags) and deletes an
//! environment's resources through EC2, EKS and ELBv2; [`StepFunctions`] starts and follows
//! the flows on AWS Step Functions; [`SnsPublisher`] publishes domain events to SNS;
//! [`AwsDatabases`] restores the environments' databases (EC2, SSM Run Command, Route 53).
#![forbid(unsafe_code)]

mod alb_metrics;
mod cloud;
mod databases;
mod errors;
mod lazy;
mod metering;
mod sfn;
mod sns;
mod traffic;
mod weights;

pub use alb_metrics::{AlbMetrics, TargetGroupDimensions};
pub use cloud::{AwsCloud, AwsSettings, ClientPool, Clients, Target};
pub use databases::{AwsDatabases, DatabaseClients, RESTORE_TAG};
pub use lazy::OnFirstUse;
pub use metering::CallCounter;
pub use sfn::{StepFunctions, state_machines_from_env};
pub use sns::SnsPublisher;
pub use traffic::AwsTraffic;
pub use weights::ListenerWeights;
