//! CloudWatch embedded metric format: each metric event (target [`METRICS`]) becomes one JSON
//! line on stdout that CloudWatch Logs turns into a metric in the `envplane` namespace, its
//! other fields the dimensions. The JSON log layer leaves those events out.

use std::collections::BTreeMap;
use std::io::Write;

use envplane_cloud::METRICS;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// The namespace of every envplane metric.
pub const NAMESPACE: &str = "envplane";

/// The fields of one metric event.
#[derive(Default)]
struct Fields(BTreeMap<String, Value>);

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), json!(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), json!(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), json!(format!("{value:?}")));
    }
}

/// The EMF document of a metric event's fields, at `timestamp_ms`; `None` when it names no
/// metric or value.
pub fn document(fields: BTreeMap<String, Value>, timestamp_ms: u128) -> Option<Value> {
    let mut fields = fields;
    let name = fields.remove("metric")?.as_str()?.to_owned();
    let value = fields.remove("value")?;
    let unit = fields
        .remove("unit")
        .and_then(|u| u.as_str().map(str::to_owned))
        .unwrap_or_else(|| "None".to_owned());
    fields.remove("message");
    let dimensions: Vec<&String> = fields.keys().collect();
    let mut out = json!({
        "_aws": {
            "Timestamp": u64::try_from(timestamp_ms).unwrap_or(u64::MAX),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
    });
    for (key, field) in &fields {
        out[key] = field.clone();
    }
    out[name] = value;
    Some(out)
}

/// Writes metric events as EMF lines.
pub struct EmfLayer;

impl<S: tracing::Subscriber> Layer<S> for EmfLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != METRICS {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        if let Some(line) = document(fields.0, now) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_event_becomes_an_emf_document_with_its_dimensions() {
        let fields = BTreeMap::from([
            ("metric".to_owned(), json!("OperationsFailed")),
            ("value".to_owned(), json!(1)),
            ("unit".to_owned(), json!("Count")),
            ("kind".to_owned(), json!("create")),
            ("tier".to_owned(), json!("prod")),
        ]);
        let doc = document(fields, 1_795_550_400_000).expect("a metric");
        assert_eq!(
            doc,
            json!({
                "_aws": {
                    "Timestamp": 1_795_550_400_000u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "envplane",
                        "Dimensions": [["kind", "tier"]],
                        "Metrics": [{"Name": "OperationsFailed", "Unit": "Count"}],
                    }],
                },
                "kind": "create",
                "tier": "prod",
                "OperationsFailed": 1,
            })
        );
        assert!(document(BTreeMap::from([("value".to_owned(), json!(1))]), 0).is_none());
    }
}
