//! The office's words for a clerk: an alarm in plain Vietnamese, for the dashboard and the
//! office's reports alike (a quota's words are the reports' renderer's, `audit::render`).

use super::bulletins::Reach;
use super::witness::AlarmKind;

/// Where a bulletin stands at a station, in words (`reason`: why it refused it).
pub fn reach_vi(reach: Reach, reason: Option<&str>) -> String {
    match reach {
        Reach::Pending => "chưa nhận được".into(),
        Reach::Received => "đã nhận, chưa phát đủ".into(),
        Reach::Aired => "đã phát".into(),
        Reach::Expired => "hết hạn mà chưa phát đủ".into(),
        Reach::Withdrawn => "đã thu hồi".into(),
        Reach::Refused => format!("đài từ chối: {}", refusal_vi(reason.unwrap_or_default())),
    }
}

/// Why a station refused a bulletin, in words.
fn refusal_vi(reason: &str) -> &'static str {
    match reason {
        "bad_signature" => "chữ ký không khớp khóa của phòng mà đài đã ghim",
        "malformed" => "bản tin sai quy cách",
        "not_for_this_station" => "không gửi cho đài này",
        "expired" => "đến đài khi đã hết hạn",
        "hash_mismatch" => "tệp âm thanh đến đài không đúng tệp đã gửi",
        "not_playable" => "tệp âm thanh không phát được",
        "withdrawn" => "đã thu hồi",
        _ => "lý do khác",
    }
}

/// An alarm in plain words, for the clerk.
pub fn alarm_vi(kind: &str, seq: Option<i64>, detail: &str) -> String {
    let at = seq.map(|s| format!(" (bản ghi {s})")).unwrap_or_default();
    let words = match kind.parse::<AlarmKind>() {
        Ok(AlarmKind::Rollback) => "Nhật ký của đài bị khôi phục từ bản sao cũ: mất các bản ghi phòng đã nhận",
        Ok(AlarmKind::Fork) => "Đài ký hai bản ghi khác nhau cho cùng một số thứ tự (nhật ký bị rẽ nhánh)",
        Ok(AlarmKind::KeyChanged) => "Khóa ký của đài đã thay đổi: có thể đài bị thay máy",
        Ok(AlarmKind::BadHash) => "Bản ghi bị sửa trên đường truyền hoặc trên máy đài",
        Ok(AlarmKind::BadSignature) => "Chữ ký số của bản ghi không hợp lệ",
        Ok(AlarmKind::Gap) => "Thiếu bản ghi trong nhật ký",
        Ok(AlarmKind::WrongStation) => "Bản ghi của một đài khác",
        Ok(AlarmKind::Stale) => {
            "Không chứng minh được câu trả lời của đài là mới (có thể bị phát lại, hoặc đài trả lời quá chậm)"
        }
        Ok(AlarmKind::Implausible) => {
            "Đài ghi một lượt phát không hợp lý (sai ngày giờ, trùng lượt khác, phát khi đài đang tắt…): không được tính"
        }
        Ok(AlarmKind::LogTampered) => {
            "Chính đài báo nhật ký của mình bị hỏng, bị sửa hoặc bị cắt: bản phòng đang giữ là bản đầy đủ"
        }
        Ok(AlarmKind::BadEvent) => "Đài ký một bản ghi có nội dung sai quy cách (không phần mềm loa nào ghi như vậy)",
        Ok(AlarmKind::Unreachable) => "Không liên lạc được với đài quá lâu",
        Err(_) => "Cảnh báo",
    };
    let missing = (kind == "rollback").then(|| missing_range(detail)).flatten().unwrap_or_default();
    format!("{words}{missing}{at}")
}

/// "events 41–57" in a rollback's detail → ": mất các bản ghi 41–57".
fn missing_range(detail: &str) -> Option<String> {
    let start = detail.find("events ")? + 7;
    let range: String = detail[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '–').collect();
    range.contains('–').then(|| format!(" {range}"))
}
