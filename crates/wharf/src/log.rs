//! Log output in runc's formats: logrus-style `text` or `json` lines, to
//! `--log` or stderr. containerd reads the last `"level":"error"` line of
//! the json log to report why the runtime failed.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `time="…" level=… msg="…"`.
    Text,
    /// `{"level":"…","msg":"…","time":"…"}`.
    Json,
}

/// Where log lines go.
pub struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("format", &self.format)
            .finish()
    }
}

impl Logger {
    /// Opens the log (appending to `path`, or stderr).
    pub fn open(path: Option<&Path>, format: LogFormat) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
            None => Box::new(std::io::stderr()),
        };
        Ok(Self {
            sink: Mutex::new(sink),
            format,
        })
    }

    /// Writes one line at `level`.
    pub fn line(&self, level: &str, msg: &str, fields: &[(String, String)]) {
        let time = humantime_now();
        let mut out = String::new();
        match self.format {
            LogFormat::Json => {
                let mut map = serde_json::Map::new();
                map.insert("level".into(), level.into());
                map.insert("msg".into(), msg.into());
                map.insert("time".into(), time.into());
                for (k, v) in fields {
                    map.insert(k.clone(), v.clone().into());
                }
                out.push_str(&serde_json::Value::Object(map).to_string());
            }
            LogFormat::Text => {
                let _ = write!(out, "time={time:?} level={level} msg={msg:?}");
                for (k, v) in fields {
                    let _ = write!(out, " {k}={v:?}");
                }
            }
        }
        out.push('\n');
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(out.as_bytes());
        }
    }
}

fn humantime_now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

struct LoggerLayer {
    logger: std::sync::Arc<Logger>,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push((field.name().to_owned(), value.to_owned()));
        }
    }
}

impl<S: Subscriber> Layer<S> for LoggerLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        self.logger.line(level, &fields.message, &fields.rest);
    }
}

/// Installs the logger for `tracing` events at `max` and above.
pub fn install(logger: std::sync::Arc<Logger>, max: Level) {
    let filter = tracing_subscriber::filter::LevelFilter::from_level(max);
    let _ = tracing_subscriber::registry()
        .with(LoggerLayer { logger }.with_filter(filter))
        .try_init();
}
