//! What the user sees: progress and step lines on stderr, results on stdout (text or JSON).

use super::out::{self, errln, out, outln};
use super::Output;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kmsflow::bench::RuntimeFigures;
use kmsflow::wit::types::{Action as WitAction, Param, Value};
use kmsflow::{Event, LogLevel, LogSource, Plugin, RunReport};
use serde_json::{json, Value as Json};
use std::sync::Mutex;
use std::time::Duration;

fn value_json(v: &Value) -> Json {
    match v {
        Value::Text(s) => json!(s),
        Value::Integer(i) => json!(i),
        Value::Flag(b) => json!(b),
        Value::TextList(l) => json!(l),
    }
}

fn value_text(v: &Value) -> String {
    value_json(v).to_string()
}

fn params_json(params: &[Param]) -> Json {
    Json::Object(params.iter().map(|p| (p.name.clone(), value_json(&p.value))).collect())
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Renders a run's events as they arrive.
pub struct RunRenderer {
    output: Output,
    bar: Mutex<Option<ProgressBar>>,
}

impl RunRenderer {
    pub fn new(output: Output) -> Self {
        RunRenderer {
            output,
            bar: Mutex::new(None),
        }
    }

    fn line(&self, text: &str) {
        match self.bar.lock().ok().as_ref().and_then(|b| b.as_ref()) {
            Some(bar) => bar.suspend(|| errln!("{text}")),
            None => errln!("{text}"),
        }
    }

    /// The run id comes first, so an interrupted run can always be found again.
    pub fn started(&self, run_id: &str, pipeline: &str) {
        if self.output == Output::Text {
            outln!("run {run_id} ({pipeline})");
        }
    }

    pub fn event(&self, event: &Event) {
        match event {
            Event::StepStarted { step, plugin, sha256 } => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{step} ({plugin} {})", &sha256[..12.min(sha256.len())]));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut slot) = self.bar.lock() {
                    *slot = Some(bar);
                }
            }
            Event::Log {
                step,
                level,
                source,
                message,
            } => {
                let tag = match (source, level) {
                    (LogSource::Stdout, _) => "stdout",
                    (LogSource::Stderr, _) => "stderr",
                    (_, LogLevel::Error) => "error",
                    (_, LogLevel::Warn) => "warn",
                    (_, LogLevel::Info) => "info",
                    (_, LogLevel::Debug | LogLevel::Trace) => return,
                };
                self.line(&format!("  {step} [{tag}] {message}"));
            }
            Event::Progress { label, done, total, .. } => {
                if let Some(bar) = self.bar.lock().ok().as_ref().and_then(|b| b.as_ref()) {
                    match total {
                        Some(t) => bar.set_message(format!("{label} {done}/{t}")),
                        // A notice (what a call waits for) has no count.
                        None if *done == 0 => bar.set_message(label.clone()),
                        None => bar.set_message(format!("{label} {done}")),
                    }
                }
            }
            Event::CallDenied {
                step,
                call,
                action,
                resource,
            } => {
                self.line(&format!("  {step} [denied] {call}: no `{action}` grant on {resource}"));
            }
            Event::Call { .. } => {}
            Event::StepSkipped { step, condition } => {
                self.line(&format!("- {step} skipped: `{condition}` does not hold"));
            }
            Event::StepResumed { step } => {
                self.line(&format!("✔ {step} (finished before the resume)"));
            }
            Event::StepFinished {
                step,
                ok,
                duration,
                reason,
                ..
            } => {
                if let Some(bar) = self.bar.lock().ok().and_then(|mut b| b.take()) {
                    bar.finish_and_clear();
                }
                match (ok, reason) {
                    (true, _) => self.line(&format!("✔ {step} ({})", secs(*duration))),
                    (false, reason) => self.line(&format!(
                        "✘ {step} ({}): {}",
                        secs(*duration),
                        reason.as_deref().unwrap_or("failed")
                    )),
                }
            }
        }
    }

    pub fn finished(&self, report: &RunReport) {
        match self.output {
            Output::Json => {
                let steps: Vec<Json> = report
                    .steps
                    .iter()
                    .map(|s| {
                        let mut v = json!({
                            "id": s.id, "plugin": s.plugin, "sha256": s.sha256,
                            "duration_ms": s.duration.as_millis() as u64,
                        });
                        match &s.outcome {
                            Ok(outputs) => {
                                v["status"] = json!("succeeded");
                                v["outputs"] = params_json(outputs);
                            }
                            Err(e) => {
                                v["status"] = json!("failed");
                                v["error"] = json!(e.to_string());
                            }
                        }
                        v
                    })
                    .collect();
                let doc = json!({
                    "run_id": report.run_id,
                    "pipeline": report.pipeline,
                    "status": if report.succeeded() { "succeeded" } else { "failed" },
                    "steps": steps,
                });
                out::json(&doc);
            }
            Output::Text => {
                for step in &report.steps {
                    if let Ok(outputs) = &step.outcome {
                        for p in outputs {
                            match &p.value {
                                // A table or report: its lines as they are, indented.
                                Value::Text(t) if t.contains('\n') => {
                                    outln!("{}.{} =", step.id, p.name);
                                    for line in t.lines() {
                                        outln!("    {line}");
                                    }
                                }
                                v => outln!("{}.{} = {}", step.id, p.name, value_text(v)),
                            }
                        }
                    }
                }
                match report.failure() {
                    None => outln!("run {} succeeded: {} step(s)", report.run_id, report.steps.len()),
                    Some(f) => {
                        if let Err(e) = &f.outcome {
                            outln!("run {} failed: step `{}` {}", report.run_id, f.id, e);
                        }
                    }
                }
            }
        }
    }
}

fn action_name(a: WitAction) -> &'static str {
    match a {
        WitAction::Read => "read",
        WitAction::Write => "write",
        WitAction::Keys => "keys",
        WitAction::Roles => "roles",
        WitAction::Kms => "kms",
        WitAction::Upgrade => "upgrade",
        WitAction::SecretsRewrite => "secrets.rewrite",
    }
}

pub fn plugin_list(output: Output, plugins: &[std::sync::Arc<Plugin>]) {
    match output {
        Output::Json => {
            let list: Vec<Json> = plugins
                .iter()
                .map(|p| json!({"name": p.name(), "version": p.info().version, "sha256": p.sha256(), "description": p.info().description}))
                .collect();
            out::json(&list);
        }
        Output::Text => {
            let width = plugins.iter().map(|p| p.name().len()).max().unwrap_or(0);
            for p in plugins {
                outln!(
                    "{:width$}  {:8}  {}  {}",
                    p.name(),
                    p.info().version,
                    p.sha256(),
                    p.info().description
                );
            }
        }
    }
}

pub fn plugin_describe(output: Output, plugin: &Plugin) {
    let info = plugin.info();
    let spec_json = |specs: &[kmsflow::wit::types::ParamSpec]| -> Vec<Json> {
        specs
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "type": kmsflow::wit_type_name(s.type_), "required": s.required,
                    "default": s.default.as_ref().map(value_json), "description": s.description,
                })
            })
            .collect()
    };
    match output {
        Output::Json => {
            let doc = json!({
                "name": plugin.name(), "version": info.version, "sha256": plugin.sha256(),
                "description": info.description,
                "params": spec_json(&info.params), "outputs": spec_json(&info.outputs),
                "grants": info.grants.iter().map(|g| json!({"action": action_name(g.action), "description": g.description})).collect::<Vec<_>>(),
            });
            out::json(&doc);
        }
        Output::Text => {
            outln!("{} {}  sha256:{}", plugin.name(), info.version, plugin.sha256());
            outln!("{}", info.description);
            outln!("\nparameters:");
            if info.params.is_empty() {
                outln!("  (none)");
            }
            for s in &info.params {
                let req = match (&s.default, s.required) {
                    (Some(d), _) => format!("default {}", value_text(d)),
                    (None, true) => "required".to_string(),
                    (None, false) => "optional".to_string(),
                };
                outln!(
                    "  {} ({}, {})  {}",
                    s.name,
                    kmsflow::wit_type_name(s.type_),
                    req,
                    s.description
                );
            }
            if !info.outputs.is_empty() {
                outln!("\noutputs:");
                for s in &info.outputs {
                    outln!("  {} ({})  {}", s.name, kmsflow::wit_type_name(s.type_), s.description);
                }
            }
            outln!("\ngrants:");
            if info.grants.is_empty() {
                outln!("  (none: this plugin makes no cloud calls)");
            }
            for g in &info.grants {
                outln!("  {}  {}", action_name(g.action), g.description);
            }
        }
    }
}

pub fn bench(output: Output, f: &RuntimeFigures) {
    match output {
        Output::Json => out::json(&f.to_json()),
        Output::Text => out!("{f}"),
    }
}

/// `kmsflow validate`: what would run.
pub fn validated(output: Output, pipeline: &kmsflow::Pipeline, prepared: &[kmsflow::PreparedStep]) {
    match output {
        Output::Json => {
            let steps: Vec<Json> = prepared
                .iter()
                .map(|p| json!({"id": p.spec.id, "plugin": p.plugin.name(), "sha256": p.plugin.sha256()}))
                .collect();
            let vars: serde_json::Map<String, Json> = pipeline
                .values
                .iter()
                .filter_map(|(k, v)| serde_json::to_value(v).ok().map(|v| (k.clone(), v)))
                .collect();
            let unknown: Vec<&String> = pipeline.unknown.keys().collect();
            let doc = json!({"pipeline": pipeline.name, "valid": true, "sha256": pipeline.sha256, "vars": vars,
                "unknown": unknown, "steps": steps});
            out::json(&doc);
        }
        Output::Text => {
            outln!(
                "{}: valid, {} step(s), {} file(s)",
                pipeline.name,
                prepared.len(),
                pipeline.files.len()
            );
            for p in prepared {
                outln!(
                    "  {} uses {} ({})",
                    p.spec.id,
                    p.plugin.name(),
                    &p.plugin.sha256()[..12]
                );
            }
            if !pipeline.unknown.is_empty() {
                let names: Vec<&str> = pipeline.unknown.keys().map(String::as_str).collect();
                outln!("  unknown until run (checked by type only): {}", names.join(", "));
            }
        }
    }
}

/// `kmsflow workflows list`.
pub fn workflows(output: Output, list: &[kmsflow::shipped::Shipped]) {
    match output {
        Output::Json => {
            let doc: Vec<Json> = list
                .iter()
                .map(|w| json!({"name": w.name, "summary": w.summary}))
                .collect();
            out::json(&doc);
        }
        Output::Text => {
            for w in list {
                outln!("{:<20} {}", w.name, w.summary);
            }
        }
    }
}

/// `kmsflow plan`: per step, what it would change.
pub fn plan(output: Output, pipeline: &kmsflow::Pipeline, plan: &[kmsflow::plan::StepPlan]) {
    match output {
        Output::Json => {
            let doc = json!({"pipeline": pipeline.name, "steps": plan});
            out::json(&doc);
        }
        Output::Text => {
            outln!("plan for {}:", pipeline.name);
            for s in plan {
                let what = match (&s.change, &s.blocked, s.skipped) {
                    _ if !s.after_apply.is_empty() => "runs after apply, with values known only then".to_string(),
                    (_, _, true) => "skipped (its `when` does not hold)".to_string(),
                    (Some(c), _, _) => format!("would change: {c}"),
                    (None, Some(b), _) => format!("cannot plan: {b}"),
                    (None, None, false) => "no changes".to_string(),
                };
                outln!("  {} ({}): {what}", s.step, s.plugin);
                for (name, value) in &s.known {
                    outln!("      {name} = {value}");
                }
                for unknown in &s.after_apply {
                    outln!("      {unknown} (known after apply)");
                }
            }
        }
    }
}

fn ms_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `kmsflow runs list`.
pub fn runs_list(output: Output, runs: &[kmsflow::journal::runs::RunSummary]) {
    match output {
        Output::Json => out::json(runs),
        Output::Text => {
            if runs.is_empty() {
                outln!("no runs");
            }
            for r in runs {
                outln!(
                    "{}  {:<11}  {}  {} on {}  steps done: {}, calls: {}, retries: {}, denied: {}",
                    r.id,
                    serde_json::to_value(r.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    ms_time(r.started_ms),
                    r.pipeline,
                    r.target,
                    r.steps_done,
                    r.calls,
                    r.retries,
                    r.denials
                );
            }
        }
    }
}

/// `kmsflow runs show`: the timeline of a run.
pub fn run_show(output: Output, summary: &kmsflow::journal::runs::RunSummary, records: &[kmsflow::journal::Record]) {
    use kmsflow::journal::Record;
    if output == Output::Json {
        let doc = json!({"summary": summary, "records": records});
        out::json(&doc);
        return;
    }
    outln!(
        "run {} — {} on {} — {}",
        summary.id,
        summary.pipeline,
        summary.target,
        serde_json::to_value(summary.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    for r in records {
        match r {
            Record::RunStarted { at_ms, .. } => outln!("{}  started", ms_time(*at_ms)),
            Record::Resumed { at_ms, allow_changed } => outln!(
                "{}  resumed{}",
                ms_time(*at_ms),
                if *allow_changed { " (changes allowed)" } else { "" }
            ),
            Record::StepStarted { step, plugin, .. } => outln!("  ▶ {step} ({plugin})"),
            Record::Call {
                call,
                resource,
                ok,
                duration_ms,
                retries,
                error,
                request_ids,
                ..
            } => {
                let mut line = format!(
                    "    {} {call} {} {duration_ms}ms",
                    if *ok { "·" } else { "✘" },
                    resource.as_deref().unwrap_or("")
                );
                if *retries > 0 {
                    line.push_str(&format!(", {retries} retries"));
                }
                if let Some(e) = error {
                    line.push_str(&format!(" — {} {}", e.kind, e.code));
                }
                if let Some(id) = request_ids.first() {
                    line.push_str(&format!(" [{id}]"));
                }
                outln!("{line}");
            }
            Record::CallDenied {
                call, action, resource, ..
            } => outln!("    ⛔ {call}: no `{action}` grant on {resource}"),
            Record::Checkpoint { key, value, .. } => outln!(
                "    ⚑ checkpoint {key}{}",
                if value.is_some() { "" } else { " removed" }
            ),
            Record::StepFinished {
                step,
                ok,
                duration_ms,
                reason,
                ..
            } => match ok {
                true => outln!("  ✔ {step} ({duration_ms}ms)"),
                false => outln!(
                    "  ✘ {step} ({duration_ms}ms): {}",
                    reason.as_deref().unwrap_or("failed")
                ),
            },
            Record::StepSkipped { step, condition } => outln!("  - {step} skipped: `{condition}`"),
            Record::RunFinished { ok, at_ms } => {
                outln!("{}  {}", ms_time(*at_ms), if *ok { "succeeded" } else { "failed" })
            }
        }
    }
}
