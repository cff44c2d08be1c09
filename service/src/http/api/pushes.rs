//! Usage pushes: spooled, bounded, stored through the ingest use case.

// The parent's imports and helpers: these files are sections of one API.
use super::*;

/// `?name=&format=&source=` of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushQuery {
    /// The batch's name (default `http:<token name>`).
    name: Option<String>,
    /// Client uploads: `jsonl` or `csv` (default from Content-Type, else
    /// detected).
    format: Option<String>,
    /// Gateway uploads: a built-in source name (default detected).
    source: Option<String>,
}

/// One refused row of an upload.
#[derive(Debug, Serialize)]
pub struct RejectView {
    /// 1-based line (or JSON array element).
    pub line: i64,
    /// Field at fault.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl From<Reject> for RejectView {
    fn from(r: Reject) -> Self {
        Self {
            line: r.line,
            field: r.field,
            reason: r.reason,
        }
    }
}

/// What an upload did: `read = new + duplicate + rejected`.
#[derive(Debug, Serialize)]
pub struct IngestView {
    /// The batch holding it.
    pub batch_id: i64,
    /// The same bytes were uploaded before: nothing was added.
    pub already: bool,
    /// Rows read.
    pub read: i64,
    /// Rows stored.
    pub new: i64,
    /// Rows the store had already.
    pub duplicate: i64,
    /// Rows refused (kept as rejects).
    pub rejected: i64,
    /// Rows whose request id the store also has on another UTC day: kept
    /// as separate requests.
    pub id_reused: i64,
    /// Format or gateway source it was read as.
    pub source: String,
    /// The first rejects, with line, field and reason.
    pub rejects: Vec<RejectView>,
}

/// Rejects listed in an upload's response (all are kept in the store).
pub const REJECTS_LISTED: usize = 1_000;

/// `POST /v1/usage/client`: NDJSON (the client log format) or CSV.
pub async fn push_client(
    state: Data,
    req: HttpRequest,
    q: web::Query<PushQuery>,
    body: web::Payload,
) -> Reply {
    push(state, req, q.into_inner(), body, SideKind::Client).await
}

/// `POST /v1/usage/gateway`: a gateway export, CSV or JSON.
pub async fn push_gateway(
    state: Data,
    req: HttpRequest,
    q: web::Query<PushQuery>,
    body: web::Payload,
) -> Reply {
    push(state, req, q.into_inner(), body, SideKind::Gateway).await
}

fn content_type(req: &HttpRequest) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The client format an upload says it is, if it says.
fn client_format(q: &PushQuery, ct: &str) -> Result<Option<ClientFormat>, ApiError> {
    Ok(match q.format.as_deref() {
        Some("jsonl" | "ndjson") => Some(ClientFormat::Jsonl),
        Some("csv") => Some(ClientFormat::Csv),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format`: `{other}` is not jsonl or csv"
            )));
        }
        None => match ct {
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
                Some(ClientFormat::Jsonl)
            }
            "text/csv" => Some(ClientFormat::Csv),
            _ => None,
        },
    })
}

/// The gateway profiles an upload may be read as: only built-ins (a
/// mapping file path from a request would read the server's files).
fn upload_profiles(
    source: Option<&str>,
) -> Result<Vec<tally_reconcile::parse::mapping::Profile>, ApiError> {
    let builtins = tally_reconcile::parse::mapping::Profile::builtins()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("built-in profiles: {e}")))?;
    let Some(src) = source else {
        return Ok(builtins);
    };
    match builtins.iter().find(|p| p.name == src) {
        Some(p) => Ok(vec![p.clone()]),
        None => Err(ApiError::bad_request(format!(
            "`source`: `{src}` is not a built-in source ({})",
            builtins
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Writes the body to `path` as it arrives, refusing more than `limit`
/// bytes, and a body whose next bytes do not come within `idle`: a stalled
/// upload ends instead of holding its slot. No store connection is held
/// meanwhile. The writes are small and go to the page cache, so they are
/// done in place rather than on the blocking pool.
async fn spool(
    mut body: web::Payload,
    path: &Path,
    limit: usize,
    idle: std::time::Duration,
) -> Result<(), ApiError> {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).map_err(ApiError::internal)?,
    );
    let mut n = 0usize;
    loop {
        let next = actix_web::rt::time::timeout(idle, body.next())
            .await
            .map_err(|_| ApiError::body_timeout(idle.as_secs()))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        n = n.saturating_add(chunk.len());
        if n > limit {
            return Err(ApiError::too_large(limit));
        }
        f.write_all(&chunk).map_err(ApiError::internal)?;
    }
    f.flush().map_err(ApiError::internal)?;
    if n == 0 {
        return Err(ApiError::bad_request("the body is empty"));
    }
    Ok(())
}

/// An ingest failure, mapped as every use case's is: the input's is the
/// upload's (422; the use case names the file by the upload's name, never
/// the server's temporary file), the store's is ours (500, or 503 when it
/// cannot be reached).
fn ingest_error(e: ingest::IngestError) -> ApiError {
    crate::app::error::AppError::from(e).into()
}

async fn push(
    state: Data,
    req: HttpRequest,
    q: PushQuery,
    body: web::Payload,
    kind: SideKind,
) -> Reply {
    let ct = content_type(&req);
    let (client_format, profiles) = match kind {
        SideKind::Client => (client_format(&q, &ct)?, Vec::new()),
        SideKind::Gateway => (None, upload_profiles(q.source.as_deref())?),
    };
    let who = principal(&req).map_or_else(|| "-".to_owned(), |p| p.name);
    // Held until the answer: a token's uploads under way are bounded, so
    // one client's stalled or slow bodies cannot take every slot.
    let _slot = state
        .uploads
        .enter(&who)
        .ok_or_else(|| ApiError::too_many_uploads(state.settings.server.uploads_per_token))?;
    let label = q.name.clone().unwrap_or_else(|| format!("http:{who}"));
    let now = state.now()?;
    // Every upload is spooled to a private temporary file first and read
    // as `tally ingest` reads one: a store connection is taken only once
    // the whole body is in, and memory stays bounded whatever its size.
    let (o, rejects) = spooled(
        &state,
        kind,
        body,
        client_format,
        profiles,
        &ct,
        &q,
        label,
        now,
    )
    .await?;
    if o.new > 0 {
        evaluate_soon(&state);
    }
    let status = if o.already {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(IngestView {
        batch_id: o.batch_id,
        already: o.already,
        read: o.read,
        new: o.new,
        duplicate: o.duplicate,
        rejected: o.rejected,
        id_reused: o.id_reused,
        source: o.source,
        rejects: rejects
            .into_iter()
            .take(REJECTS_LISTED)
            .map(Into::into)
            .collect(),
    }))
}

/// Evaluates quotas after new usage, off the request: its answer does not
/// wait, and a burst of pushes is one or two evaluations.
pub(super) fn evaluate_soon(state: &Data) {
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let pool = state.pool.clone();
        let work = web::block(move || {
            state.evaluations.run(|| {
                let now = (state.clock)()
                    .ok()
                    .and_then(chrono::DateTime::from_timestamp_millis);
                match (pool.get(), now) {
                    (Ok(mut c), Some(now)) => {
                        crate::app::follow_up::after_ingest(&mut c, &state.settings, now);
                    }
                    (Err(e), _) => {
                        tracing::error!(error = %e, "quota evaluation: no store connection")
                    }
                    (_, None) => tracing::error!("quota evaluation: clock out of range"),
                }
            });
        });
        let _ = work.await;
    });
}

/// An upload spooled to a temporary file, then ingested as a file.
#[expect(clippy::too_many_arguments, reason = "one private step of `push`")]
async fn spooled(
    state: &Data,
    kind: SideKind,
    body: web::Payload,
    client_format: Option<ClientFormat>,
    profiles: Vec<tally_reconcile::parse::mapping::Profile>,
    ct: &str,
    q: &PushQuery,
    label: String,
    now: chrono::NaiveDateTime,
) -> Result<(Outcome, Vec<Reject>), ApiError> {
    let ext = match (kind, client_format, ct) {
        (SideKind::Client, Some(ClientFormat::Csv), _) | (SideKind::Gateway, _, "text/csv") => {
            "csv"
        }
        (SideKind::Client, _, _) => "jsonl",
        (SideKind::Gateway, _, "application/json") => "json",
        (SideKind::Gateway, _, _) => "upload",
    };
    let dir = tempfile::Builder::new()
        .prefix("tally-upload")
        .tempdir()
        .map_err(ApiError::internal)?;
    let path = dir.path().join(format!("upload.{ext}"));
    spool(
        body,
        &path,
        state.settings.body_limit(),
        std::time::Duration::from_secs(state.settings.server.body_idle_timeout_s),
    )
    .await?;
    let named = q.source.is_some();
    state
        .db(move |c| {
            let plan = ReadPlan {
                client_format,
                profiles: &profiles,
                named,
                client_profiles: &[],
                client_named: false,
                min_split_bytes: crate::app::split::MIN_SPLIT_BYTES,
                keep_raw: true,
            };
            let o: Outcome = ingest::ingest_file(c, kind, &path, &label, plan, now, &mut |_| {})
                .map_err(ingest_error)?;
            let rejects = ingest::rejects_of(c, o.batch_id, REJECTS_LISTED)?;
            drop(dir);
            Ok((o, rejects))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_errors_name_the_upload_never_the_temporary_file() {
        // The spooled body lives in a server-side temporary folder; what
        // the client is told names only the upload.
        let tmp = tempfile::tempdir().unwrap();
        let spooled = tmp.path().join("upload.csv");
        std::fs::write(&spooled, "a,b,c\n1,2,3\n").unwrap();
        let mut c = crate::db::open(
            &format!("sqlite://{}", tmp.path().join("t.db").display()),
            false,
        )
        .unwrap();
        let profiles = tally_reconcile::parse::mapping::Profile::builtins().unwrap();
        let plan = ReadPlan {
            client_format: None,
            profiles: &profiles,
            named: false,
            client_profiles: &[],
            client_named: false,
            min_split_bytes: u64::MAX,
            keep_raw: true,
        };
        let now = chrono::DateTime::from_timestamp(1_795_000_000, 0)
            .unwrap()
            .naive_utc();
        let e = ingest::ingest_file(
            &mut c,
            SideKind::Gateway,
            &spooled,
            "nightly.csv",
            plan,
            now,
            &mut |_| {},
        )
        .unwrap_err();
        let e = ingest_error(e);
        assert_eq!(e.code(), "invalid_input");
        let text = e.to_string();
        assert!(text.contains("nightly.csv"), "{text}");
        assert!(!text.contains(&tmp.path().display().to_string()), "{text}");
    }
}
