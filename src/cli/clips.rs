//! `loa clip …`: the library from the command line, through the same ingest as the API.

use super::*;

pub(super) fn run_clip(
    command: ClipCommand,
    config: &Config,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match command {
        ClipCommand::Add { file, title, topic, lang, priority, valid_from, valid_until } => {
            let meta = ClipMeta { title, topic, language: lang, priority, valid_from, valid_until };
            meta.check()
                .and_then(|()| config.check_choices(&meta))
                .map_err(|e| failed(format!("--{}: {}", flag_name(e.field), e.message)))?;
            add_clip(&file, &meta, config, clock, out)
        }
        ClipCommand::List { json } => {
            let (store, _) = open_station(config)?;
            let clips = store.clips()?;
            if json { write_json(out, &serde_json::json!({ "clips": clips })) } else { write_clip_table(out, &clips) }
        }
        ClipCommand::Show { id, json } => {
            let (store, _) = open_station(config)?;
            let clip = store.clip(id)?.ok_or_else(|| no_such_clip(id))?;
            if json { write_json(out, &clip) } else { write_clip_details(out, &clip) }
        }
        ClipCommand::Retire { id } => {
            let (mut store, _) = open_station(config)?;
            let now = clock.now();
            if let Some(owed) = store.owed_bulletin(id, now.with_timezone(&config.station.timezone).date_naive())? {
                return Err(failed(format!("clip {id}: {}", owed.why_kept())));
            }
            let clip = store.retire_clip(id, now, None)?.ok_or_else(|| no_such_clip(id))?;
            let retired_at = clip.retired_at.as_deref().unwrap_or_default();
            let line = if retired_at == crate::store::timestamp(now) {
                format!("clip {id} \"{}\" retired at {retired_at}; it will not air again\n", clip.meta.title)
            } else {
                format!("clip {id} \"{}\" was already retired at {retired_at}\n", clip.meta.title)
            };
            out.write_all(line.as_bytes()).map_err(write_err)
        }
    }
}

pub(super) fn add_clip(
    file: &Path,
    meta: &ClipMeta,
    config: &Config,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut input = File::open(file).map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    let size = input.metadata().map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    if size.is_dir() {
        return Err(failed(format!("{} is a directory; give an MP3 file", file.display())));
    }
    let (mut store, library) = open_station(config)?;
    let mut staged = library.stage(size.len()).map_err(|e| match e.kind() {
        io::ErrorKind::StorageFull => failed(format!("{} was not added: {e}", file.display())),
        _ => failed(format!("cannot stage the upload in {}: {e}", config.station.data_dir.display())),
    })?;
    io::copy(&mut input, &mut staged)
        .map_err(|e| failed(format!("cannot copy {} into the library: {e}", file.display())))?;
    match library.admit(staged, meta, &mut store, clock.now()) {
        Ok(Inserted::New(clip)) => write_json(out, &clip),
        Ok(Inserted::Existing(clip)) => {
            eprintln!(
                "note: this audio is already in the library as clip {} \"{}\" (same SHA-256); nothing was added",
                clip.id, clip.meta.title
            );
            write_json(out, &clip)
        }
        Err(IngestError::Rejected(rejection)) => Err(failed(format!("{} was not added: {rejection}", file.display()))),
        Err(IngestError::Meta(e)) => Err(failed(format!("--{}: {}", flag_name(e.field), e.message))),
        Err(e) => Err(failed(format!("{} was not added: {e}", file.display()))),
    }
}

pub(super) fn flag_name(field: &str) -> String {
    match field {
        "language" => "lang".to_owned(),
        other => other.replace('_', "-"),
    }
}

pub(super) fn no_such_clip(id: i64) -> Failure {
    failed(format!("there is no clip {id}; `loa clip list` shows the ids"))
}

pub(super) fn validity(clip: &Clip) -> String {
    match (clip.meta.valid_from, clip.meta.valid_until) {
        (None, None) => "always".to_owned(),
        (from, until) => format!(
            "{}..{}",
            from.map(|d| d.to_string()).unwrap_or_default(),
            until.map(|d| d.to_string()).unwrap_or_default()
        ),
    }
}

pub(super) fn write_clip_table(out: &mut dyn Write, clips: &[Clip]) -> Result<(), Failure> {
    let mut text = format!(
        "{:>4}  {:<7}  {:>7}  {:>6}  {:<8} {:<5} {:<9} {:<22}  title\n",
        "id", "status", "length", "LUFS", "topic", "lang", "priority", "valid"
    );
    for clip in clips {
        let status = if clip.retired_at.is_some() { "retired" } else { "active" };
        let seconds = clip.audio.duration_ms as f64 / 1000.0;
        text.push_str(&format!(
            "{:>4}  {status:<7}  {:>6.1}s  {:>6.1}  {:<8} {:<5} {:<9} {:<22}  {}\n",
            clip.id,
            seconds,
            clip.audio.loudness_lufs,
            clip.meta.topic,
            clip.meta.language,
            clip.meta.priority.as_str(),
            validity(clip),
            clip.meta.title
        ));
    }
    if clips.is_empty() {
        text.push_str("(the library is empty; add a bulletin with `loa clip add FILE --title T --topic cchc`)\n");
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}

pub(super) fn write_clip_details(out: &mut dyn Write, clip: &Clip) -> Result<(), Failure> {
    let a = &clip.audio;
    let text = format!(
        "id          {}\ntitle       {}\ntopic       {}\nlanguage    {}\npriority    {}\nvalid       {}\nduration    {:.3} s\nformat      {} Hz, {} channel(s)\nloudness    {:.2} LUFS\npeak        {:.2} dBFS (true peak {:.2} dBTP)\nsize        {} bytes\nsha256      {}\ncreated_at  {}\nretired_at  {}\n",
        clip.id,
        clip.meta.title,
        clip.meta.topic,
        clip.meta.language,
        clip.meta.priority,
        validity(clip),
        a.duration_ms as f64 / 1000.0,
        a.sample_rate,
        a.channels,
        a.loudness_lufs,
        a.peak_dbfs,
        a.true_peak_dbfs,
        clip.size_bytes,
        clip.sha256,
        clip.created_at,
        clip.retired_at.as_deref().unwrap_or("-"),
    );
    out.write_all(text.as_bytes()).map_err(write_err)
}
