//! The OpenAPI document (`/v1/openapi.json`), generated from the route
//! table: every route the server answers is in it, with its roles, and
//! nothing else is.

use serde_json::{Value, json};

use super::routes::{ROUTES, Route};

/// The path parameters of a pattern: `/v1/runs/{id}` has `id`.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn error_response(what: &str) -> Value {
    json!({
        "description": what,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn operation(r: &Route) -> Value {
    let roles: Vec<&str> = r.roles.iter().map(|r| r.as_str()).collect();
    let mut responses = serde_json::Map::new();
    let ok = match r.method {
        "POST" => "201",
        "DELETE" => "204",
        _ => "200",
    };
    responses.insert(ok.to_owned(), json!({"description": "success"}));
    responses.insert("400".to_owned(), error_response("malformed request"));
    if !roles.is_empty() {
        responses.insert("401".to_owned(), error_response("no live token"));
        responses.insert("403".to_owned(), error_response("the token's role may not"));
    }
    responses.insert(
        "500".to_owned(),
        error_response("server failure (cause in the log)"),
    );
    let parameters: Vec<Value> = path_params(r.path)
        .into_iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let security = if roles.is_empty() {
        json!([])
    } else {
        json!([{"bearer": []}])
    };
    json!({
        "summary": r.summary,
        "description": if roles.is_empty() {
            "No token needed.".to_owned()
        } else {
            format!("Roles: {}.", roles.join(", "))
        },
        "x-roles": roles,
        "security": security,
        "parameters": parameters,
        "responses": responses,
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(ops) = entry.as_object_mut() {
            ops.insert(r.method.to_ascii_lowercase(), operation(r));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tally",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "LLM usage reconciliation: push usage, run reconciliations, read reports. \
                            See the README for bodies and parameters."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message", "details"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {}
                        }
                    }}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_with_its_parameters() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, ROUTES.len(), "a route twice in the table");
        let run = &doc["paths"]["/v1/runs/{id}"]["get"];
        assert_eq!(run["parameters"][0]["name"], "id");
        assert_eq!(run["x-roles"], json!(["admin", "finance", "platform"]));
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
    }
}
