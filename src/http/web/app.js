// The operator page: a thin client of the JSON API (/api/v1). The token stays in this browser
// tab's sessionStorage; every request carries it. District tokens see the same pages, read-only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("loa-token"), station: null };

const STATUS = {
  completed: "Hoàn thành", partial: "Phát không trọn", interrupted: "Bị gián đoạn",
  preempted: "Bị ngắt bởi tin khẩn", failed: "Thất bại", missed: "Bỏ lỡ",
  met: "Đạt", on_track: "Đúng tiến độ", at_risk: "Có nguy cơ không đạt",
};
const PRIORITY = { normal: "Bình thường", priority: "Ưu tiên", emergency: "Khẩn cấp" };
// Why an airing or a slot did not go as planned, in plain Vietnamese: the station records its
// reasons in English (they are evidence); the page says what they mean. First match wins.
const REASON = [
  ["not playing in real time", "thiết bị âm thanh không phát theo thời gian thực"],
  ["the output was silent", "không nghe thấy tiếng (im lặng)"],
  ["the device took", "chỉ phát được một phần bản tin"],
  ["audio device error", "lỗi thiết bị âm thanh"],
  ["the audio device stopped", "thiết bị âm thanh ngừng nhận tiếng"],
  ["the audio thread did not answer", "thiết bị âm thanh không phản hồi"],
  ["the clip cannot be decoded", "tệp âm thanh bị hỏng; bản tin đã được ngừng phát"],
  ["not played", "không phát được do lỗi ở bản tin trước"],
  ["pre-empted", "nhường cho bản tin khẩn cấp"],
  ["shutdown", "đài được tắt"],
  ["power loss or crash", "mất điện hoặc đài gặp sự cố"],
  ["still playing past", "phát quá thời lượng, đã dừng"],
  ["station_down", "đài ngừng hoạt động"],
  ["previous_airing_overran", "bản tin trước phát quá giờ"],
  ["clock_jumped", "đồng hồ của đài bị chỉnh"],
  ["no_eligible_clip", "không có bản tin phù hợp"],
  ["amplifier", "bộ khuếch đại không bật được"],
];
function reasonVi(reason) {
  const found = REASON.find(([prefix]) => reason.includes(prefix));
  return found ? found[1] : "lý do kỹ thuật";
}
// Loudness in words; the measured figure stays available on hover.
// The station evens out loudness when it airs: advice only where that cannot help (a recording
// so quiet its noise is raised with it, or so loud it is already distorted).
function loudness(lufs) {
  const word = lufs < -35 ? "rất nhỏ: nên thu lại to hơn" : lufs > -8 ? "quá to: có thể bị rè, nên thu lại" : "đài tự cân chỉnh âm lượng";
  return `<span title="${lufs.toFixed(1).replace(".", ",")} LUFS">${word}</span>`;
}
// What the operator reads when the station refuses something; the API's own message follows.
const REFUSAL = {
  unauthorized: "Mã truy cập không đúng hoặc đã bị thu hồi. Hãy xin quản trị đài mã mới.",
  pairing_code_unknown: "Mã ghép nối không đúng, đã dùng hoặc đã hết hạn. Hãy xin quản trị đài mã mới.",
  forbidden: "Mã truy cập này chỉ được xem (cấp huyện), không được thay đổi.",
  duplicate: "Bản tin này đã có trong thư viện (cùng nội dung âm thanh); không thêm lần nữa.",
  too_large: "Tệp quá lớn so với giới hạn của đài. Hãy cắt ngắn hoặc nén lại.",
  disk_full: "Ổ đĩa của đài sắp đầy. Hãy ngừng phát các bản tin cũ hoặc giải phóng dung lượng.",
  empty: "Tệp rỗng, không có dữ liệu.",
  not_mp3: "Tệp không phải MP3. Hãy xuất lại bản tin dưới dạng MP3.",
  no_audio: "Tệp MP3 không chứa âm thanh.",
  truncated: "Tệp MP3 bị cắt cụt (tải lên chưa hết hoặc tệp hỏng). Hãy tải lại tệp gốc.",
  decode_error: "Tệp MP3 bị hỏng ở giữa, không giải mã được.",
  silent: "Bản tin im lặng (không nghe thấy gì).",
  too_short: "Bản tin quá ngắn.",
  too_long: "Bản tin quá dài so với giới hạn của đài.",
  invalid_field: "Thông tin nhập chưa đúng.",
  bad_request: "Yêu cầu không hợp lệ.",
};

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function headers() { return { Authorization: "Bearer " + state.token }; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) signOut(REFUSAL.unauthorized);
  if (!response.ok) throw await apiError(response.status, await response.text());
  return response;
}

function apiError(status, text) {
  try {
    const e = JSON.parse(text).error;
    return new ApiError(status, e.code, e.message);
  } catch (_) {
    return new ApiError(status, "http_" + status, text || "HTTP " + status);
  }
}

// What the station's message says in particulars (the file's real type, the limit broken), in
// Vietnamese; empty when it says none.
const FORMATS = {
  "a WAV file": "tệp WAV", "a FLAC file": "tệp FLAC", "an Ogg (Vorbis/Opus) file": "tệp Ogg",
  "an MP4/M4A file": "tệp MP4/M4A", "an AIFF file": "tệp AIFF", "an AMR voice recording": "bản ghi âm AMR",
  "a WMA file": "tệp WMA", "a PDF document": "tài liệu PDF", "a ZIP/Office document": "tài liệu Word/Excel/ZIP",
};
function particulars(error) {
  const message = error.message || "";
  if (error.code === "not_mp3") {
    const format = Object.keys(FORMATS).find((name) => message.includes(name));
    if (format) return ` Đây là ${FORMATS[format]}.`;
    if (/\btext\b/.test(message)) return " Đây là tệp văn bản.";
  }
  let m;
  if (error.code === "too_long" && (m = /the (\d+) s maximum/.exec(message))) return ` Tối đa ${Math.round(m[1] / 60)} phút.`;
  if (error.code === "too_short" && (m = /the (\d+) ms minimum/.exec(message))) return ` Tối thiểu ${Math.round(m[1] / 1000)} giây.`;
  if (error.code === "too_large" && (m = /the (\d+) MiB limit/.exec(message))) return ` Tối đa ${m[1]} MB.`;
  return "";
}

function explain(error) {
  const plain = (REFUSAL[error.code] || "Đài từ chối yêu cầu.") + particulars(error);
  // The station's own message is for whoever fixes it: folded away, on request.
  return `${plain} <details class="detail"><summary>Chi tiết kỹ thuật</summary>${escape(error.message)}</details>`;
}

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function show(id, html, cls) {
  const el = $(id);
  el.innerHTML = html;
  el.className = cls || "";
  el.hidden = false;
}

// Times are shown in the station's time zone, whatever the phone's.
function localTime(ms, withDate = true) {
  if (ms == null) return "—";
  const options = { timeZone: state.station.timezone, hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDate) Object.assign(options, { weekday: "short", day: "2-digit", month: "2-digit" });
  return new Intl.DateTimeFormat("vi-VN", options).format(new Date(ms));
}

function stationDate(offsetDays = 0) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: state.station.timezone, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date(Date.now() + offsetDays * 86400000));
  return parts; // YYYY-MM-DD
}

function minutes(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// A period's code as people write it: "2026-W49" → "Tuần 49 (30/11–6/12/2026)", "2026-12" →
// "Tháng 12/2026", "2026-Q4" → "Quý 4/2026", "2026-H2" → "6 tháng cuối năm 2026", "2026" → "Năm 2026".
function periodLabel(code) {
  let m = /^(\d{4})-W(\d{2})$/.exec(code);
  if (m) {
    const [year, week] = [Number(m[1]), Number(m[2])];
    const jan4 = new Date(Date.UTC(year, 0, 4));
    const monday = new Date(jan4.getTime() - ((jan4.getUTCDay() + 6) % 7) * 86400000 + (week - 1) * 7 * 86400000);
    const sunday = new Date(monday.getTime() + 6 * 86400000);
    const day = (d) => `${d.getUTCDate()}/${d.getUTCMonth() + 1}`;
    return `Tuần ${week} (${day(monday)}–${day(sunday)}/${sunday.getUTCFullYear()})`;
  }
  if ((m = /^(\d{4})-(\d{2})$/.exec(code))) return `Tháng ${Number(m[2])}/${m[1]}`;
  if ((m = /^(\d{4})-Q(\d)$/.exec(code))) return `Quý ${m[2]}/${m[1]}`;
  if ((m = /^(\d{4})-H(\d)$/.exec(code))) return `${m[2] === "1" ? "6 tháng đầu năm" : "6 tháng cuối năm"} ${m[1]}`;
  if ((m = /^(\d{4})$/.exec(code))) return `Năm ${m[1]}`;
  return code;
}

const isOperator = () => state.station && state.station.role === "operator";

// ---- sign in -------------------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  const response = await fetch("/api/v1/station", { headers: headers() });
  if (!response.ok) {
    state.token = null;
    const error = await apiError(response.status, await response.text());
    throw error;
  }
  state.station = await response.json();
  sessionStorage.setItem("loa-token", token);
  $("station-name").textContent = state.station.name;
  $("role").textContent = isOperator() ? "Cán bộ đài" : "Cấp huyện — chỉ xem";
  $("role").hidden = false;
  $("nav").hidden = false;
  document.body.classList.toggle("read-only", !isOperator());
  for (const el of document.querySelectorAll(".operator-only")) el.hidden = !isOperator();
  // Exactly the station's own topics and languages, by the names its config gives them.
  fillChoices("upload-topic", state.station.topics);
  fillChoices("upload-language", state.station.languages);
  showReceipt(state.station.receipt);
}

// What the office above the station holds of its log: its latest signed receipt.
function showReceipt(receipt) {
  $("receipt").textContent = receipt
    ? `Phòng kiểm tra (${receipt.office}) đã nhận đến bản ghi ${receipt.head_seq} lúc ${localTime(receipt.at)}.`
    : "Phòng kiểm tra chưa nhận nhật ký của đài.";
}

function fillChoices(id, choices) {
  $(id).innerHTML = (choices || []).map((c, i) => `<option value="${escape(c.id)}"${i === 0 ? " selected" : ""}>${escape(c.label)}</option>`).join("");
}

function signOut(message) {
  sessionStorage.removeItem("loa-token");
  state.token = null;
  state.station = null;
  $("nav").hidden = true;
  $("role").hidden = true;
  location.hash = "#dang-nhap";
  if (message) show("sign-in-error", message, "error");
  route();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").hidden = true;
  try {
    const typed = $("token").value.trim();
    await signIn(isPairingCode(typed) ? await redeem(typed) : typed);
    $("token").value = "";
    location.hash = "#thu-vien";
  } catch (error) {
    show("sign-in-error", error.code === "unauthorized" ? REFUSAL.unauthorized : explain(error), "error");
  }
});
$("sign-out").addEventListener("click", () => signOut());

// A pairing code (`loa token create --pair`): 8 letters and digits, the dash optional.
function isPairingCode(text) {
  return /^[0-9A-Za-z]{4}-?[0-9A-Za-z]{4}$/.test(text);
}

// Trades a pairing code for the token it makes (shown this once, kept for this tab).
async function redeem(code) {
  // In a header: the station judges the code before it would read a body.
  const response = await fetch("/api/v1/pair", { method: "POST", headers: { "Authorization": "Pairing " + code } });
  if (!response.ok) throw await apiError(response.status, await response.text());
  return (await response.json()).token;
}

// ---- pages ----------------------------------------------------------------------------------

const PAGES = { "thu-vien": loadLibrary, "lich-phat": loadSchedule, "tuan-thu": loadCompliance, "nhat-ky": loadAirtime };

// The QR code's link carries a pairing code (`#pair=…`): sign in with it, and drop it from the
// address. True when it did (and went on to the library).
async function pairFromLink() {
  const paired = location.hash.match(/^#pair=([0-9A-Za-z-]+)$/);
  if (!paired) return false;
  history.replaceState(null, "", location.pathname);
  try {
    await signIn(await redeem(paired[1]));
    location.hash = "#thu-vien"; // routes there
  } catch (error) {
    signOut(REFUSAL[error.code] || REFUSAL.pairing_code_unknown);
  }
  return true;
}

async function route() {
  if (await pairFromLink()) return;
  let page = location.hash.slice(1);
  if (!state.station) page = "dang-nhap";
  else if (!PAGES[page]) page = "thu-vien";
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === page);
  $("page-error").hidden = true;
  if (PAGES[page]) {
    try {
      await PAGES[page]();
    } catch (error) {
      show("page-error", explain(error), "error");
    }
  }
}
window.addEventListener("hashchange", route);

// Library: upload with progress, then the list.
async function loadLibrary() {
  const [{ clips }, { bulletins }] = await Promise.all([
    api("/api/v1/clips").then((r) => r.json()),
    api("/api/v1/office-bulletins").then((r) => r.json()),
  ]);
  showOfficeBulletins(bulletins);
  const owed = new Map(bulletins.filter((b) => b.owed).map((b) => [b.clip_id, b]));
  const active = clips.filter((c) => !c.retired_at).reverse();
  $("clips").innerHTML = active.length ? active.map((c) => clipItem(c, owed.get(c.id))).join("") : '<p class="hint">Chưa có bản tin nào.</p>';
  for (const button of document.querySelectorAll("[data-retire]")) {
    button.addEventListener("click", () => retire(Number(button.dataset.retire), button.dataset.title));
  }
  for (const button of document.querySelectorAll("#clips [data-queue]")) {
    button.addEventListener("click", () => queue(Number(button.dataset.queue), button.dataset.when, button.dataset.title, "library-result"));
  }
}

// A code's name as the station's config gives it (the code itself only when it has none).
function label(choices, id) {
  const choice = (choices || []).find((c) => c.id === id);
  return choice ? choice.label : id;
}

// A slot by the name the station gives it ("Bản tin sáng", "Khung giờ 05:30").
function slotName(id) {
  return label(state.station && state.station.slots, id);
}

// "2026-12-01" as Vietnamese writes it: "1/12/2026".
function dayVi(iso) {
  const [year, month, day] = iso.split("-").map(Number);
  return `${day}/${month}/${year}`;
}

function validity(c) {
  if (!c.valid_from && !c.valid_until) return "luôn có hiệu lực";
  return `hiệu lực ${c.valid_from ? dayVi(c.valid_from) : "…"} → ${c.valid_until ? dayVi(c.valid_until) : "…"}`;
}

// `owed`: the office's bulletin this clip is, while the station still owes it airings: it
// cannot be retired here (only the office withdraws it).
function clipItem(c, owed) {
  const aired = c.last_aired_at ? `phát gần nhất ${localTime(c.last_aired_at)}` : "chưa phát";
  const title = escape(c.title);
  const retire = owed
    ? `<span class="hint">Bản tin của ${escape(owed.office)}: đài còn phải phát ${owed.airings - owed.completed} lần</span>`
    : `<button class="secondary" data-retire="${c.id}" data-title="${title}">Ngừng phát</button>`;
  const actions = isOperator() && !c.retired_at
    ? `<div class="actions"><button data-queue="${c.id}" data-when="next_slot" data-title="${title}">Phát ở khung giờ tới</button>
       <button class="danger" data-queue="${c.id}" data-when="now" data-title="${title}">Phát ngay</button>
       ${retire}</div>`
    : "";
  return `<div class="item clip" data-clip="${c.id}"><div class="title">${title}</div>
    <div class="meta"><span class="tag">${escape(label(state.station.topics, c.topic))}</span><span class="tag">${escape(label(state.station.languages, c.language))}</span>${PRIORITY[c.priority] ? `<span class="tag">${PRIORITY[c.priority]}</span>` : ""}</div>
    <div class="meta">${minutes(c.duration_ms)} · ${loudness(c.loudness_lufs)} · ${validity(c)} · ${aired}</div>${actions}</div>`;
}

// Why the station refused an office's bulletin, in plain words.
const BULLETIN_REFUSAL = {
  bad_signature: "không có chữ ký hợp lệ của cơ quan cấp trên đã đăng ký với đài",
  malformed: "bản tin gửi xuống sai quy cách",
  not_for_this_station: "bản tin không gửi cho đài này",
  expired: "bản tin đã hết hạn khi đến đài",
  hash_mismatch: "tệp âm thanh nhận được không đúng tệp đã gửi",
  not_playable: "tệp âm thanh không phát được",
  withdrawn: "bản tin đã bị thu hồi",
};

// The office's bulletins: what was received, aired, refused (and why) or withdrawn.
function showOfficeBulletins(bulletins) {
  $("office-section").hidden = bulletins.length === 0;
  const office = bulletins.map((b) => b.office).find(Boolean);
  $("office-heading").textContent = office ? `Bản tin từ ${office}` : "Bản tin từ cấp trên";
  $("office-bulletins").innerHTML = bulletins.slice().reverse().map((b) => {
    const state = b.state === "refused" ? `<span class="status-failed">Đài không nhận: ${BULLETIN_REFUSAL[b.refused_reason] || "lý do khác"}</span>`
      : b.state === "withdrawn" ? "Cấp trên đã thu hồi"
      : b.owed ? `Đã phát ${b.completed}/${b.airings} lần, đến hết ${dayVi(b.valid_until)}`
      : `Đã phát ${b.completed} lần`;
    const when = b.valid_from ? ` · từ ${dayVi(b.valid_from)} đến ${dayVi(b.valid_until)}` : "";
    return `<div class="item bulletin"><div class="title">${escape(b.title || "Bản tin bị từ chối")}</div>
      <div class="meta">${PRIORITY[b.priority] ? `<span class="tag">${PRIORITY[b.priority]}</span>` : ""}${state}${when}</div></div>`;
  }).join("");
}

async function retire(id, title) {
  if (!confirm(`Ngừng phát bản tin “${title}”? Bản tin vẫn được lưu trong nhật ký.`)) return;
  await api(`/api/v1/clips/${id}`, { method: "DELETE" });
  await loadLibrary();
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  for (const key of ["valid_from", "valid_until"]) if (!form.get(key)) form.delete(key);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/v1/clips");
  request.setRequestHeader("Authorization", "Bearer " + state.token);
  const progress = $("upload-progress");
  progress.hidden = false;
  progress.value = 0;
  $("upload-submit").disabled = true;
  $("upload-result").hidden = true;
  request.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total; };
  request.onload = async () => {
    $("upload-submit").disabled = false;
    progress.hidden = true;
    if (request.status === 201) {
      const clip = JSON.parse(request.responseText);
      show("upload-result", `Đã nhận bản tin “${escape(clip.title)}”: dài ${minutes(clip.duration_ms)}, ${loudness(clip.loudness_lufs)}.`, "ok");
      event.target.reset();
      await loadLibrary();
    } else {
      show("upload-result", explain(apiError(request.status, request.responseText)), "error");
    }
  };
  request.onerror = () => {
    $("upload-submit").disabled = false;
    progress.hidden = true;
    show("upload-result", "Mất kết nối với đài trong khi tải lên. Hãy thử lại.", "error");
  };
  request.send(form);
});

// Schedule: the next 7 days, quota items marked; emergency clips can be aired at once.
async function loadSchedule() {
  const [{ slots }, { clips }] = await Promise.all([
    api("/api/v1/schedule?days=7").then((r) => r.json()),
    api("/api/v1/clips").then((r) => r.json()),
  ]);
  const emergencies = clips.filter((c) => !c.retired_at && c.priority === "emergency");
  $("emergency-list").innerHTML = emergencies.length
    ? emergencies.map((c) => `<div class="item"><div class="title">${escape(c.title)}</div><div class="actions"><button class="danger" data-play-now="${c.id}" data-title="${escape(c.title)}">Phát ngay</button></div></div>`).join("")
    : '<p class="hint">Không có bản tin khẩn cấp nào (tải lên với mức ưu tiên “Khẩn cấp”).</p>';
  for (const button of document.querySelectorAll("[data-play-now]")) {
    button.addEventListener("click", () => queue(Number(button.dataset.playNow), "now", button.dataset.title, "queue-result"));
  }
  showSlots(slots, 50);
}

// The next `count` airings (a station with slots every minute has thousands in 7 days), then
// "xem thêm" for 50 more.
function showSlots(slots, count) {
  const more = slots.length > count
    ? `<button class="secondary" id="schedule-more">Xem thêm (còn ${slots.length - count} lượt)</button>` : "";
  $("schedule").innerHTML = slots.length
    ? slots.slice(0, count).map(slotItem).join("") + more
    : '<p class="hint">Không có khung giờ phát nào trong 7 ngày tới.</p>';
  if (more) $("schedule-more").addEventListener("click", () => showSlots(slots, count + 50));
}

function slotItem(s) {
  const items = s.items.length
    ? s.items.map((i) => `<li>${escape(i.title)} <span class="hint">${minutes(i.duration_ms)}</span>${i.quota ? ` <span class="tag quota">chỉ tiêu ${escape(label(state.station.topics, i.quota.topic))}, mỗi ${i.quota.per === "week" ? "tuần" : "tháng"}</span>` : ""}${i.queued ? ' <span class="tag">đã xếp hàng</span>' : ""}</li>`).join("")
    : '<li class="hint">chưa có bản tin phù hợp</li>';
  return `<div class="item slot"><div class="title">${localTime(Date.parse(s.at))} · ${escape(slotName(s.slot))} ${s.peak ? '<span class="tag peak">giờ cao điểm</span>' : ""}</div><ul>${items}</ul></div>`;
}

// Queues a bulletin "now" (what is on air is cut) or for the next slot; `where` shows the outcome.
async function queue(id, when, title, where) {
  if (when === "now" && !confirm(`Phát ngay “${title}”? Bản tin đang phát (nếu có) sẽ bị ngắt.`)) return;
  try {
    await api("/api/v1/queue", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ clip_id: id, when }) });
    const said = when === "now" ? `Đã yêu cầu phát ngay “${escape(title)}”.` : `“${escape(title)}” sẽ phát ở khung giờ tới.`;
    show(where, `${said} Xem kết quả ở Nhật ký phát sóng.`, "ok");
  } catch (error) {
    show(where, explain(error), "error");
  }
}

// Compliance: this week and month from the live standings; past periods from the reports.
async function loadCompliance() {
  const health = await (await fetch("/healthz")).json();
  const standings = (health.checks && health.checks.quotas) || [];
  $("standings").innerHTML = standings.length
    ? standings.map((q) => `<div class="item standing"><div class="title">${escape(label(state.station.topics, q.topic))}${q.language ? " (" + escape(label(state.station.languages, q.language)) + ")" : ""} — ${escape(periodLabel(q.period))}</div>
        <div><span class="status-${q.status}">${STATUS[q.status] || q.status}</span> · ${q.completed} lần phát trọn vẹn (cần ${q.required})</div></div>`).join("")
    : '<p class="hint">Đài chưa cấu hình chỉ tiêu nào.</p>';
  // The periods and their names come from the station (its calendar, its clock).
  const { report_periods } = await (await api("/api/v1/station")).json();
  const periods = report_periods.map((p) => [p.code, p.name, p.label]);
  const results = await Promise.all(periods.map(([p]) => api(`/api/v1/compliance?period=${p}&format=json`).then((r) => r.json())));
  $("reports").innerHTML = periods.map(([p, name, spans], i) => {
    const quotas = results[i].quotas || [];
    const summary = quotas.map((q) => `${escape(label(state.station.topics, q.topic))}, mỗi ${q.per === "week" ? "tuần" : "tháng"}: <span class="${q.missed ? "status-missed" : "status-met"}">${q.met} đạt, ${q.missed} không đạt</span>`).join(" · ");
    return `<div class="item report"><div class="title">${escape(name)}: ${escape(spans)}</div><div class="meta">${summary || "không có chỉ tiêu"}</div>
      <div class="actions"><button class="secondary" data-report="${p}" data-format="html">Xem, in</button><button class="secondary" data-report="${p}" data-format="csv-vi">Tải CSV</button></div></div>`;
  }).join("");
  for (const button of document.querySelectorAll("[data-report]")) {
    button.addEventListener("click", () => report(button.dataset.report, button.dataset.format));
  }
}

async function report(period, format) {
  if (format === "html") {
    // A plain page at a signed URL (valid 10 minutes): no pop-up for a phone to block.
    const { url } = await (await api(`/api/v1/compliance/link?period=${period}`)).json();
    window.location.href = url;
    return;
  }
  const blob = await (await api(`/api/v1/compliance?period=${period}&format=${format}`)).blob();
  download(blob, `tuan-thu-${state.station.id}-${period}.csv`);
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
}

// Airtime log: the last 7 days' airings and missed slots, newest first.
// The log, a week at a time: `weeksBack` 0 is the last 7 days; the older buttons page back
// through the whole history.
let weeksBack = 0;

function airtimeRange() {
  return { from: stationDate(-6 - 7 * weeksBack), to: stationDate(-7 * weeksBack) };
}

async function loadAirtime() {
  const { from, to } = airtimeRange();
  const { events } = await (await api(`/api/v1/airtime?from=${from}&to=${to}&limit=10000&format=json`)).json();
  const rows = events.filter((e) => e.kind === "airing_ended" || e.kind === "slot_missed").reverse();
  const range = weeksBack === 0 ? "7 ngày gần nhất" : `Từ ${dayMonth(from)} đến ${dayMonth(to)}`;
  $("airtime-range").textContent = range;
  $("airtime-newer").hidden = weeksBack === 0;
  $("airtime").innerHTML = rows.length ? rows.map(airingItem).join("") : `<p class="hint">Không có lần phát nào (${range.toLowerCase()}).</p>`;
}

function dayMonth(date) {
  const [year, month, day] = date.split("-").map(Number);
  return `${day}/${month}/${year}`;
}

$("airtime-older").addEventListener("click", () => { weeksBack += 1; loadAirtime(); });
$("airtime-newer").addEventListener("click", () => { weeksBack = Math.max(0, weeksBack - 1); loadAirtime(); });

function airingItem(e) {
  const status = e.kind === "slot_missed" ? "missed" : e.status;
  const when = localTime(e.started_at || e.scheduled_at || e.at);
  const what = e.kind === "slot_missed" ? escape(slotName(e.slot)) : escape(e.title);
  const silent = e.kind !== "slot_missed" && e.played_ms > 0 && e.peak_cdbfs <= -6000;
  // A run of missed instants (a long outage): how many, and until when.
  const run = e.kind === "slot_missed" && e.count > 1
    ? ` · ${e.count.toLocaleString("vi-VN")} lần, đến ${localTime(e.last_scheduled_at)}` : "";
  const evidence = e.kind === "slot_missed" ? run
    : ` · <span title="đỉnh ${(e.peak_cdbfs / 100).toFixed(1)} dBFS">đã phát ${minutes(e.played_ms)}/${minutes(e.planned_ms)}${silent ? ", im lặng" : ""}</span>`;
  const slot = e.slot ? escape(slotName(e.slot)) : "ngoài khung giờ";
  return `<div class="item airing"><div class="title">${what}</div>
    <div class="meta">${when} · ${slot} · <span class="status-${status}">${STATUS[status] || status}</span>${evidence}${e.reason ? ` · <span title="${escape(e.reason)}">${reasonVi(e.reason)}</span>` : ""}</div></div>`;
}

$("airtime-csv").addEventListener("click", async () => {
  try {
    const { from, to } = airtimeRange();
    const blob = await (await api(`/api/v1/airtime?from=${from}&to=${to}&limit=10000&format=csv-vi`)).blob();
    download(blob, `nhat-ky-${state.station.id}-${stationDate()}.csv`);
  } catch (error) {
    show("page-error", explain(error), "error");
  }
});

// ---- start -----------------------------------------------------------------------------------

(async () => {
  if (await pairFromLink()) return;
  if (state.token) {
    try {
      await signIn(state.token);
    } catch (_) {
      signOut(REFUSAL.unauthorized);
      return;
    }
  }
  route();
})();
