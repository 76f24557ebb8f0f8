//! The config contract: shipped configs load; every mistake names file, line and key.

use std::path::Path;

use loa::config::{Config, ConfigError};
use loa::time::calendar::QuotaPeriod;

use crate::helpers::{MINIMAL_CONFIG, Station, loa};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/loa/station.toml"), text)
}

/// Asserts `text` is refused at `line` naming `key`, with `hint` in the message.
#[track_caller]
fn refused(text: &str, line: usize, key: &str, hint: &str) {
    let message = parse(text).expect_err("config should be refused").to_string();
    assert!(message.starts_with(&format!("/etc/loa/station.toml:{line}: ")), "wrong line in: {message}");
    assert!(message.contains(key), "key `{key}` not named in: {message}");
    assert!(message.contains(hint), "hint `{hint}` missing from: {message}");
}

/// The demo runs as it is; the example (the package's /etc/loa/station.toml) once the admin has
/// written the station's id, and not before.
#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("config/station.example.toml")).unwrap();
    let unset = Config::parse(&root.join("config/station.example.toml"), &example).unwrap_err().to_string();
    assert!(unset.contains("station.id") && unset.contains("not set") && unset.contains("off air"), "{unset}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.toml"), example.replacen("id = \"\"", "id = \"binh-an\"", 1)).unwrap();
    for path in [dir.path().join("example.toml"), root.join("config/demo.toml")] {
        let name = path.display();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!config.slots.is_empty(), "{name} has slots");
        assert!(
            config.quotas.iter().any(|q| q.topic == "cchc" && q.per == QuotaPeriod::Week && q.peak_only),
            "{name} has the weekly CCHC quota"
        );
    }
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parse(MINIMAL_CONFIG).unwrap();
    assert_eq!(config.station.timezone, chrono_tz::Asia::Ho_Chi_Minh);
    assert_eq!(config.station.data_dir, Path::new("/etc/loa/data"), "data_dir is relative to the config file");
    assert_eq!(config.audio.device, "default");
    assert_eq!(config.audio.target_lufs, -16.0);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.http.max_upload_mib, 200);
    assert_eq!((config.clips.min_duration_ms, config.clips.max_duration_ms), (1000, 1_800_000));
    assert_eq!(config.clips.keep_free_bytes, 200 << 20);
    assert_eq!(config.clock.sync_wait, std::time::Duration::from_secs(600));
    let amplifier = &config.audio.amplifier;
    assert!(amplifier.before_air.is_none() && amplifier.after_air.is_none() && !amplifier.required);
}

const STATION: &str = "[station]\nid = \"s\"\nname = \"Đài\"\n";
const SLOT: &str = "[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n";

#[test]
fn numeric_day_of_week_is_refused_with_the_fix() {
    let text = format!("{STATION}[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * 1-5\"\nmax_minutes = 15\n");
    refused(&text, 6, "slot[0].cron", "Mon-Fri");
}

#[test]
fn mon_to_sun_is_a_whole_week() {
    let config = parse(&format!("{STATION}{SLOT}")).unwrap();
    assert_eq!(config.slots[0].cron.text(), "0 30 5 * * Mon-Sun");
}

#[test]
fn unknown_timezone() {
    refused(
        "[station]\nid = \"s\"\nname = \"Đài\"\ntimezone = \"Asia/Hanoi_City\"\n",
        4,
        "station.timezone",
        "Asia/Ho_Chi_Minh",
    );
}

#[test]
fn two_slots_with_one_name() {
    refused(&format!("{STATION}{SLOT}{SLOT}"), 10, "slot[1].name", "two slots are named \"sang\"");
}

#[test]
fn max_minutes_must_be_positive() {
    for bad in ["0", "-5"] {
        let text = format!("{STATION}[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = {bad}\n");
        refused(&text, 7, "slot[0].max_minutes", "from 1 to");
    }
}

#[test]
fn unknown_key_is_named() {
    refused(&format!("{STATION}colour = \"blue\"\n"), 4, "colour", "unknown field");
}

#[test]
fn wrong_type_names_the_key() {
    let text = format!("{STATION}[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = \"15\"\n");
    refused(&text, 7, "max_minutes", "invalid type");
}

#[test]
fn station_id_shape() {
    refused("[station]\nid = \"Phu Thuy\"\nname = \"Đài\"\n", 2, "station.id", "lowercase");
}

#[test]
fn listen_address_shape() {
    refused(&format!("{STATION}[http]\nlisten = \"localhost\"\n"), 5, "http.listen", "127.0.0.1:8080");
}

#[test]
fn quota_that_can_never_be_met() {
    let text = format!(
        "{STATION}[[slot]]\nname = \"trua\"\ncron = \"0 0 11 * * Sat,Sun\"\nmax_minutes = 10\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n"
    );
    refused(&text, 9, "quota[0].topic", "peak = true");
}

#[test]
fn quota_period_words() {
    let text = format!("{STATION}{SLOT}[[quota]]\ntopic = \"cchc\"\nper = \"fortnight\"\n");
    refused(&text, 11, "quota[0].per", "\"week\"");
}

#[test]
fn missing_required_key() {
    let message = parse("[station]\nname = \"Đài\"\n").unwrap_err().to_string();
    assert!(message.contains(":1:") && message.contains("missing field `id`"), "{message}");
}

#[test]
fn syntax_error_has_a_line() {
    refused(&format!("{STATION}[[slot]\n"), 4, "", "");
}

#[test]
fn check_config_exits_2_on_a_bad_config() {
    let station = Station::with_config("[station]\nid = \"s\"\nname = \"Đài\"\ntimezone = \"Mars/Olympus\"\n");
    let run = station.loa(&["check-config"]);
    assert_eq!(run.code, 2);
    let line = run.error_line();
    assert!(line.contains("station.toml:4: key `station.timezone`"), "{line}");
}

#[test]
fn check_config_exits_2_on_a_missing_file() {
    let run = loa(&["--config", "/nonexistent/station.toml", "check-config"]);
    assert_eq!(run.code, 2);
    assert!(run.error_line().contains("/nonexistent/station.toml: cannot read"), "{}", run.stderr);
}

#[test]
fn check_config_lists_the_next_ten_slot_times_in_station_time() {
    let station = Station::with_config(&format!(
        "{STATION}[[slot]]\nname = \"chieu\"\ncron = \"0 0 17 * * Mon-Fri\"\nmax_minutes = 15\npeak = true\n"
    ));
    let run = station.loa(&["check-config"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let times: Vec<&str> = run.stdout.lines().skip_while(|l| !l.starts_with("next ")).skip(1).collect();
    assert_eq!(times.len(), 10, "{}", run.stdout);
    for line in times {
        assert!(line.contains(" 17:00:00 +07:00  chieu"), "{line}");
        assert!(!line.contains("Sat ") && !line.contains("Sun "), "weekday slot on a weekend: {line}");
    }
}

/// Every validated key, wrong, through the real binary: `loa run` refuses to start with exit 2
/// and one line naming the file, the line and the key.
#[test]
fn each_invalid_key_stops_loa_run_with_its_line_and_exit_2() {
    // (what follows [station] on line 4, line of the mistake, key named, words of the fix)
    let cases: &[(&str, usize, &str, &str)] = &[
        ("timezone = \"Asia/Hanoi City\"\n", 4, "station.timezone", "IANA"),
        ("data_dir = \" \"\n", 4, "station.data_dir", "give a directory"),
        ("colour = \"blue\"\n", 4, "colour", "unknown field"),
        ("[audio]\ndevice = \"\"\n", 5, "audio.device", "ALSA"),
        ("[audio]\ntarget_lufs = 3.0\n", 5, "audio.target_lufs", "-40..0"),
        ("[audio]\nbefore_air = []\n", 5, "audio.before_air", "first item is the program"),
        ("[audio]\nafter_air = [\"\"]\n", 5, "audio.after_air", "first item is the program"),
        ("[audio]\nbefore_air = \"gpioset 17=1\"\n", 5, "audio.before_air", "sequence"),
        ("[audio]\nwarmup_ms = 60000\n", 5, "audio.warmup_ms", "0 to 30000"),
        ("[audio]\nhook_required = true\n", 5, "audio.hook_required", "no audio.before_air"),
        ("[http]\nlisten = \"8080\"\n", 5, "http.listen", "address:port"),
        ("[http]\nmax_upload_mib = 0\n", 5, "http.max_upload_mib", "at least 1"),
        ("[http]\nmetrics_public = \"yes\"\n", 5, "http.metrics_public", "bool"),
        ("[clips]\nmin_seconds = -1\n", 5, "clips.min_seconds", "positive"),
        ("[clips]\nmin_seconds = 10\nmax_seconds = 5\n", 6, "clips.max_seconds", "below clips.min_seconds"),
        ("[clips]\nkeep_free_mib = -5\n", 5, "clips.keep_free_mib", "negative"),
        ("[clock]\nsync_wait_seconds = -1\n", 5, "clock.sync_wait_seconds", "0 to 86400"),
        ("[clock]\nwait = 10\n", 5, "wait", "unknown field"),
        ("[[slot]]\nname = \"Sáng\"\ncron = \"0 0 5 * * Mon\"\nmax_minutes = 5\n", 5, "slot[0].name", "lowercase"),
        ("[[slot]]\nname = \"sang\"\ncron = \"0 0 5 * * 2\"\nmax_minutes = 5\n", 6, "slot[0].cron", "Sunday"),
        ("[[slot]]\nname = \"sang\"\ncron = \"0 0 25 * * Mon\"\nmax_minutes = 5\n", 6, "slot[0].cron", "Hours"),
        ("[[slot]]\nname = \"sang\"\ncron = \"0 0 5 * * Mon\"\nmax_minutes = 0\n", 7, "slot[0].max_minutes", "1 to"),
        (
            "[[slot]]\nname = \"sang\"\ncron = \"0 0 5 * * Mon\"\nmax_minutes = 5\ngrace_seconds = -3\n",
            8,
            "slot[0].grace_seconds",
            "0 to 86400",
        ),
        ("[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n", 5, "quota[0].topic", "can never be met"),
        (
            "[[slot]]\nname = \"s\"\ncron = \"0 0 5 * * Mon\"\nmax_minutes = 5\npeak = true\n[[quota]]\ntopic = \"cchc\"\nper = \"year\"\n",
            11,
            "quota[0].per",
            "\"week\"",
        ),
        (
            "[[slot]]\nname = \"s\"\ncron = \"0 0 5 * * Mon\"\nmax_minutes = 5\npeak = true\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\ncount = 0\n",
            12,
            "quota[0].count",
            "1 or more",
        ),
        (
            "[[preload]]\nfile = \"a.mp3\"\ntitle = \" \"\ntopic = \"cchc\"\n",
            6,
            "preload[0].title",
            "give the bulletin a title",
        ),
        ("[office]\npublic_key = \"abc\"\n", 5, "office.public_key", "loa district status --json"),
        (
            "[upstream]\nurl = \"http://10.0.0.1:8090\"\ntoken = \"loa_0000000000000000000000000000000000000000000000000000000000000000\"\n",
            5,
            "office.public_key",
            "receipts",
        ),
    ];
    for (tail, line, key, hint) in cases {
        let station = Station::with_config(&format!("{STATION}{tail}"));
        let run = station.loa(&["run"]);
        assert_eq!(run.code, 2, "`{tail}` should exit 2: {}", run.stderr);
        let message = run.error_line();
        assert!(message.contains(&format!("station.toml:{line}: ")), "`{tail}`: wrong line in: {message}");
        assert!(
            message.contains(&format!("key `{key}`")) || message.contains(key),
            "`{tail}`: no `{key}` in: {message}"
        );
        assert!(message.contains(hint), "`{tail}`: hint `{hint}` missing from: {message}");
        assert!(!station.data_dir().exists(), "`{tail}`: a refused config must not create the station");
    }
}

#[test]
fn a_slot_that_never_fires_is_refused() {
    for never in ["0 30 5 31 2 *", "0 30 5 30 2 Mon-Sun", "0 0 6 31 4,6,9,11 *"] {
        let text = format!(
            "[station]\nid = \"s\"\nname = \"n\"\n[[slot]]\nname = \"a\"\ncron = \"{never}\"\nmax_minutes = 5\n"
        );
        refused(&text, 6, "slot[0].cron", "never fires");
    }
    // 29 February does come, every four years.
    let leap =
        "[station]\nid = \"s\"\nname = \"n\"\n[[slot]]\nname = \"a\"\ncron = \"0 30 5 29 2 *\"\nmax_minutes = 5\n";
    assert!(parse(leap).is_ok());
}

#[test]
fn out_of_range_cron_fields_state_their_real_bounds() {
    for (cron, hint) in [
        ("0 61 5 * * Mon-Sun", "Minutes must be 0 to 59; `61` was given"),
        ("60 30 5 * * Mon-Sun", "Seconds must be 0 to 59; `60` was given"),
        ("0 30 24 * * Mon-Sun", "Hours must be 0 to 23; `24` was given"),
    ] {
        let text = format!(
            "[station]\nid = \"s\"\nname = \"n\"\n[[slot]]\nname = \"a\"\ncron = \"{cron}\"\nmax_minutes = 5\n"
        );
        refused(&text, 6, "slot[0].cron", hint);
    }
}

#[test]
fn topics_and_languages_come_from_the_config_with_their_names() {
    let listed = "[station]\nid = \"s\"\nname = \"n\"\n[[slot]]\nname = \"a\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 5\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\nlanguage = \"hmn\"\npeak_only = false\n\
        [[topic]]\nid = \"cchc\"\nlabel = \"Cải cách hành chính\"\n[[topic]]\nid = \"thong-bao\"\nlabel = \"Thông báo\"\n";
    let config = parse(listed).unwrap();
    let ids: Vec<&str> = config.topics.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["cchc", "thong-bao"]);
    // No [[language]]: Vietnamese and the quotas' languages, by their known names.
    let languages: Vec<(&str, &str)> = config.languages.iter().map(|l| (l.id.as_str(), l.label.as_str())).collect();
    assert_eq!(languages, [("vi", "Tiếng Việt"), ("hmn", "Tiếng H'Mông")]);
    // A quota's topic the page could not offer is refused.
    let missing = "[station]\nid = \"s\"\nname = \"n\"\n[[slot]]\nname = \"a\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 5\n[[quota]]\ntopic = \"an-toan\"\nper = \"month\"\npeak_only = false\n\
        [[topic]]\nid = \"cchc\"\nlabel = \"Cải cách hành chính\"\n";
    let message = parse(missing).unwrap_err().to_string();
    assert!(message.contains("\"an-toan\"") && message.contains("[[topic]]"), "{message}");
}

/// Setting the real id after the package's example id aired is a configuration mistake (exit 2,
/// both ids named, the fix said), never a "damaged" log, and nothing is written under the new id.
#[test]
fn a_station_id_other_than_its_logs_is_a_config_error_and_the_log_stays_untouched() {
    use crate::helpers::{Device, of_kind};
    let station = crate::helpers::station(30, 1, &[]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("on air", std::time::Duration::from_secs(60), |e| !of_kind(e, "station_started", None).is_empty());
    daemon.stop();
    let before = station.events();
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(station.config_path(), config.replace("id = \"phu-thuy\"", "id = \"binh-an\"")).unwrap();
    for verb in [&["check-config"][..], &["airtime"], &["run"]] {
        let run = station.loa(verb);
        assert_eq!(run.code, 2, "{verb:?}: {}", run.stderr);
        let said = run.error_line();
        assert!(said.contains("\"binh-an\"") && said.contains("\"phu-thuy\"") && said.contains("data_dir"), "{said}");
        assert!(!said.contains("damaged"), "{said}");
    }
    std::fs::write(station.config_path(), config).unwrap();
    assert_eq!(station.events(), before, "nothing was written under the other id");
    assert_eq!(crate::helpers::verify(&station).code, 0);
}

#[test]
fn a_preload_file_that_is_not_there_is_refused_by_check_config() {
    let station = Station::with_config(&format!(
        "{MINIMAL_CONFIG}[[preload]]\nfile = \"nowhere.mp3\"\ntitle = \"Bản tin\"\ntopic = \"cchc\"\n"
    ));
    let run = station.loa(&["check-config"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.error_line().contains("preload[0].file") && run.stderr.contains("nowhere.mp3"), "{}", run.stderr);
}

/// A phone on the ward's Wi-Fi opens the pairing link: on a station listening on every address
/// it names the box's LAN address (or its name), never 0.0.0.0 or loopback; and `loa run` says
/// where the page is when it starts.
#[test]
fn the_pairing_link_and_the_start_log_name_an_address_a_phone_can_open() {
    use crate::helpers::{Device, of_kind};
    let station = crate::helpers::station(30, 1, &[]);
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    let lan = config.replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"\nallow_plain_lan = true");
    assert_ne!(lan, config);
    std::fs::write(station.config_path(), lan).unwrap();
    let paired = station.loa(&["token", "create", "--role", "operator", "--label", "Chị Lan", "--pair"]);
    assert_eq!(paired.code, 0, "{}", paired.stderr);
    let link = paired.stdout.lines().find(|l| l.contains("#pair=")).expect("a link").to_owned();
    assert!(link.contains("http://") && !link.contains("0.0.0.0") && !link.contains("127.0.0.1"), "{link}");
    let daemon = station.start(Device::Unpaced);
    station.wait_for("on air", std::time::Duration::from_secs(60), |e| !of_kind(e, "station_started", None).is_empty());
    daemon.stop();
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    let line = log.lines().find(|l| l.contains("HTTP API listening")).expect("logged");
    assert!(line.contains("page=http://") && !line.contains("page=http://0.0.0.0"), "{line}");
}

#[test]
fn a_key_with_no_value_says_so_rather_than_asking_for_quotes() {
    let text =
        "[station]\nid = \"s\"\nname = \"n\"\n[[slot]]\nname = \"a\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = \n";
    refused(text, 7, "slot[0].max_minutes", "no value after `=`");
}

#[test]
fn a_preload_with_a_topic_the_config_does_not_list_is_refused() {
    let text = format!(
        "[station]\nid = \"s\"\nname = \"n\"\n[[topic]]\nid = \"cchc\"\nlabel = \"Cải cách hành chính\"\n\
         [[preload]]\nfile = \"{}/cbr128_stereo_44k.mp3\"\ntitle = \"Bản tin\"\ntopic = \"cchcc\"\n",
        crate::helpers::FIXTURES
    );
    let message = parse(&text).unwrap_err().to_string();
    assert!(message.contains("preload[0].topic") && message.contains("cchc (Cải cách hành chính)"), "{message}");
}
