//! One request with its headers and body, retried where that is safe.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Client, ClientError};

/// A successful answer.
pub(crate) struct Reply<T> {
    pub(crate) value: T,
    pub(crate) status: u16,
    pub(crate) etag: Option<String>,
}

/// A request being built.
pub(crate) struct Call<'a> {
    client: &'a Client,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'a Value>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(client: &'a Client, method: Method, path: String) -> Self {
        Self {
            client,
            method,
            path,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub(crate) fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The answer as `T`.
    pub(crate) async fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        self.reply().await.map(|r| r.value)
    }

    /// The answer to a mutation.
    pub(crate) async fn accepted(self) -> Result<crate::Accepted, ClientError> {
        let reply = self.reply().await?;
        Ok(crate::Accepted {
            status: reply.status,
            response: reply.value,
        })
    }

    /// The answer as `T`, with its status and ETag.
    pub(crate) async fn reply<T: DeserializeOwned>(self) -> Result<Reply<T>, ClientError> {
        let what = format!("{} {}", self.method, self.path);
        let (status, etag, text) = self.send().await?;
        if !status.is_success() {
            return Err(match serde_json::from_str(&text) {
                Ok(problem) => ClientError::Problem {
                    status: status.as_u16(),
                    problem: Box::new(problem),
                },
                Err(_) => ClientError::Status {
                    status: status.as_u16(),
                    body: text,
                },
            });
        }
        let value = serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            what,
            message: e.to_string(),
        })?;
        Ok(Reply {
            value,
            status: status.as_u16(),
            etag,
        })
    }

    /// Sends the request; reads and keyed mutations are retried on transport errors and 5xx,
    /// which the key makes safe.
    async fn send(self) -> Result<(StatusCode, Option<String>, String), ClientError> {
        let url = format!("{}{}", self.client.endpoint, self.path);
        let retries = if self.method == Method::GET
            || self.headers.iter().any(|(h, _)| *h == "idempotency-key")
        {
            3
        } else {
            1
        };
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut last = None;
        for attempt in 0..retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 * 2u64.pow(attempt))).await;
            }
            let mut request = self.client.http.request(self.method.clone(), &url);
            if let Some(token) = &self.client.token {
                request = request.bearer_auth(token);
            }
            for (name, value) in &self.headers {
                request = request.header(*name, value);
            }
            if let Some(body) = self.body {
                let content_type = if self.method == Method::PATCH {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                };
                request = request
                    .header("content-type", content_type)
                    .body(body.to_string());
            }
            match request.send().await {
                Ok(response) if response.status().is_server_error() && attempt + 1 < retries => {
                    last = Some(ClientError::Status {
                        status: response.status().as_u16(),
                        body: format!("{url} answered {}", response.status()),
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    let etag = response
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = response.text().await.map_err(transport)?;
                    return Ok((status, etag, text));
                }
                Err(e) => last = Some(transport(e)),
            }
        }
        Err(last.unwrap_or(ClientError::Transport {
            url,
            message: "no attempt made".into(),
        }))
    }
}
