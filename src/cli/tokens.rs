//! `loa token …`: API tokens and the one-time pairing codes a phone trades for one.

use super::*;

pub(super) fn run_token(
    command: TokenCommand,
    config: &Config,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (mut store, _) = open_station(config)?;
    match command {
        TokenCommand::Create { role, label, pair } => {
            let label = label.trim();
            if label.is_empty() {
                return Err(failed("--label: say who holds the token, e.g. \"Chị Lan, văn phòng phường\""));
            }
            if pair {
                return pair_token(&mut store, config, role, label, clock.now(), out);
            }
            let secret = token::generate().map_err(|e| failed(e.to_string()))?;
            let token = store.create_token(role, label, &token::digest(&secret), clock.now())?;
            eprintln!("token {} ({}, \"{}\") created; it is shown only now:", token.id, role.as_str(), token.label);
            out.write_all(format!("{secret}\n").as_bytes()).map_err(write_err)
        }
        TokenCommand::List { json } => {
            let tokens = store.tokens()?;
            if json {
                return write_json(out, &serde_json::json!({ "tokens": tokens }));
            }
            let mut text = format!("{:>4}  {:<9} {:<8} {:<25} label\n", "id", "role", "status", "created_at");
            for t in &tokens {
                let status = if t.revoked_at.is_some() { "revoked" } else { "active" };
                text.push_str(&format!(
                    "{:>4}  {:<9} {status:<8} {:<25} {}\n",
                    t.id,
                    t.role.as_str(),
                    t.created_at,
                    t.label
                ));
            }
            out.write_all(text.as_bytes()).map_err(write_err)
        }
        TokenCommand::Revoke { id } => {
            let token = store
                .revoke_token(id, clock.now())?
                .ok_or_else(|| failed(format!("there is no token {id}; `loa token list` shows the ids")))?;
            let line =
                format!("token {id} (\"{}\") revoked at {}\n", token.label, token.revoked_at.unwrap_or_default());
            out.write_all(line.as_bytes()).map_err(write_err)
        }
    }
}

/// How long a pairing code works.
pub(super) const PAIRING_VALID: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

pub(super) fn pair_token(
    store: &mut Store,
    config: &Config,
    role: Role,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let code = token::pairing_code().map_err(|e| failed(e.to_string()))?;
    let digest = token::digest(&token::normalise_code(&code));
    store.create_pairing(role, label, &digest, now, now + PAIRING_VALID)?;
    let link = format!("{}#pair={code}", config.http.page_url());
    let qr = qrcode::QrCode::new(link.as_bytes())
        .map(|qr| qr.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build())
        .unwrap_or_default();
    let expires = (now + PAIRING_VALID).with_timezone(&config.station.timezone).format("%H:%M");
    let text = format!(
        "Mã ghép nối: {code}\n(dùng một lần, đến {expires}; {} \"{label}\")\nTrên điện thoại: mở {link}\nhoặc quét mã:\n{qr}\n",
        if role == Role::Operator { "cán bộ đài" } else { "cấp huyện, chỉ xem" }
    );
    out.write_all(text.as_bytes()).map_err(write_err)
}
