//! `ifc task create-many`: tasks from a file or stdin (a JSON array of tasks,
//! or one task per line), sent in batches (`POST /v1/tasks/batch`).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Result;
use ifc_client::{BatchItemResult, BatchStatus, ClientError, MAX_BATCH_TASKS, NewTask};
use serde::Serialize;

use super::Connection;
use super::failure::{Exit, Failure, exit_for, wire_name};

/// Bytes of task JSON one request carries at most, well inside the server's
/// body limit (twice its JSON limit, 1 MiB by default, plus 64 KiB): a task
/// with large metadata makes its batch smaller.
const BATCH_BYTES: usize = 1 << 20;

/// One task's answer, with where it was in the input.
#[derive(Serialize)]
struct Answer {
    /// Its place in the input, from 0.
    index: usize,
    task_id: String,
    #[serde(flatten)]
    result: BatchItemResult,
}

/// Creates every task in `file` (stdin when absent or `-`), `batch_size` to a
/// request. A batch refused whole (a bad task) stops the command, naming the
/// task; the batches before it were created, and running again is safe (a
/// task already there with the same content answers `exists`).
pub(super) async fn create_many(
    c: &Connection,
    file: Option<PathBuf>,
    batch_size: usize,
) -> Result<i32> {
    if !(1..=MAX_BATCH_TASKS).contains(&batch_size) {
        let message = format!("--batch-size is 1 ..= {MAX_BATCH_TASKS}, not {batch_size}");
        return Err(Failure::new(Exit::Usage, message, "").into());
    }
    let tasks = parse_tasks(&read_input(file)?)?;
    let admin = c.admin()?;
    let mut answers: Vec<Answer> = Vec::with_capacity(tasks.len());
    let mut offset = 0;
    for batch in batches(tasks, batch_size) {
        let ids: Vec<String> = batch.iter().map(|t| t.task_id.clone()).collect();
        let results = match admin.create_tasks(batch).await {
            Ok(results) => results,
            Err(e) => return Err(refused(e, offset, &ids)),
        };
        for (i, (task_id, result)) in ids.into_iter().zip(results).enumerate() {
            answers.push(Answer { index: offset + i, task_id, result });
        }
        offset = answers.len();
    }
    c.print(&answers, summary);
    let first_error = answers.iter().find_map(|a| a.result.error.as_ref());
    Ok(first_error.map_or(0, |e| exit_for(e.code.status(), e.code) as i32))
}

fn read_input(file: Option<PathBuf>) -> Result<String> {
    let mut text = String::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(file) => {
            text = std::fs::read_to_string(&file).map_err(|e| {
                Failure::new(Exit::Usage, format!("cannot read {}: {e}", file.display()), "")
            })?;
        }
        None => {
            std::io::stdin().read_to_string(&mut text)?;
        }
    }
    Ok(text)
}

/// Tasks from a JSON array, or from JSON values one after another (JSON
/// lines), each shaped as `POST /v1/tasks` takes it.
fn parse_tasks(text: &str) -> Result<Vec<NewTask>> {
    let bad = |e: serde_json::Error, what: String| -> anyhow::Error {
        let message = format!("{what} is not a task (line {}): {e}", e.line());
        let hint = r#"one task per line, or a JSON array of them: {"task_id": "t1", "task_type": "review"}"#;
        Failure::new(Exit::Usage, message, hint).into()
    };
    let tasks = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<NewTask>>(text).map_err(|e| bad(e, "the array".into()))?
    } else {
        let mut tasks = Vec::new();
        for task in serde_json::Deserializer::from_str(text).into_iter::<NewTask>() {
            tasks.push(task.map_err(|e| bad(e, format!("item {}", tasks.len())))?);
        }
        tasks
    };
    if tasks.is_empty() {
        return Err(Failure::new(Exit::Usage, "the input holds no tasks", "").into());
    }
    Ok(tasks)
}

/// `tasks` in order, in batches of at most `size` tasks and [`BATCH_BYTES`].
fn batches(tasks: Vec<NewTask>, size: usize) -> Vec<Vec<NewTask>> {
    let mut batches: Vec<Vec<NewTask>> = Vec::new();
    let mut bytes = 0;
    for task in tasks {
        let task_bytes = serde_json::to_vec(&task).map_or(0, |v| v.len());
        let full =
            batches.last().is_none_or(|b| b.len() >= size || bytes + task_bytes > BATCH_BYTES);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += task_bytes;
        if let Some(batch) = batches.last_mut() {
            batch.push(task);
        }
    }
    batches
}

/// A batch refused whole (or not sent), named by its place in the input.
fn refused(e: ClientError, offset: usize, ids: &[String]) -> anyhow::Error {
    let sent = match offset {
        0 => "nothing was created".to_string(),
        n => format!("the {n} tasks before its batch were sent"),
    };
    let hint = "fix the input and run the command again: tasks already created answer `exists`";
    match &e {
        ClientError::Api { status, error } => {
            let at = match error.index {
                Some(i) => format!(
                    "task {:?} (item {} of the input): ",
                    ids.get(i).map_or("", String::as_str),
                    offset + i
                ),
                None => String::new(),
            };
            let message =
                format!("{at}{} [{}, HTTP {status}]; {sent}", error.message, wire_name(error.code));
            Failure::new(exit_for(*status, error.code), message, hint).into()
        }
        _ => anyhow::Error::new(e).context(format!("sending a batch ({sent})")),
    }
}

fn summary(answers: &Vec<Answer>) -> String {
    let count = |status| answers.iter().filter(|a| a.result.status == status).count();
    let mut out = format!(
        "created {}, existed {}, failed {}",
        count(BatchStatus::Created),
        count(BatchStatus::Exists),
        count(BatchStatus::Error)
    );
    for answer in answers {
        if let Some(error) = &answer.result.error {
            let code = wire_name(error.code);
            out.push_str(&format!(
                "\n  {} (item {}): {} [{code}]",
                answer.task_id, answer.index, error.message
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_come_as_an_array_or_one_per_line() {
        let lines = "{\"task_id\": \"a\", \"task_type\": \"t\"}\n\n{\"task_id\": \"b\", \"task_type\": \"t\", \"priority\": 2}\n";
        let ids = |tasks: Vec<NewTask>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
        assert_eq!(ids(parse_tasks(lines).unwrap()), ["a", "b"]);
        let array = r#" [{"task_id": "a", "task_type": "t"}, {"task_id": "b", "task_type": "t"}]"#;
        assert_eq!(ids(parse_tasks(array).unwrap()), ["a", "b"]);
        let broken = "{\"task_id\": \"a\", \"task_type\": \"t\"}\n{\"task_id\": 5}\n";
        let e = parse_tasks(broken).unwrap_err().to_string();
        assert!(e.starts_with("item 1 is not a task (line 2)"), "{e}");
        assert!(parse_tasks("  \n").is_err());
    }

    #[test]
    fn batches_keep_order_and_their_limits() {
        let task = |i: usize, bytes: usize| NewTask {
            task_id: format!("t{i}"),
            task_type: "t".into(),
            metadata: serde_json::Value::String("x".repeat(bytes)),
            required_capabilities: Vec::new(),
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
        };
        let sizes = |b: Vec<Vec<NewTask>>| b.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(
            sizes(batches((0..2500).map(|i| task(i, 10)).collect(), 1000)),
            [1000, 1000, 500]
        );
        assert_eq!(sizes(batches((0..5).map(|i| task(i, 400_000)).collect(), 1000)), [2, 2, 1]);
        let order: Vec<String> = batches((0..7).map(|i| task(i, 10)).collect(), 3)
            .concat()
            .into_iter()
            .map(|t| t.task_id)
            .collect();
        assert_eq!(order, ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]);
    }
}
