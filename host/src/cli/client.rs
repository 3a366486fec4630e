//! The client side of the HTTP API, shared by the operator verbs (`kefu
//! deploy`, `versions`, `rollback`, `decisions`, `revisits`, `audit`):
//! where the server is, which credential to send (never printed), one
//! request, its answer or the error the API named, and the exit codes:
//! 0 done, 2 bad usage, 3 refused by the server, 4 server unreachable.

use clap::Args;
use serde_json::Value;
use std::process::ExitCode;

/// Where the server is and who is asking.
#[derive(Args, Clone)]
pub struct Connection {
    /// The kefu server.
    #[arg(long, env = "KEFU_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A shop's API key (shop operations).
    #[arg(long, env = "KEFU_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The admin token (deploys, versions, rollbacks, the audit; shop
    /// operations too).
    #[arg(long, env = "KEFU_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which credential an operation takes.
#[derive(Clone, Copy)]
pub enum Needs {
    Admin,
    /// The shop's key, or the admin token.
    Shop,
}

/// Why a verb did not get its answer, with its exit code.
pub enum Failure {
    Usage(String),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    Unreachable(String),
}

impl Failure {
    /// Why, in words.
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(m) => m.clone(),
            Failure::Refused {
                status,
                code,
                message,
            } => format!("refused ({status} {code}): {message}"),
            Failure::Unreachable(m) => format!("cannot reach the server: {m}"),
        }
    }

    /// Say why on stderr and give the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                ExitCode::from(2)
            }
            Failure::Refused {
                status,
                code,
                message,
            } => {
                eprintln!("refused ({status} {code}): {message}");
                ExitCode::from(3)
            }
            Failure::Unreachable(m) => {
                eprintln!("cannot reach the server: {m}");
                ExitCode::from(4)
            }
        }
    }
}

/// A request body: its content type and bytes.
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Body {
    /// A `multipart/form-data` body of (field name, file name, content
    /// type, bytes) parts.
    pub fn multipart(parts: &[(&str, &str, &str, Vec<u8>)]) -> Body {
        let boundary = "kefu-cli-7f3c9a1d5b";
        let mut bytes = Vec::new();
        for (name, file, kind, content) in parts {
            bytes.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: {kind}\r\n\r\n"
                )
                .as_bytes(),
            );
            bytes.extend_from_slice(content);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Body {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            bytes,
        }
    }
}

impl Connection {
    /// The server at `server`, asked with the admin token.
    pub fn admin(server: &str, admin_token: Option<String>) -> Connection {
        Connection {
            server: server.to_string(),
            key: None,
            admin_token,
            json: false,
        }
    }

    fn credential(&self, needs: Needs) -> Result<&str, Failure> {
        let found = match needs {
            Needs::Admin => self.admin_token.as_deref(),
            Needs::Shop => self.key.as_deref().or(self.admin_token.as_deref()),
        };
        found.ok_or_else(|| {
            Failure::Usage(match needs {
                Needs::Admin => {
                    "this needs the admin token: --admin-token or KEFU_ADMIN_TOKEN".into()
                }
                Needs::Shop => {
                    "this needs the shop's key (--key or KEFU_KEY) or the admin token".into()
                }
            })
        })
    }

    /// One request; the answer's JSON, or why there is none.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        needs: Needs,
        body: Option<Body>,
    ) -> Result<Value, Failure> {
        let credential = self.credential(needs)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .into();
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let auth = format!("Bearer {credential}");
        let sent = match (method, body) {
            ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
            (_, Some(body)) => agent
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", &body.content_type)
                .send(&body.bytes[..]),
            (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
        };
        let mut response = sent.map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(Failure::Refused {
            status,
            code: value["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            message: value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string()),
        })
    }
}

/// Print rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A JSON value as a table cell.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Unix milliseconds as a UTC time.
pub fn time_ms(value: &Value) -> String {
    value
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Print the JSON answer when asked for it, else run `print`.
pub fn show(conn: &Connection, answer: &Value, print: impl FnOnce(&Value)) {
    if conn.json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
    } else {
        print(answer);
    }
}

/// A list verb: GET `path`, then the JSON, or a table of the answer's
/// `items` array with `header` and one row per item.
pub fn list(
    conn: &Connection,
    path: &str,
    needs: Needs,
    items: &str,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> ExitCode {
    match conn.call("GET", path, needs, None) {
        Ok(answer) => {
            show(conn, &answer, |a| {
                let rows: Vec<Vec<String>> = a[items]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(&row)
                    .collect();
                table(header, &rows);
            });
            ExitCode::SUCCESS
        }
        Err(f) => f.report(),
    }
}
