//! Request bodies: an event as `application/x-www-form-urlencoded` (what Fuse sends) or as JSON.
//! Pure: no I/O, the same event always gives the same bytes, so a retry sends what the first
//! attempt sent.

use crate::config::PayloadFormat;
use crate::event::Event;
use crate::pgoutput::time::pg_micros_to_rfc3339;

pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Why an event cannot be turned into a body. Retrying cannot help: the dispatcher
/// dead-letters the event with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The parameter's column was NULL (or its value was not in the change); sending an empty
    /// value would look like a real one to the receiver.
    #[error("parameter `{param}` has no value: column `{column}` is NULL in this change")]
    MissingValue { param: String, column: String },
    /// The commit time cannot be written as a date (only for JSON; PostgreSQL's `infinity`).
    #[error("commit time {0} (PostgreSQL microseconds) cannot be written as an RFC 3339 date")]
    BadTimestamp(i64),
}

/// The body for `event` in `format`, and its Content-Type.
pub fn body(event: &Event, format: PayloadFormat) -> Result<(Vec<u8>, &'static str), PayloadError> {
    let params = values(event)?;
    match format {
        PayloadFormat::Form => Ok((form(&params).into_bytes(), FORM_CONTENT_TYPE)),
        PayloadFormat::Json => Ok((json(event, &params)?.into_bytes(), JSON_CONTENT_TYPE)),
    }
}

/// One parameter with its value present.
struct Param<'a> {
    name: &'a str,
    text: &'a str,
    integer: bool,
}

fn values(event: &Event) -> Result<Vec<Param<'_>>, PayloadError> {
    event
        .params
        .iter()
        .map(|p| match &p.value {
            Some(text) => Ok(Param {
                name: &p.name,
                text,
                integer: p.integer,
            }),
            None => Err(PayloadError::MissingValue {
                param: p.name.clone(),
                column: p.column.clone(),
            }),
        })
        .collect()
}

/// WHATWG `application/x-www-form-urlencoded` (space as `+`), which is what browsers and Rails
/// (Fuse) produce and every form parser accepts.
fn form(params: &[Param<'_>]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for p in params {
        out.append_pair(p.name, p.text);
    }
    out.finish()
}

/// Written by hand rather than through `serde_json::Map` so the key order is the contract's
/// (`type`, `timestamp`, `data`, then parameters in rule order) without turning on
/// `preserve_order` for the whole crate.
fn json(event: &Event, params: &[Param<'_>]) -> Result<String, PayloadError> {
    let timestamp = pg_micros_to_rfc3339(event.commit_time)
        .ok_or(PayloadError::BadTimestamp(event.commit_time))?;
    let mut out = String::with_capacity(64 + 32 * params.len());
    out.push_str("{\"type\":");
    out.push_str(&quoted(event.event_type.as_str()));
    out.push_str(",\"timestamp\":");
    out.push_str(&quoted(&timestamp));
    out.push_str(",\"data\":{");
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quoted(p.name));
        out.push(':');
        // A value that does not fit an i64 (a numeric column, say) stays a string rather than
        // becoming a float that loses digits in the receiver's JSON parser.
        match p.text.parse::<i64>() {
            Ok(n) if p.integer => out.push_str(&n.to_string()),
            _ => out.push_str(&quoted(p.text)),
        }
    }
    out.push_str("}}");
    Ok(out)
}

/// A JSON string literal, escaped by serde_json.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventType;
    use crate::event::EventParam;

    /// 2024-05-06T07:08:09.123456Z in PostgreSQL microseconds.
    const COMMIT_TIME: i64 = 1_714_979_289_123_456 - 946_684_800_000_000;

    fn param(name: &str, value: Option<&str>, integer: bool) -> EventParam {
        EventParam {
            name: name.into(),
            value: value.map(Into::into),
            integer,
            column: format!("{name}_col"),
        }
    }

    fn event(event_type: EventType, params: Vec<EventParam>) -> Event {
        Event {
            event_type,
            params,
            commit_time: COMMIT_TIME,
            table: "public.t".into(),
        }
    }

    fn text(body: Vec<u8>) -> String {
        String::from_utf8(body).unwrap()
    }

    #[test]
    fn form_is_the_params_in_order() {
        let e = event(
            EventType::LearningPlanCompleted,
            vec![
                param("user_id", Some("42"), true),
                param("learning_plan_id", Some("7"), true),
            ],
        );
        let (body, content_type) = body(&e, PayloadFormat::Form).unwrap();
        assert_eq!(text(body), "user_id=42&learning_plan_id=7");
        assert_eq!(content_type, "application/x-www-form-urlencoded");
    }

    #[test]
    fn form_encodes_like_whatwg() {
        let e = event(
            EventType::EventAttendanceUpdated,
            vec![
                param("status", Some("not attended"), false),
                param("a&b=c", Some("1+1=2 & more"), false),
                param("unicode", Some("Zoë Ærø"), false),
                param("emoji", Some("🎓"), false),
                param("safe", Some("*-._~"), false),
                param("empty", Some(""), false),
            ],
        );
        let (body, _) = body(&e, PayloadFormat::Form).unwrap();
        assert_eq!(
            text(body),
            "status=not+attended\
             &a%26b%3Dc=1%2B1%3D2+%26+more\
             &unicode=Zo%C3%AB+%C3%86r%C3%B8\
             &emoji=%F0%9F%8E%93\
             &safe=*-._%7E\
             &empty="
        );
    }

    #[test]
    fn json_has_type_timestamp_and_data_in_order() {
        let e = event(
            EventType::EventAttendanceUpdated,
            vec![
                param("user_id", Some("42"), true),
                param("event_id", Some("-7"), true),
                param("occurrence_id", Some("9223372036854775808"), true),
                param("status", Some("attended"), false),
                param("zip", Some("01234"), false),
            ],
        );
        let (body, content_type) = body(&e, PayloadFormat::Json).unwrap();
        assert_eq!(
            text(body),
            r#"{"type":"event_attendance.updated","timestamp":"2024-05-06T07:08:09.123456Z","data":{"user_id":42,"event_id":-7,"occurrence_id":"9223372036854775808","status":"attended","zip":"01234"}}"#
        );
        assert_eq!(content_type, "application/json");
    }

    #[test]
    fn json_escapes_strings_and_keeps_non_numbers_as_strings() {
        let e = event(
            EventType::UserCreated,
            vec![
                param("user_id", Some("abc"), true),
                param("note", Some("a \"quote\"\\ \n🎓"), false),
            ],
        );
        let (body, _) = body(&e, PayloadFormat::Json).unwrap();
        let body = text(body);
        assert_eq!(
            body,
            "{\"type\":\"user.created\",\"timestamp\":\"2024-05-06T07:08:09.123456Z\",\
             \"data\":{\"user_id\":\"abc\",\"note\":\"a \\\"quote\\\"\\\\ \\n🎓\"}}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["data"]["note"], "a \"quote\"\\ \n🎓");
    }

    #[test]
    fn missing_value_names_param_and_column() {
        let e = event(
            EventType::ScormCompleted,
            vec![
                param("user_id", Some("1"), true),
                param("content_id", None, true),
            ],
        );
        for format in [PayloadFormat::Form, PayloadFormat::Json] {
            let err = body(&e, format).unwrap_err();
            assert_eq!(
                err,
                PayloadError::MissingValue {
                    param: "content_id".into(),
                    column: "content_id_col".into(),
                }
            );
            assert_eq!(
                err.to_string(),
                "parameter `content_id` has no value: column `content_id_col` is NULL in this change"
            );
        }
    }

    #[test]
    fn json_rejects_infinite_commit_time() {
        let mut e = event(
            EventType::UserCreated,
            vec![param("user_id", Some("1"), true)],
        );
        e.commit_time = i64::MAX;
        assert_eq!(
            body(&e, PayloadFormat::Json).unwrap_err(),
            PayloadError::BadTimestamp(i64::MAX)
        );
        // The form body has no timestamp, so it does not care.
        assert!(body(&e, PayloadFormat::Form).is_ok());
    }
}
