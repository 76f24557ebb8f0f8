//! The office's pages for people: the dashboard (every station's contact, standing this week
//! and month, last airing and open alarms, and a warning when the office is behind its own
//! stations) and a station's page (its latest events in words, its alarms to acknowledge).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::{Desk, error, page};
use crate::audit::compliance::Standing;
use crate::audit::render::Labels;
use crate::audit::words::{escape, miss_vi, missed_vi, standing_vi, status_vi, time_vi};
use crate::district::words::alarm_vi;
use crate::proof::events::{Counted, Logged};

pub(super) async fn dashboard(State(Desk { office, .. }): State<Desk>) -> Response {
    let now = office.clock.now();
    let built = tokio::task::spawn_blocking(move || {
        let status = office.status()?;
        let tz = office.config.timezone;
        let week = crate::time::calendar::period_of(crate::time::calendar::QuotaPeriod::Week, now, tz);
        let month = crate::time::calendar::period_of(crate::time::calendar::QuotaPeriod::Month, now, tz);
        let weekly = crate::district::report::build(&office, &week, now).map_err(|e| e.to_string());
        let monthly = crate::district::report::build(&office, &month, now).map_err(|e| e.to_string());
        let last_airings: Vec<Option<String>> =
            office.config.stations.iter().map(|s| office.last_airing(&s.id).ok().flatten()).collect();
        let behind = office.behind()?;
        Ok::<_, crate::district::store::DistrictStoreError>((
            (office.config.name.clone(), behind),
            status,
            weekly,
            monthly,
            last_airings,
            tz,
        ))
    })
    .await;
    let Ok(Ok(((name, behind), status, weekly, monthly, last_airings, tz))) = built else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store", "the office database does not answer");
    };
    let local = |rfc: &Option<String>| {
        rfc.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| time_vi(&t.with_timezone(&tz).to_rfc3339()))
            .unwrap_or_else(|| "chưa có".to_owned())
    };
    let standing = |report: &Result<crate::district::report::OfficeReport, String>, i: usize| match report {
        Ok(r) => r.stations.get(i).map_or(String::new(), |s| {
            s.quotas
                .iter()
                .map(|q| {
                    let class = match q.standing {
                        Standing::Met => "ok",
                        Standing::NotMet => "alarm",
                        _ => "pending",
                    };
                    format!(
                        "<span class=\"{class}\">{}: {} ({} lần, cần {})</span>",
                        escape(&Labels::default().quota_label(&q.quota)),
                        standing_vi(q.standing),
                        q.completed,
                        q.required
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>")
        }),
        Err(e) => escape(e),
    };
    let mut rows = String::new();
    for (i, s) in status.iter().enumerate() {
        let alarms = if s.alarms.is_empty() {
            "<span class=\"ok\">Không</span>".to_owned()
        } else {
            s.alarms
                .iter()
                .map(|a| {
                    format!("<div class=\"alarm\">#{} {}</div>", a.id, escape(&alarm_vi(&a.kind, a.seq, &a.detail)))
                })
                .collect::<String>()
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"/station/{id}\">{name}</a></td><td data-label=\"Liên lạc gần nhất\">{contact}</td>\
             <td data-label=\"Tuần này\">{week}</td><td data-label=\"Tháng này\">{month}</td>\
             <td data-label=\"Lần phát gần nhất\">{last}</td><td data-label=\"Cảnh báo\">{alarms}</td></tr>\n",
            id = escape(&s.id),
            name = escape(&s.name),
            contact = local(&s.last_ok_at),
            week = standing(&weekly, i),
            month = standing(&monthly, i),
            last = local(&last_airings[i]),
        ));
    }
    let periods: String = crate::time::calendar::recent_periods(now.with_timezone(&tz).date_naive())
        .into_iter()
        .map(|(label, code)| {
            format!(
                "<li>{label}: <a href=\"/report?period={code}&amp;format=html\">xem, in</a> · <a href=\"/report?period={code}&amp;format=csv-vi\">tải CSV (Excel)</a> · <a href=\"/report?period={code}&amp;format=csv\">CSV cho phần mềm</a></li>"
            )
        })
        .collect();
    let behind: String = behind.iter().map(|a| format!(
        "<p class=\"alarm\">Máy chủ đang thiếu một phần sổ của chính mình (đã khôi phục từ bản sao cũ?): đài {} đã thấy sổ \
         đến số {}, máy chủ chỉ còn đến số {}. Chưa gửi được bản tin mới cho đến khi quản trị viên chạy \
         <code>loa district recover</code>.</p>",
        escape(&a.station_id), a.seq, a.held_seq
    )).collect();
    let body = format!(
        "<h1>{}</h1><p class=\"center\">Theo dõi các đài truyền thanh cơ sở</p>{behind}\
         <table><tr class=\"head\"><th>Đài</th><th>Liên lạc gần nhất</th><th>Tuần này</th><th>Tháng này</th><th>Lần phát gần nhất</th><th>Cảnh báo</th></tr>\n{rows}</table>\
         <h2>Báo cáo</h2><ul>{periods}</ul><p><a href=\"/bulletins\">Bản tin đã gửi các đài và nơi đã phát</a></p>\
         <p class=\"small\">Xác nhận đã xử lý một cảnh báo: trên trang của đài, hoặc <code>loa district ack SỐ --note \"…\"</code> (cảnh báo và ghi chú đều được lưu lại).</p>",
        escape(&name)
    );
    page(&name, &body).into_response()
}

pub(super) async fn station_page(
    State(Desk { office, .. }): State<Desk>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(station) = office.config.station(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no station {id} in district.toml"));
    };
    let tz = office.config.timezone;
    let office2 = Arc::clone(&office);
    let station_id = station.id.clone();
    let read = tokio::task::spawn_blocking(move || {
        let latest = office2.with_store(|s| s.latest(&station_id, 100))?;
        let alarms = office2.with_store(|s| s.alarms(Some(&station_id), false))?;
        Ok::<_, crate::district::store::DistrictStoreError>((latest, alarms))
    })
    .await;
    let Ok(Ok((latest, alarms))) = read else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store", "the office database does not answer");
    };
    let labels = Labels::default();
    let mut rows = String::new();
    for e in &latest {
        let Ok(logged) = Logged::parse(&e.body, &e.hash) else { continue };
        // The members shown beside the counted ones (title, slot, reason), from the same
        // verified body.
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
        let text = |name: &str| body[name].as_str().map(escape).unwrap_or_default();
        let at = DateTime::<Utc>::from_timestamp_millis(e.at).map(|t| time_vi(&t.with_timezone(&tz).to_rfc3339()));
        let (bulletin, outcome) = match &logged.what {
            Counted::AiringEnded { status, topic, language, .. } => (
                format!(
                    "«{}» — {}, {}",
                    text("title"),
                    escape(&labels.topic(topic)),
                    escape(&labels.language(language))
                ),
                status_vi(status.as_str()).to_owned(),
            ),
            Counted::SlotMissed { reason, count } => {
                let when = |name: &str| {
                    let at = DateTime::<Utc>::from_timestamp_millis(body[name].as_i64()?)?;
                    Some(time_vi(&at.with_timezone(&tz).to_rfc3339()))
                };
                let span = match (when("scheduled_at"), when("last_scheduled_at")) {
                    (Some(first), Some(last)) => format!(", từ {first} đến {last}"),
                    _ => String::new(),
                };
                (String::new(), format!("{} ({}){span}", missed_vi(*count), miss_vi(*reason)))
            }
            Counted::Other => continue,
        };
        let detail = text("reason");
        let detail = match detail.is_empty() {
            true => format!("<details><summary>Chi tiết</summary>bản ghi số {}</details>", e.seq),
            false => format!("<details><summary>Chi tiết kỹ thuật</summary>{detail} (bản ghi số {})</details>", e.seq),
        };
        // The station's slot names are its own codes: the office shows whether it was peak time.
        let hours = if body["peak"].as_bool() == Some(true) { "giờ cao điểm" } else { "ngoài giờ cao điểm" };
        rows.push_str(&format!(
            "<tr><td data-label=\"Lúc\">{}, {hours}</td><td data-label=\"Bản tin\">{bulletin}</td>\
             <td data-label=\"Kết quả\">{outcome}{detail}</td></tr>",
            at.unwrap_or_default(),
        ));
    }
    // A clerk signed in (the cookie; judged when the form is sent) acknowledges with a note.
    let signed_in = super::clerk::presented(&headers).is_some();
    let alarm_rows: String = alarms
        .iter()
        .map(|a| {
            let state = match &a.note {
                Some(note) => format!("đã xử lý: {}", escape(note)),
                None if signed_in => format!(
                    "<span class=\"alarm\">chưa xử lý</span>\
                     <form method=\"post\" action=\"/alarms/{}/ack\">\
                     <input name=\"note\" required maxlength=\"1000\" placeholder=\"Đã kiểm tra gì, xử lý thế nào\">\
                     <button>Xác nhận đã xử lý</button></form>",
                    a.id
                ),
                None => "<span class=\"alarm\">chưa xử lý</span>".to_owned(),
            };
            format!("<li>#{} {} — {state}</li>", a.id, escape(&alarm_vi(&a.kind, a.seq, &a.detail)))
        })
        .collect();
    let clerk_line = match (signed_in, alarms.iter().any(|a| a.note.is_none())) {
        (true, _) => {
            "<form method=\"post\" action=\"/clerk/sign-out\"><button>Đăng xuất cán bộ</button></form>".to_owned()
        }
        (false, true) => super::clerk::sign_in_form(&format!("/station/{}", station.id)),
        (false, false) => String::new(),
    };
    let body = format!(
        "<nav><a href=\"/\">← Các đài</a></nav><h1>{}</h1><h2>Cảnh báo</h2><ul>{}</ul>{clerk_line}\
         <h2>Các lượt phát gần đây</h2><table><tr class=\"head\"><th>Lúc</th><th>Bản tin</th><th>Kết quả</th></tr>{rows}</table>",
        escape(&station.name),
        if alarm_rows.is_empty() { "<li class=\"ok\">Không có</li>".to_owned() } else { alarm_rows },
    );
    page(&station.name, &body).into_response()
}
