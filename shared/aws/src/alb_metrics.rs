//! A canary's figures on AWS: what the load balancer measured for one target group over an
//! interval, from CloudWatch's `AWS/ApplicationELB` metrics with `GetMetricData` — requests
//! and 5xx answers summed, and the 99th-percentile response time. A period without data is
//! zero requests, which the analysis calls inconclusive, never a pass.

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use envplane_cloud::CloudError;
use envplane_domain::canary::Metrics;

use crate::OnFirstUse;
use crate::errors::cloud_error;

/// Reads target groups' figures.
#[derive(Debug, Clone)]
pub struct AlbMetrics {
    cloudwatch: OnFirstUse<Client>,
}

/// Which target group, by the dimension values CloudWatch uses (`app/{name}/{id}` and
/// `targetgroup/{name}/{id}`: the ARNs' last parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupDimensions {
    /// `LoadBalancer` dimension.
    pub load_balancer: String,
    /// `TargetGroup` dimension.
    pub target_group: String,
}

impl TargetGroupDimensions {
    /// From the load balancer's and the target group's ARNs.
    pub fn from_arns(load_balancer_arn: &str, target_group_arn: &str) -> Option<Self> {
        let after =
            |arn: &str, marker: &str| arn.split_once(marker).map(|(_, rest)| rest.to_owned());
        Some(Self {
            load_balancer: after(load_balancer_arn, ":loadbalancer/")?,
            target_group: after(target_group_arn, ":")
                .and_then(|rest| rest.rsplit(':').next().map(str::to_owned))
                .filter(|r| r.starts_with("targetgroup/"))?,
        })
    }
}

fn query(
    id: &str,
    metric: &str,
    stat: &str,
    on: &TargetGroupDimensions,
    period: i32,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace("AWS/ApplicationELB")
        .metric_name(metric)
        .dimensions(
            Dimension::builder()
                .name("LoadBalancer")
                .value(&on.load_balancer)
                .build(),
        )
        .dimensions(
            Dimension::builder()
                .name("TargetGroup")
                .value(&on.target_group)
                .build(),
        )
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

impl AlbMetrics {
    /// A reader over a CloudWatch client.
    pub fn new(cloudwatch: impl Into<OnFirstUse<Client>>) -> Self {
        Self {
            cloudwatch: cloudwatch.into(),
        }
    }

    async fn values(
        &self,
        queries: Vec<MetricDataQuery>,
        start: DateTime,
        end: DateTime,
    ) -> Result<Vec<(String, Vec<f64>)>, CloudError> {
        let mut out = Vec::new();
        let mut pages = self
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(start)
            .end_time(end)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| cloud_error("GetMetricData", e))?;
            for result in page.metric_data_results() {
                out.push((
                    result.id().unwrap_or_default().to_owned(),
                    result.values().to_vec(),
                ));
            }
        }
        Ok(out)
    }

    /// Requests and 5xx answers of `on` between `start` and `end`, summed.
    pub async fn counts(
        &self,
        on: &TargetGroupDimensions,
        start: DateTime,
        end: DateTime,
        period: i32,
    ) -> Result<(u64, u64), CloudError> {
        let values = self
            .values(
                vec![
                    query("requests", "RequestCount", "Sum", on, period),
                    query("errors", "HTTPCode_Target_5XX_Count", "Sum", on, period),
                ],
                start,
                end,
            )
            .await?;
        let sum = |id: &str| -> u64 {
            values
                .iter()
                .filter(|(i, _)| i == id)
                .flat_map(|(_, v)| v.iter())
                .sum::<f64>()
                .max(0.0)
                .round() as u64
        };
        Ok((sum("requests"), sum("errors")))
    }

    /// The 99th-percentile response time of `on`, milliseconds (CloudWatch reports seconds);
    /// `None` when nothing was measured. The worst period's when the interval spans several.
    pub async fn p99_ms(
        &self,
        on: &TargetGroupDimensions,
        start: DateTime,
        end: DateTime,
        period: i32,
    ) -> Result<Option<f64>, CloudError> {
        let values = self
            .values(
                vec![query("p99", "TargetResponseTime", "p99", on, period)],
                start,
                end,
            )
            .await?;
        Ok(values
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .reduce(f64::max)
            .map(|seconds| seconds * 1000.0))
    }

    /// The interval's figures, as the canary analysis reads them.
    pub async fn interval(
        &self,
        on: &TargetGroupDimensions,
        start: DateTime,
        end: DateTime,
        period: i32,
    ) -> Result<Metrics, CloudError> {
        let (requests, errors) = self.counts(on, start, end, period).await?;
        let p99_ms = self.p99_ms(on, start, end, period).await?;
        Ok(Metrics {
            requests,
            errors,
            p99_ms,
        })
    }
}
