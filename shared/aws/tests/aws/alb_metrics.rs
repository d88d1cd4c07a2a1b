//! A canary's figures on AWS: CloudWatch's `AWS/ApplicationELB` metrics of a target group, at
//! the SDK level (aws-smithy-mocks): the current CloudWatch SDK speaks Smithy RPC v2 CBOR,
//! which moto 5.2.5's server does not serve (`POST /service/GraniteServiceVersion20100801/
//! operation/PutMetricData` answers 404), so no moto test is possible with this SDK.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::MetricDataResult;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use envplane_aws::{AlbMetrics, TargetGroupDimensions};
use envplane_domain::Tier;
use envplane_domain::canary::{CanaryPolicy, Verdict, analyse};

fn dimensions() -> TargetGroupDimensions {
    let suffix = ulid::Ulid::new().to_string().to_lowercase();
    TargetGroupDimensions::from_arns(
        &format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/prod-alb/{suffix}"),
        &format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/prod-frontend-c/{suffix}"),
    )
    .unwrap()
}

#[test]
fn dimensions_are_the_arns_last_parts() {
    let d = TargetGroupDimensions::from_arns(
        "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/a/50dc6c495c0c9188",
        "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg/73e2d6bc24d8a067",
    )
    .unwrap();
    assert_eq!(d.load_balancer, "app/a/50dc6c495c0c9188");
    assert_eq!(d.target_group, "targetgroup/tg/73e2d6bc24d8a067");
    assert!(TargetGroupDimensions::from_arns("nonsense", "also").is_none());
}

#[tokio::test]
async fn a_period_without_data_is_no_requests_and_judged_inconclusive() {
    let empty = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(|| {
        GetMetricDataOutput::builder()
            .metric_data_results(MetricDataResult::builder().id("requests").build())
            .metric_data_results(MetricDataResult::builder().id("errors").build())
            .build()
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&empty]);
    let figures = AlbMetrics::new(client)
        .interval(
            &dimensions(),
            DateTime::from_secs(1_800_000_000 - 60),
            DateTime::from_secs(1_800_000_000),
            60,
        )
        .await
        .unwrap();
    assert_eq!(
        (figures.requests, figures.errors, figures.p99_ms),
        (0, 0, None)
    );
    let judged = analyse(5, figures, &CanaryPolicy::for_tier(Tier::Prod));
    assert_eq!(
        judged.verdict,
        Verdict::Inconclusive,
        "missing data never promotes"
    );
}

#[tokio::test]
async fn the_interval_takes_the_worst_p99_in_milliseconds() {
    let sums = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| {
            r.metric_data_queries()
                .iter()
                .all(|q| q.metric_stat().and_then(|s| s.stat()) == Some("Sum"))
        })
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        .id("requests")
                        .values(100.0)
                        .values(50.0)
                        .build(),
                )
                .metric_data_results(MetricDataResult::builder().id("errors").values(1.0).build())
                .build()
        });
    let p99 = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| {
            r.metric_data_queries().iter().any(|q| {
                q.metric_stat().and_then(|s| s.stat()) == Some("p99")
                    && q.metric_stat()
                        .and_then(|s| s.metric())
                        .and_then(|m| m.metric_name())
                        == Some("TargetResponseTime")
            })
        })
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        .id("p99")
                        .values(0.42)
                        .values(0.61)
                        .build(),
                )
                .build()
        });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&sums, &p99]);
    let on = dimensions();
    let now = DateTime::from_secs(1_800_000_000);
    let figures = AlbMetrics::new(client)
        .interval(&on, DateTime::from_secs(1_800_000_000 - 60), now, 60)
        .await
        .unwrap();
    assert_eq!((figures.requests, figures.errors), (150, 1));
    assert!(
        (figures.p99_ms.unwrap() - 610.0).abs() < 1e-9,
        "{figures:?}"
    );
    assert_eq!((sums.num_calls(), p99.num_calls()), (1, 1));
}
