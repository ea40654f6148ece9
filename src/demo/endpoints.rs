//! The two customer systems the demo pretends to be, and the bridge configuration that points at
//! them, written as TOML text so the demo exercises the same parsing and defaults as `run`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use base64::Engine;
use rand::RngCore;

use crate::config::{EventType, PayloadFormat};
use crate::Error;

/// One `[[endpoints]]` entry of the demo, with the secret the receiver verifies against.
pub struct DemoEndpoint {
    pub name: &'static str,
    pub events: Vec<EventType>,
    pub format: PayloadFormat,
    pub secret: String,
}

impl DemoEndpoint {
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    pub fn format_name(&self) -> &'static str {
        match self.format {
            PayloadFormat::Form => "form",
            PayloadFormat::Json => "json",
        }
    }

    pub fn wants(&self, event_type: EventType) -> bool {
        self.events.contains(&event_type)
    }
}

/// An HR system on Fuse's own form format with a Standard Webhooks `whsec_` secret, and an LMS
/// that takes everything as JSON with a plain shared secret: both formats, both kinds of secret.
pub fn demo_endpoints() -> Vec<DemoEndpoint> {
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    let whsec = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let mut raw = [0u8; 12];
    rand::rng().fill_bytes(&mut raw);
    let plain: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        DemoEndpoint {
            name: "hr-system",
            events: vec![EventType::UserCreated, EventType::UserUpdated],
            format: PayloadFormat::Form,
            secret: whsec,
        },
        DemoEndpoint {
            name: "lms",
            events: EventType::ALL.to_vec(),
            format: PayloadFormat::Json,
            secret: format!("lms-shared-{plain}"),
        },
    ]
}

/// The bridge's configuration for this demo.
pub fn config_text(
    postgres_url: &str,
    state_dir: &Path,
    http_listen: SocketAddr,
    receiver: SocketAddr,
    endpoints: &[DemoEndpoint],
) -> String {
    let mut text = format!(
        "[postgres]\nurl = {}\n\n[state]\ndir = {}\n\n[http]\nlisten = {}\n",
        quote(postgres_url),
        quote(&state_dir.to_string_lossy()),
        quote(&http_listen.to_string()),
    );
    for e in endpoints {
        let events: Vec<String> = e.events.iter().map(|t| quote(t.as_str())).collect();
        let format = e.format_name();
        let _ = write!(
            text,
            "\n[[endpoints]]\nname = {}\nurl = {}\nevents = [{}]\nformat = \"{format}\"\n\
             secret = {}\n",
            quote(e.name),
            quote(&format!("http://{receiver}{}", e.path())),
            events.join(", "),
            quote(&e.secret),
        );
    }
    text
}

/// A loopback port nobody listens on now. `[http].listen` needs a fixed address, and a fixed
/// well-known port could clash with a bridge already running on this machine.
pub fn free_loopback_addr() -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("finding a free port for [http].listen", e))?;
    listener
        .local_addr()
        .map_err(|e| Error::io("finding a free port for [http].listen", e))
}

/// A TOML basic string. Temp paths may hold backslashes or quotes on odd systems.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_demo_config_parses_with_both_endpoints() {
        let endpoints = demo_endpoints();
        let text = config_text(
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            Path::new("/tmp/odd \"dir\\state"),
            "127.0.0.1:9999".parse().unwrap(),
            "127.0.0.1:8888".parse().unwrap(),
            &endpoints,
        );
        let config = Config::parse_str(&text, &|_| None).unwrap();
        assert_eq!(config.state.dir, Path::new("/tmp/odd \"dir\\state"));
        assert_eq!(config.endpoints.len(), 2);
        assert_eq!(config.endpoints[0].format, PayloadFormat::Form);
        assert_eq!(config.endpoints[1].events, EventType::ALL.to_vec());
        assert_eq!(
            config.endpoints[1].url.as_str(),
            "http://127.0.0.1:8888/lms"
        );
    }
}
