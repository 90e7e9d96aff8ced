//! The OpenAPI document is complete enough to generate a client from: the
//! crate's version, the security schemes, who may call each operation, the
//! `X-Ifc-Swarm` header where a request acts as a swarm, and `{code, message}`
//! error responses on every operation. (That it lists exactly the routes the
//! router serves, on each backend, is e2e's `openapi_lists_exactly_the_routes`.)

use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

#[test]
fn the_document_is_versioned_with_security_schemes() {
    let api = ifc_server::openapi();
    assert_eq!(api["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = &api["components"]["securitySchemes"];
    for bearer in ["admin", "swarm", "viewer"] {
        assert_eq!(schemes[bearer]["type"], "http", "{bearer}");
        assert_eq!(schemes[bearer]["scheme"], "bearer", "{bearer}");
    }
    assert_eq!(schemes["swarm_id"]["in"], "header");
    assert_eq!(schemes["swarm_id"]["name"], "X-Ifc-Swarm");
    let error = &api["components"]["schemas"]["ApiError"];
    assert!(error["properties"]["code"].is_object() && error["properties"]["message"].is_object());
}

#[test]
fn every_operation_has_security_and_error_responses() {
    let api = ifc_server::openapi();
    let paths = api["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(operation) = item.get(*method) else { continue };
            operations += 1;
            let entry = format!("{} {path}", method.to_uppercase());
            let security = operation["security"].as_array().unwrap_or_else(|| panic!("{entry}"));
            let open = ["/healthz", "/readyz", "/metrics"].contains(&path.as_str());
            assert_eq!(security.is_empty(), open, "{entry}: security {security:?}");
            let responses = operation["responses"].as_object().unwrap();
            let errors: Vec<&String> = responses
                .iter()
                .filter(|(status, response)| {
                    (status.starts_with('4') || status.starts_with('5') || *status == "default")
                        && response.pointer("/content/application~1json/schema/$ref")
                            == Some(&Value::from("#/components/schemas/ApiError"))
                })
                .map(|(status, _)| status)
                .collect();
            assert!(errors.iter().any(|s| *s == "default"), "{entry}: {errors:?}");
            if !open {
                for status in ["401", "403", "500", "503"] {
                    assert!(errors.iter().any(|s| *s == status), "{entry} lacks {status}");
                }
                assert!(security.iter().any(|s| s.get("admin").is_some()), "{entry}");
            }
            let acts_as_swarm = security.iter().any(|s| s.get("swarm").is_some());
            let header = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["in"] == "header" && p["name"].as_str() == Some("X-Ifc-Swarm"));
            assert_eq!(header.is_some(), acts_as_swarm, "{entry}: the X-Ifc-Swarm header");
        }
    }
    assert!(operations > 30, "only {operations} operations");
    // Spot checks of who may call what.
    let security = |method: &str, path: &str| api["paths"][path][method]["security"].clone();
    assert_eq!(security("post", "/v1/tasks"), serde_json::json!([{"admin": []}]));
    let claim = security("post", "/v1/tasks/{task_id}/claim");
    assert!(claim.as_array().unwrap().iter().any(|s| s["swarm_id"].is_array()));
    let viewers = security("get", "/v1/events");
    assert!(viewers.as_array().unwrap().iter().any(|s| s.get("viewer").is_some()));
    let kv = security("get", "/v1/kv");
    assert!(!kv.as_array().unwrap().iter().any(|s| s.get("viewer").is_some()));
}
