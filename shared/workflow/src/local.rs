//! The local adapter of the workflow port: the shipped definitions run in-process by the
//! executor, each execution's progress kept in a file so that a restarted `envplane serve`
//! resumes it from its last top-level state (every step being idempotent, repeating that one
//! state is safe).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use envplane_domain::EnvName;
use envplane_domain::operation::{OperationStatus, OperationStep};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::executor::{EventKind, HistoryEvent, Observer};
use crate::{Executor, Flow, StateMachine, WorkflowError, Workflows, execution_input};

/// What is kept of one execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecutionRecord {
    flow: Flow,
    environment: String,
    operation: String,
    status: String,
    checkpoint: Option<(String, Value)>,
    /// The workflow variables at the checkpoint.
    #[serde(default)]
    variables: serde_json::Map<String, Value>,
    steps: Vec<OperationStep>,
    error: Option<String>,
    cause: Option<String>,
    transitions: usize,
}

/// Runs flows in this process.
pub struct LocalWorkflows {
    executor: Executor,
    definitions: BTreeMap<Flow, StateMachine>,
    dir: PathBuf,
    /// Executions running in this process, with the handle that stops each.
    running: Arc<Mutex<HashMap<String, Option<tokio::task::JoinHandle<()>>>>>,
    /// The records of the executions running here, as they are now: steps are saved to disk
    /// only at checkpoints, but shown as they happen.
    live: Arc<Mutex<HashMap<String, Arc<Recorder>>>>,
}

fn io(error: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Unavailable(error.to_string())
}

struct Recorder {
    path: PathBuf,
    record: Mutex<ExecutionRecord>,
}

impl Recorder {
    fn save(&self) {
        let Ok(record) = self.record.lock() else {
            return;
        };
        if let Err(e) = write_atomically(&self.path, &record) {
            tracing::error!(error = %e, path = %self.path.display(), "cannot save execution progress");
        }
    }
}

fn write_atomically(path: &Path, record: &ExecutionRecord) -> Result<(), WorkflowError> {
    let json = serde_json::to_vec_pretty(record).map_err(io)?;
    replace_durably(path, &json).map_err(io)
}

/// Replaces `path` with `bytes` so that a crash or a power cut leaves the old content or the
/// new, never half of one, and never loses a replacement already answered for: the new file
/// is written and flushed to disk, renamed over the old (atomic), and the rename flushed.
fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Observer for Recorder {
    fn checkpoint(&self, state: &str, input: &Value, variables: &serde_json::Map<String, Value>) {
        if let Ok(mut record) = self.record.lock() {
            record.checkpoint = Some((state.to_owned(), input.clone()));
            record.variables = variables.clone();
        }
        self.save();
    }

    fn event(&self, event: &HistoryEvent) {
        let Ok(mut record) = self.record.lock() else {
            return;
        };
        if matches!(event.kind, EventKind::StateEntered) {
            record.transitions += 1;
        }
        let mut steps = crate::Steps::from_recorded(std::mem::take(&mut record.steps));
        steps.apply(event);
        record.steps = steps.into_vec();
    }
}

impl LocalWorkflows {
    /// Loads the shipped definitions and keeps execution records under `dir`.
    pub fn new(executor: Executor, dir: &Path) -> Result<Self, WorkflowError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut definitions = BTreeMap::new();
        for flow in Flow::ALL {
            definitions.insert(
                flow,
                flow.local_definition()
                    .map_err(|e| WorkflowError::Invalid(e.to_string()))?,
            );
        }
        Ok(Self {
            executor,
            definitions,
            dir: dir.to_owned(),
            running: Arc::new(Mutex::new(HashMap::new())),
            live: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn path(&self, operation: &str) -> PathBuf {
        self.dir.join(format!("{operation}.json"))
    }

    fn read(&self, operation: &str) -> Option<ExecutionRecord> {
        let bytes = std::fs::read(self.path(operation)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn spawn(&self, record: ExecutionRecord) {
        let Some(machine) = self.definitions.get(&record.flow).cloned() else {
            return;
        };
        if let Ok(mut running) = self.running.lock() {
            if running.contains_key(&record.operation) {
                return;
            }
            running.insert(record.operation.clone(), None);
        }
        let variables = record.variables.clone();
        let (input, resume_at) = match &record.checkpoint {
            Some((state, input)) => (input.clone(), Some(state.clone())),
            None => match EnvName::parse(&record.environment) {
                Ok(env) => (execution_input(&env, &record.operation), None),
                Err(_) => return,
            },
        };
        let recorder = Arc::new(Recorder {
            path: self.path(&record.operation),
            record: Mutex::new(record.clone()),
        });
        recorder.save();
        if let Ok(mut live) = self.live.lock() {
            live.insert(record.operation.clone(), recorder.clone());
        }
        let (executor, running, live) = (
            self.executor.clone(),
            self.running.clone(),
            self.live.clone(),
        );
        let operation = record.operation.clone();
        let task = tokio::spawn(async move {
            let operation = record.operation.clone();
            tracing::info!(%operation, flow = ?record.flow, resume_at = ?resume_at, "execution started");
            let outcome = executor
                .execute_with(
                    &machine,
                    input,
                    &operation,
                    resume_at.as_deref(),
                    variables,
                    recorder.clone(),
                )
                .await;
            if let Ok(mut r) = recorder.record.lock() {
                r.status = outcome.status.to_owned();
                r.error = outcome.error.clone();
                r.cause = outcome.cause.clone();
                // A Fail or Succeed state is entered and never left: once the execution has
                // ended, no step of it is still running.
                let status = if outcome.status == "SUCCEEDED" {
                    OperationStatus::Succeeded
                } else {
                    OperationStatus::Failed
                };
                let mut steps = crate::Steps::from_recorded(std::mem::take(&mut r.steps));
                steps.ended(status, outcome.history.last().map(|e| e.at));
                r.steps = steps.into_vec();
            }
            recorder.save();
            tracing::info!(%operation, status = outcome.status, error = ?outcome.error, "execution ended");
            if let Ok(mut running) = running.lock() {
                running.remove(&operation);
            }
            if let Ok(mut live) = live.lock() {
                live.remove(&operation);
            }
        });
        if let Ok(mut running) = self.running.lock()
            && let Some(slot) = running.get_mut(&operation)
        {
            *slot = Some(task);
        }
    }

    /// Resumes every execution that was running when the process stopped; returns how many.
    pub fn resume_all(&self) -> Result<usize, WorkflowError> {
        let mut resumed = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ExecutionRecord>(&b).ok())
            else {
                continue;
            };
            if record.status == "RUNNING" {
                self.spawn(record);
                resumed += 1;
            }
        }
        Ok(resumed)
    }
}

#[async_trait]
impl Workflows for LocalWorkflows {
    async fn start(
        &self,
        flow: Flow,
        environment: &EnvName,
        operation: &str,
    ) -> Result<(), WorkflowError> {
        // The operation id names the execution: a second start of the same operation is a no-op.
        if self.read(operation).is_some() {
            return Ok(());
        }
        self.spawn(ExecutionRecord {
            flow,
            environment: environment.to_string(),
            operation: operation.to_owned(),
            status: "RUNNING".into(),
            checkpoint: None,
            variables: serde_json::Map::new(),
            steps: Vec::new(),
            error: None,
            cause: None,
            transitions: 0,
        });
        Ok(())
    }

    async fn send_task_success(&self, token: &str, output: Value) -> Result<(), WorkflowError> {
        self.executor
            .send_task_success(token, output)
            .map_err(|_| WorkflowError::UnknownToken(token.to_owned()))
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), WorkflowError> {
        self.executor
            .send_task_failure(token, error, cause)
            .map_err(|_| WorkflowError::UnknownToken(token.to_owned()))
    }

    async fn steps(
        &self,
        _flow: Flow,
        operation: &str,
    ) -> Result<Option<Vec<OperationStep>>, WorkflowError> {
        let live = self
            .live
            .lock()
            .ok()
            .and_then(|live| live.get(operation).cloned());
        if let Some(recorder) = live
            && let Ok(record) = recorder.record.lock()
        {
            return Ok(Some(record.steps.clone()));
        }
        Ok(self.read(operation).map(|r| r.steps))
    }

    async fn stop(&self, _flow: Flow, operation: &str, cause: &str) -> Result<(), WorkflowError> {
        let handle = self
            .running
            .lock()
            .map_err(|_| io("execution table poisoned"))?
            .remove(operation)
            .flatten();
        if let Some(handle) = handle {
            handle.abort();
            // Wait until it has stopped: nothing of it may write after the record below.
            let _ = handle.await;
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(operation);
        }
        // Recorded as stopped, so that a restart does not resume it.
        match self.read(operation) {
            Some(mut record) if record.status == "RUNNING" => {
                record.status = "ABORTED".into();
                record.error = Some("Envplane.Cancelled".into());
                record.cause = Some(cause.to_owned());
                for step in record.steps.iter_mut().filter(|s| s.ended_at.is_none()) {
                    step.status = OperationStatus::Cancelled;
                }
                write_atomically(&self.path(operation), &record)
            }
            _ => Ok(()),
        }
    }
}
