//! The OpenAPI document (`/v1/openapi.json`), generated from the route
//! table: every route the server answers is in it, with its roles, and
//! nothing else is.

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Value, json};

use super::routes::{BodyKind, ROUTES, Route};

/// A deserializer that only learns which fields a struct has: serde hands
/// them to `deserialize_struct`, so the document lists the handler's own
/// query and body fields and cannot drift from them.
struct FieldNames(Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &mut FieldNames {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field names only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The field names of a struct that derives `Deserialize`.
pub fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names = FieldNames(None);
    // The error is the point: it stops deserializing once the names are in.
    let _ = T::deserialize(&mut names);
    names.0.unwrap_or(&[])
}

fn object_of(names: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> =
        names.iter().map(|n| ((*n).to_owned(), json!({}))).collect();
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn request_body(b: BodyKind) -> Value {
    let content = match b {
        BodyKind::Json(f) => json!({"application/json": {"schema": object_of(f())}}),
        BodyKind::JsonObject => json!({"application/json": {"schema": {"type": "object"}}}),
        BodyKind::Form(f) => {
            json!({"application/x-www-form-urlencoded": {"schema": object_of(f())}})
        }
        BodyKind::Upload(types) => {
            let m: serde_json::Map<String, Value> = types
                .iter()
                .map(|t| {
                    (
                        (*t).to_owned(),
                        json!({"schema": {"type": "string", "format": "binary"}}),
                    )
                })
                .collect();
            Value::Object(m)
        }
    };
    json!({"required": true, "content": content})
}

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
    let mut parameters: Vec<Value> = path_params(r.path)
        .into_iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if let Some(q) = r.query {
        parameters.extend(
            q().iter()
                .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}})),
        );
    }
    let security = if roles.is_empty() {
        json!([])
    } else {
        json!([{"bearer": []}])
    };
    let mut op = json!({
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
    });
    if let (Some(b), Some(o)) = (r.body, op.as_object_mut()) {
        o.insert("requestBody".to_owned(), request_body(b));
    }
    op
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
                            Field types and required fields are in the README."
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

    #[test]
    fn query_and_body_fields_come_from_the_handlers_structs() {
        let doc = document();
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(&doc["paths"]["/v1/reports/{kind}"]["get"]["parameters"]),
            [
                "kind", "from", "to", "group_by", "format", "page", "per_page"
            ]
        );
        assert_eq!(
            names(&doc["paths"]["/v1/quotas/status"]["get"]["parameters"]),
            ["key", "owner"]
        );
        let quota = &doc["paths"]["/v1/quotas/{name}"]["put"]["requestBody"]["content"]["application/json"]
            ["schema"]["properties"];
        for f in [
            "scope",
            "metric",
            "limit",
            "period",
            "time_zone",
            "thresholds",
            "recipients",
            "basis",
        ] {
            assert!(quota.get(f).is_some(), "{f}: {quota}");
        }
        let push = &doc["paths"]["/v1/usage/client"]["post"]["requestBody"]["content"];
        assert!(push.get("application/x-ndjson").is_some());
        // Every struct the table names has fields (a wrong struct, or one
        // read as a map, would list none).
        for r in ROUTES {
            if let Some(q) = r.query {
                assert!(!q().is_empty(), "{} {}", r.method, r.path);
            }
        }
    }
}
