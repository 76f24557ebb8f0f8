//! The operator page in a real browser: headless Debian Chromium driven over WebDriver
//! (chromedriver) against the real `loa run` on loopback. Sign in, upload, a refused upload in
//! Vietnamese, "Phát ngay" to the airtime log, the CSV download, the district's read-only view;
//! screenshots at phone and desktop widths (target/tmp/e2e/), and no horizontal scroll.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{Device, FIXTURES, Station};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver session on a chromedriver of our own, in a process group of its own so that
/// the browser it starts ends with it (Chromium outlived a killed chromedriver, reparented to
/// PID 1, two process trees per test run).
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    session: String,
    base: String,
    client: reqwest::Client,
}

impl Browser {
    pub(crate) async fn start(downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = crate::helpers::http_client();
        let root = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while client.get(format!("{root}/status")).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--no-first-run", "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync",
                     // The crash handler starts a session of its own, out of the driver's group.
                     "--disable-crash-reporter", "--disable-breakpad"],
            "prefs": {"download.default_directory": downloads, "download.prompt_for_download": false},
        }}}});
        let session = client.post(format!("{root}/session")).json(&capabilities).send().await.unwrap();
        let session: Value = session.json().await.unwrap();
        let id = session["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}"));
        Browser { driver, port, session: id.to_owned(), base: format!("{root}/session/{id}"), client }
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.client.request(method, format!("{}{path}", self.base));
        let request = if body.is_null() { request } else { request.json(&body) };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    pub(crate) async fn open(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub(crate) async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    pub(crate) async fn element(&self, css: &str) -> String {
        let found = self.post("/element", json!({"using": "css selector", "value": css})).await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    /// Replaces a field's text (or chooses the file of a file input).
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/clear"), json!({})).await;
        self.post(&format!("/element/{element}/value"), json!({"text": text})).await;
    }

    /// Fills the library's upload form with `file` and `title` and sends it.
    pub(crate) async fn upload(&self, file: &Path, title: &str) {
        self.type_into("#upload-file", file.to_str().unwrap()).await;
        self.type_into("#upload-title", title).await;
        self.click("#upload-submit").await;
    }

    /// Polls a JavaScript expression until it is truthy; panics with the page's text if not.
    pub(crate) async fn wait(&self, what: &str, expression: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self.script(&format!("return {expression};")).await;
            if !(value.is_null() || value == false || value == "") {
                return value;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let text = self.script("return document.body.innerText;").await;
                panic!("timed out waiting for {what}; the page says:\n{}", text.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the page holds no English sentence and no jargon (a word list).
    pub(crate) async fn assert_vietnamese(&self, where_: &str) {
        const ENGLISH: [&str; 12] = [
            "the ",
            " is ",
            "cannot",
            " not ",
            "error",
            "failed",
            "completed",
            "lufs",
            "dbfs",
            " and ",
            "please",
            "invalid",
        ];
        let text = self.script("return document.body.innerText;").await;
        let lower = text.as_str().unwrap_or_default().to_lowercase();
        for word in ENGLISH {
            assert!(!lower.contains(word), "`{}` on {where_}: {}", word.trim(), text.as_str().unwrap_or_default());
        }
    }

    /// The page reads in words at this width: Vietnamese (`assert_vietnamese`), no period code
    /// (`2026-W49`, `2026-Q4`, an ISO date), none of the station's `codes` (topic, language and
    /// slot ids) as a word, and no sideways scroll. A report's proof line (`.proof`: the station
    /// id and hash an auditor checks with `loa verify`) is the one place codes belong.
    pub(crate) async fn assert_in_words(&self, where_: &str, codes: &[&str]) {
        self.assert_vietnamese(where_).await;
        let script = format!(
            "let text = document.body.innerText; \
             for (const proof of document.querySelectorAll('.proof')) text = text.replace(proof.innerText, ''); \
             const period = text.match(/\\b\\d{{4}}-(W\\d\\d|Q[1-4]|H[12]|\\d\\d)\\b/); \
             if (period) return 'a period code: ' + period[0]; \
             for (const code of {codes}) {{ \
               const word = new RegExp('(^|[\\\\s(/,:«])' + code + '($|[\\\\s)/,.:»])'); \
               if (word.test(text)) return 'the code ' + code; \
             }} \
             const [scroll, width] = [document.documentElement.scrollWidth, document.documentElement.clientWidth]; \
             return scroll > width ? 'sideways scroll: ' + scroll + ' > ' + width : '';",
            codes = serde_json::to_string(codes).unwrap()
        );
        let found = self.script(&script).await;
        let text = self.script("return document.body.innerText;").await;
        assert_eq!(found, "", "{where_}: {found}; the page says:\n{}", text.as_str().unwrap_or_default());
    }

    pub(crate) async fn accept_alert(&self) {
        let start = Instant::now();
        loop {
            let answer: Value = self
                .client
                .post(format!("{}/alert/accept", self.base))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if answer["value"].is_null() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no confirmation dialog: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The viewport's size, as a phone or a desktop screen (device emulation: a headless
    /// window cannot be made narrower than Chromium's minimum).
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        let metrics = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600});
        self.post("/goog/cdp/execute", json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": metrics})).await;
    }

    /// Saves a screenshot and checks the page does not scroll sideways.
    pub(crate) async fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
        let widths =
            self.script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth];").await;
        assert!(widths[0].as_i64() <= widths[1].as_i64(), "{name}: the page scrolls sideways: {widths}");
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver closes Chromium), then the driver's whole process group:
    /// synchronous, as a panicking test drops it outside any await.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if let Ok(mut driver) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = driver.set_read_timeout(Some(Duration::from_secs(10)));
            let request =
                format!("DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", self.session);
            if driver.write_all(request.as_bytes()).is_ok() {
                let _ = driver.read_to_end(&mut Vec::new());
            }
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

pub(crate) fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn token(station: &Station, role: &str) -> String {
    let run = station.loa(&["token", "create", "--role", role, "--label", "e2e"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_does_the_weekly_job_in_a_phone_browser_and_the_district_only_reads() {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !crate::helpers::require(present, "Chromium and ChromeDriver", "apt-get install chromium chromium-driver") {
        return;
    }
    let station = Station::with_config(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\ndata_dir = \"data\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n\
         [[slot]]\nname = \"chieu\"\ncron = \"0 0 17 * * Mon-Fri\"\nmax_minutes = 15\npeak = true\n\
         [[quota]]\ntopic = \"cchc\"\nper = \"week\"\n\
         [[topic]]\nid = \"cchc\"\nlabel = \"Cải cách hành chính\"\n\
         [[topic]]\nid = \"thong-bao\"\nlabel = \"Thông báo của phường\"\n",
    );
    // Codes a person must never read: topic, language and slot ids, the station's id.
    const CODES: [&str; 6] = ["cchc", "thong-bao", "vi", "sang", "chieu", "phu-thuy"];
    let operator = token(&station, "operator");
    let daemon = station.start(Device::Unpaced);
    let site = daemon.http_base();
    let downloads = station.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let shots = screenshots_dir();
    let browser = Browser::start(&downloads).await;
    browser.resize(360, 740).await;

    // Sign in: a wrong token is refused in plain Vietnamese, the right one opens the library.
    browser.open(&format!("{site}/")).await;
    browser.wait("the sign-in form", "!document.getElementById('dang-nhap').hidden").await;
    let width = browser.script("return window.innerWidth;").await;
    assert_eq!(width, 360, "a phone-sized viewport");
    browser.screenshot(&shots, "dang-nhap-360").await;
    browser.type_into("#token", "loa_khong_dung").await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser.wait("the refusal", "document.getElementById('sign-in-error').innerText.includes('không đúng')").await;
    browser.type_into("#token", &operator).await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser
        .wait(
            "the library",
            "!document.getElementById('thu-vien').hidden && document.getElementById('role').innerText === 'Cán bộ đài'",
        )
        .await;

    // The form offers exactly this station's topics, by their names.
    let topics = browser
        .script(
            "return [...document.querySelectorAll('#upload-topic option')].map(o => o.value + '=' + o.text).join('|');",
        )
        .await;
    assert_eq!(topics, "cchc=Cải cách hành chính|thong-bao=Thông báo của phường");

    // Upload an emergency bulletin and see it listed.
    let tone = Path::new(FIXTURES).join("cbr128_stereo_44k.mp3");
    browser.script("document.getElementById('upload-priority').value = 'emergency'; return true;").await;
    browser.upload(&tone, "Thông báo khẩn: mưa lũ").await;
    browser.wait("the upload accepted", "document.querySelector('#upload-result.ok')").await;
    browser
        .wait("the clip listed", "document.getElementById('clips').innerText.includes('Thông báo khẩn: mưa lũ')")
        .await;
    browser.screenshot(&shots, "thu-vien-360").await;
    browser.assert_in_words("thu-vien-360", &CODES).await;
    // Any bulletin can be queued for the next slot from the library, and its topic reads as a word.
    let library = browser.script("return document.getElementById('clips').innerText;").await;
    assert!(library.as_str().unwrap().contains("Cải cách hành chính"), "the topic by its name: {library}");
    browser.click("#clips [data-when=next_slot]").await;
    let queued =
        browser.wait("queued for the next slot", "document.querySelector('#library-result.ok')?.innerText").await;
    assert!(queued.as_str().unwrap().contains("khung giờ tới"), "{queued}");

    // A text file named .mp3: refused, with the reason in Vietnamese.
    let bad = station.input("ban-tin.mp3", b"day khong phai am thanh\n");
    browser.upload(&bad, "Tệp hỏng").await;
    let refusal = browser.wait("the refusal", "document.querySelector('#upload-result.error')?.innerText").await;
    let refusal = refusal.as_str().unwrap();
    assert!(refusal.contains("Tệp không phải MP3") && refusal.contains("Đây là tệp văn bản"), "{refusal}");
    browser.assert_vietnamese("the refused upload").await;

    // Schedule: "Phát ngay", confirmed; the airing appears in the log.
    browser.click("nav a[data-page=lich-phat]").await;
    browser.wait("the schedule", "document.querySelectorAll('#schedule .slot').length > 0").await;
    browser
        .wait(
            "the quota mark",
            "document.getElementById('schedule').innerText.includes('chỉ tiêu Cải cách hành chính, mỗi tuần')",
        )
        .await;
    browser.screenshot(&shots, "lich-phat-360").await;
    browser.assert_in_words("lich-phat-360", &CODES).await;
    browser.click("[data-play-now]").await;
    browser.accept_alert().await;
    browser.wait("the queue accepted", "document.querySelector('#queue-result.ok')").await;
    browser.click("nav a[data-page=nhat-ky]").await;
    browser
        .wait("the airing in the log", "(window.location.hash = '#nhat-ky', document.getElementById('airtime').innerText.includes('Hoàn thành')) || (window.dispatchEvent(new HashChangeEvent('hashchange')), false)")
        .await;
    browser.screenshot(&shots, "nhat-ky-360").await;
    browser.assert_in_words("nhat-ky-360", &CODES).await;
    // Paging back through history, a week at a time, and forward again.
    browser.click("#airtime-older").await;
    browser
        .wait("the week before", "document.getElementById('airtime-range').innerText.startsWith('Từ ') && document.getElementById('airtime').innerText.includes('Không có lần phát nào')")
        .await;
    browser.click("#airtime-newer").await;
    browser
        .wait("the last 7 days again", "document.getElementById('airtime').innerText.includes('Hoàn thành') && document.getElementById('airtime-newer').hidden")
        .await;

    // The CSV download.
    browser.click("#airtime-csv").await;
    let start = Instant::now();
    let csv = loop {
        let done = std::fs::read_dir(&downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"));
        if let Some(path) = done {
            break std::fs::read(path).unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no CSV downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(csv.starts_with(b"\xEF\xBB\xBF"), "a CSV Excel opens as UTF-8");
    let csv = String::from_utf8(csv[3..].to_vec()).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..3], ["Ngày", "Giờ bắt đầu", "Giờ kết thúc"], "the clerk's CSV, in Vietnamese: {header:?}");
    let aired = reader.records().map(|r| r.unwrap()).find(|r| &r[5] == "Thông báo khẩn: mưa lũ").expect(&csv);
    assert_eq!(
        (&aired[3], &aired[6], &aired[7], &aired[9]),
        ("Ngoài khung giờ", "Cải cách hành chính", "Tiếng Việt", "Phát trọn vẹn"),
        "{csv}"
    );

    // Compliance at a glance.
    browser.click("nav a[data-page=tuan-thu]").await;
    browser.wait("the standings", "document.querySelectorAll('#standings .standing').length > 0 && document.querySelectorAll('#reports .report').length === 5").await;
    // Periods and counts in words: "Tuần 49 (30/11–6/12/2026)", "0 lần phát trọn vẹn (cần 1)".
    let standings = browser.script("return document.getElementById('standings').innerText;").await;
    let standings = standings.as_str().unwrap();
    assert!(standings.contains("Tuần ") && standings.contains("(cần ") && !standings.contains("-W"), "{standings}");
    browser.screenshot(&shots, "tuan-thu-360").await;
    browser.assert_in_words("tuan-thu-360", &CODES).await;

    // The same pages on a desktop.
    browser.resize(1280, 900).await;
    for page in ["thu-vien", "lich-phat", "tuan-thu", "nhat-ky"] {
        browser.click(&format!("nav a[data-page={page}]")).await;
        browser.wait(page, &format!("!document.getElementById('{page}').hidden")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.assert_in_words(page, &CODES).await;
        browser.screenshot(&shots, &format!("{page}-desktop")).await;
    }

    // "Xem, in": the printable report opens in this tab at its own URL, styled under its policy.
    browser.click("nav a[data-page=tuan-thu]").await;
    browser.wait("the reports", "document.querySelectorAll('#reports .report').length === 5").await;
    // (The list may be drawn again as the page settles: click whatever button is there now.)
    browser.script("document.querySelector('[data-report][data-format=html]').click();").await;
    browser
        .wait(
            "the printable report",
            "location.pathname === '/reports/compliance' && document.readyState === 'complete'",
        )
        .await;
    let font = browser.script("return getComputedStyle(document.body).fontFamily;").await;
    assert!(font.as_str().unwrap_or_default().contains("Times"), "the report is unstyled: {font}");
    browser.assert_in_words("the printable report", &CODES).await;
    browser.screenshot(&shots, "bao-cao-desktop").await;
    // On a phone: its own viewport (not 980 px of tiny text), rows as cards, no sideways scroll.
    browser.resize(360, 740).await;
    browser.script("location.reload(); return true;").await;
    browser
        .wait("the report again", "document.readyState === 'complete' && document.querySelector('h1') !== null")
        .await;
    let width = browser.script("return document.documentElement.clientWidth;").await;
    assert_eq!(width, 360, "the report has a phone viewport");
    browser.assert_in_words("the printable report on a phone", &CODES).await;
    browser.screenshot(&shots, "bao-cao-360").await;
    browser.resize(1280, 900).await;
    browser.open(&format!("{site}/")).await;
    browser.wait("back in the page", "!document.getElementById('thu-vien').hidden").await;

    // The district: the same pages, nothing to change, and the API refuses an upload anyway.
    // It signs in from the QR code's link, with a one-time pairing code, typing nothing.
    browser.click("#sign-out").await;
    browser.wait("the sign-in form", "!document.getElementById('dang-nhap').hidden").await;
    let paired = station.loa(&["token", "create", "--role", "district", "--label", "Phòng Nội vụ", "--pair"]);
    assert_eq!(paired.code, 0, "{}", paired.stderr);
    let code = paired.stdout.lines().next().unwrap().trim_start_matches("Mã ghép nối: ").to_owned();
    assert!(paired.stdout.contains(&format!("/#pair={code}")) && paired.stdout.contains('▀'), "{}", paired.stdout);
    browser.open(&format!("{site}/#pair={code}")).await;
    // The operator's list is still on the page until the district's sign-in answers: wait for
    // the read-only role, not just for the list.
    browser
        .wait(
            "the library, read-only",
            "document.body.classList.contains('read-only') \
             && document.getElementById('clips').innerText.includes('Thông báo khẩn: mưa lũ')",
        )
        .await;
    assert_eq!(browser.script("return document.getElementById('upload-form').hidden;").await, true);
    assert_eq!(browser.script("return document.querySelectorAll('[data-retire], [data-queue]').length;").await, 0);
    browser.click("nav a[data-page=lich-phat]").await;
    browser.wait("the schedule", "document.querySelectorAll('#schedule .slot').length > 0").await;
    assert_eq!(browser.script("return document.getElementById('emergency').hidden;").await, true);
    let status = browser
        .post("/execute/async", json!({"script": "const done = arguments[0]; const form = new FormData(); form.append('title', 'x'); form.append('topic', 'cchc'); fetch('/api/v1/clips', {method: 'POST', body: form, headers: {Authorization: 'Bearer ' + sessionStorage.getItem('loa-token')}}).then(r => done(r.status));", "args": []}))
        .await;
    assert_eq!(status, 403, "a district token cannot upload");
    browser.resize(360, 740).await;
    browser.screenshot(&shots, "lich-phat-district-360").await;
    drop(browser);
    daemon.stop();
}
