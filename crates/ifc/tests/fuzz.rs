//! Schema-driven fuzzing of a real `ifc serve`, on each backend: every route in
//! `/openapi.json` gets generated requests — valid ones built from the schema,
//! and invalid ones (bad ids, numbers at and past their ranges, wrong types,
//! missing fields, broken JSON, wrong or missing credentials). No answer may
//! be a 5xx, and the witness log must still verify afterwards. Seeded, so a
//! failure reproduces; the request count is printed.

mod common;

use std::time::Duration;

use common::serve;
use ifc_testkit::Backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// Requests per route and method.
const ROUNDS: usize = 150;

/// Strings that probe ids and enums: valid, edge and hostile.
const STRINGS: &[&str] = &[
    "s1",
    "t1",
    "t2",
    "ready",
    "claimed",
    "dead",
    "x",
    "",
    ".",
    "..",
    "a b",
    "é",
    "задача-✓",
    "a/b",
    "%2F",
    "a\u{0}b",
    "null",
    "-1",
    "9223372036854775807",
    "<script>",
    "code-analysis:python",
];

/// Integers at and past every boundary a handler might meet.
const INTEGERS: &[i64] = &[0, 1, -1, 2, 50, 100, 101, 1000, 86_400_000, i64::MAX, i64::MIN];

/// Raw query or header values, including ones no number parser accepts.
const RAW: &[&str] = &[
    "0",
    "1",
    "-1",
    "100",
    "101",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "-9223372036854775808",
    "abc",
    "",
    "1e3",
    "%FF",
    "ready",
    "true",
];

struct Schemas<'a>(&'a Value);

impl Schemas<'_> {
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                self.0.pointer(&format!("/components/schemas/{name}")).unwrap_or(&Value::Null)
            }
            None => schema,
        }
    }

    /// A value that follows `schema` (mostly: strings and numbers come from the
    /// hostile lists too).
    fn generate(&self, schema: &Value, rng: &mut StdRng, depth: usize) -> Value {
        let schema = self.resolve(schema);
        if depth > 6 {
            return Value::Null;
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array)
                && !options.is_empty()
            {
                let pick = &options[rng.random_range(0..options.len())];
                return self.generate(pick, rng, depth + 1);
            }
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array)
            && !values.is_empty()
            && rng.random_bool(0.9)
        {
            return values[rng.random_range(0..values.len())].clone();
        }
        let kind = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null")
                .to_string(),
            _ if schema.get("properties").is_some() => "object".into(),
            _ => "any".into(),
        };
        match kind.as_str() {
            "object" => {
                let mut object = Map::new();
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    for (name, property) in properties {
                        object.insert(name.clone(), self.generate(property, rng, depth + 1));
                    }
                }
                Value::Object(object)
            }
            "array" => {
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                let n = rng.random_range(0..4);
                Value::Array((0..n).map(|_| self.generate(&items, rng, depth + 1)).collect())
            }
            "string" => json!(STRINGS[rng.random_range(0..STRINGS.len())]),
            "integer" | "number" => json!(INTEGERS[rng.random_range(0..INTEGERS.len())]),
            "boolean" => json!(rng.random_bool(0.5)),
            "null" => Value::Null,
            _ => json!({"k": STRINGS[rng.random_range(0..STRINGS.len())]}),
        }
    }
}

/// Breaks a valid body: a field dropped, retyped or oversized, or not JSON.
fn mutate(body: Value, rng: &mut StdRng) -> Result<Value, &'static str> {
    let Value::Object(mut object) = body else {
        return Ok(json!(["not", "an", "object"]));
    };
    let keys: Vec<String> = object.keys().cloned().collect();
    match rng.random_range(0..6) {
        0 if !keys.is_empty() => {
            object.remove(&keys[rng.random_range(0..keys.len())]);
        }
        1 if !keys.is_empty() => {
            let key = &keys[rng.random_range(0..keys.len())];
            let wrong = [json!(null), json!(true), json!("x"), json!(-1), json!([]), json!({})];
            object.insert(key.clone(), wrong[rng.random_range(0..wrong.len())].clone());
        }
        2 if !keys.is_empty() => {
            let key = &keys[rng.random_range(0..keys.len())];
            object.insert(key.clone(), json!("x".repeat(70_000)));
        }
        3 => return Err("{\"task_id\": "),
        4 => return Err(""),
        _ => {
            object.insert("unexpected".into(), json!(1));
        }
    }
    Ok(Value::Object(object))
}

/// Percent-encodes all but the id characters.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.:@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn fuzz_every_route(backend: Backend) {
    let served = serve(backend, &["--admin-token", "admin"]).await;
    let url = &served.url;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // A few things to aim at: two swarms, tasks, one blocker.
    let admin = ifc_client::Client::new(url, "admin");
    let swarm = admin.register_swarm("s1", &["code-analysis:python"], json!({})).await.unwrap();
    let swarm_token = swarm.registration().token.clone();
    for id in ["t1", "t2", "t3"] {
        let task = ifc_client::NewTask {
            task_id: id.into(),
            task_type: "x".into(),
            metadata: json!({}),
            required_capabilities: vec![],
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
        };
        admin.create_task(task).await.unwrap();
    }
    let api: Value =
        http.get(format!("{url}/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schemas = Schemas(&api);
    let mut rng = StdRng::seed_from_u64(0x1fc);
    let mut sent = 0usize;
    let mut failures = Vec::new();
    let paths = api["paths"].as_object().expect("paths").clone();
    for (template, operations) in &paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            let Ok(method) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let params = operation["parameters"].as_array().cloned().unwrap_or_default();
            let body_schema =
                operation.pointer("/requestBody/content/application~1json/schema").cloned();
            for round in 0..ROUNDS {
                let mut path = template.clone();
                let mut query = Vec::new();
                for param in &params {
                    let name = param["name"].as_str().unwrap_or_default();
                    let value = if round % 3 == 0 {
                        RAW[rng.random_range(0..RAW.len())].to_string()
                    } else {
                        match schemas.generate(&param["schema"], &mut rng, 0) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        }
                    };
                    match param["in"].as_str() {
                        Some("path") => {
                            path = path.replace(&format!("{{{name}}}"), &encode(&value));
                        }
                        Some("query") if rng.random_bool(0.8) => {
                            query.push((name.to_string(), value))
                        }
                        _ => {}
                    }
                }
                let query_string: Vec<String> =
                    query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
                let target = format!("{url}{path}?{}", query_string.join("&"));
                let mut request = http.request(method.clone(), target);
                request = match round % 5 {
                    0 => request,
                    1 => request.bearer_auth("wrong"),
                    2 | 3 => request.bearer_auth(&swarm_token).header("x-ifc-swarm", "s1"),
                    _ => request.bearer_auth("admin"),
                };
                if round % 7 == 0 {
                    request = request.header("last-event-id", RAW[rng.random_range(0..RAW.len())]);
                }
                if let Some(schema) = &body_schema {
                    let body = schemas.generate(schema, &mut rng, 0);
                    let body = if round % 2 == 0 { Ok(body) } else { mutate(body, &mut rng) };
                    request = match body {
                        Ok(body) => request.json(&body),
                        Err(raw) => request.header("content-type", "application/json").body(raw),
                    };
                }
                sent += 1;
                match request.send().await {
                    // Streams answer with their head; the body is not awaited.
                    Ok(response) if response.status().is_server_error() => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        failures.push(format!("{method} {path}?{query:?} → {status} {text}"));
                    }
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{method} {path}?{query:?} → {e}")),
                }
            }
        }
    }
    println!("fuzz ({backend:?}): {sent} requests over {} routes", paths.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let verified = admin.verify_witness().await.unwrap();
    assert!(verified.ok, "the witness log no longer verifies: {:?}", verified.problems);
    assert!(sent > paths.len() * ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_every_route_on_embedded() {
    fuzz_every_route(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_every_route_on_etcd() {
    fuzz_every_route(Backend::Etcd).await;
}
