//! The configuration file as users see it: defaults, the example file, and the error messages
//! (key path and fix) of each kind of mistake.

use std::time::Duration;

use fuse_cdc_bridge::config::{
    Config, ConfigError, EventType, Operation, Param, PayloadFormat, Rule, TableName,
};

const MINIMAL: &str = r#"
[postgres]
url = "postgres://fuse_bridge:${DB_PASSWORD}@db.internal:5432/fuse"

[state]
dir = "/var/lib/fuse-cdc-bridge"

[[endpoints]]
name = "hr"
url = "https://hr.example.com/hooks"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "DB_PASSWORD" | "FUSE_BRIDGE_DB_PASSWORD" => Some("hunter2-db".to_owned()),
        "HR_WEBHOOK_SECRET" => Some("whsec_c2VjcmV0LXNpZ25pbmcta2V5".to_owned()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_str(text, &env)
}

/// Parses text that must fail, returning the error's text.
fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "expected {part:?} in error:\n{message}"
        );
    }
}

/// MINIMAL with `extra` appended to the end (inside the endpoint unless it opens a section).
fn minimal_plus(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

#[test]
fn minimal_config_gets_all_defaults() {
    let config = parse(MINIMAL).expect("minimal config is valid");
    assert_eq!(
        config.postgres.url.expose(),
        "postgres://fuse_bridge:hunter2-db@db.internal:5432/fuse"
    );
    assert_eq!(config.postgres.slot, "fuse_cdc_bridge");
    assert_eq!(config.postgres.publication, "fuse_cdc_bridge");
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9187");
    assert_eq!(config.outbox.max_pending, 1_000_000);
    assert_eq!(config.outbox.flush_interval, Duration::from_millis(5));

    let endpoint = &config.endpoints[0];
    assert_eq!(endpoint.events, EventType::ALL.to_vec());
    assert_eq!(endpoint.format, PayloadFormat::Form);
    assert!(endpoint.secret.is_none());
    assert_eq!(endpoint.timeout, Duration::from_secs(10));
    assert_eq!(endpoint.concurrency, 16);
    assert_eq!(endpoint.max_attempts, 20);
    assert_eq!(endpoint.max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(endpoint.backoff.initial, Duration::from_secs(1));
    assert_eq!(endpoint.backoff.max, Duration::from_secs(600));

    let rules = config.rules();
    let types: Vec<EventType> = rules.iter().map(|r| r.event_type).collect();
    assert_eq!(types, EventType::ALL.to_vec());
    for rule in rules {
        assert_eq!(*rule, Rule::default_for(rule.event_type));
    }
    let attendance = config.rule(EventType::EventAttendanceUpdated);
    assert_eq!(attendance.table, TableName::public("event_attendances"));
    assert_eq!(attendance.on, vec![Operation::Insert, Operation::Update]);
    let names: Vec<&str> = attendance.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["user_id", "event_id", "occurrence_id", "status"]);
    let becomes = attendance.becomes.as_ref().expect("attendance has becomes");
    assert_eq!(becomes.column, "status");
    assert_eq!(becomes.values, ["attended", "not_attended"]);
    let updated = config.rule(EventType::UserUpdated);
    assert_eq!(
        updated.changed.as_deref(),
        Some(
            &[
                "email",
                "first_name",
                "last_name",
                "job_title",
                "department",
                "locale"
            ]
            .map(String::from)[..]
        )
    );

    let tables: Vec<String> = config.tables().iter().map(|t| t.to_string()).collect();
    assert_eq!(
        tables,
        [
            "public.users",
            "public.learning_plans",
            "public.learning_plan_enrollments",
            "public.scorm_attempts",
            "public.event_attendances",
        ]
    );
}

#[test]
fn example_file_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let config = Config::load_with_env(path, &env).expect("config.example.toml is valid");
    assert_eq!(config.endpoints.len(), 2);
    assert_eq!(
        config.endpoints[0].events,
        [EventType::UserCreated, EventType::UserUpdated]
    );
    assert_eq!(
        config.endpoints[0].secret.as_ref().map(|s| s.expose()),
        Some("whsec_c2VjcmV0LXNpZ25pbmcta2V5")
    );
    // The example spells out the built-in rules.
    for rule in config.rules() {
        assert_eq!(*rule, Rule::default_for(rule.event_type));
    }
}

#[test]
fn file_errors_name_the_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let err = Config::load_with_env(path, &|_| None).expect_err("variables are unset");
    assert_contains(
        &err.to_string(),
        &[
            "config.example.toml: ",
            "postgres.url",
            "`FUSE_BRIDGE_DB_PASSWORD`",
        ],
    );
    let err = Config::load("/nonexistent/fuse.toml").expect_err("no such file");
    assert_contains(
        &err.to_string(),
        &["/nonexistent/fuse.toml", "check the path"],
    );
}

#[test]
fn rule_overrides_keep_omitted_keys() {
    let config = parse(&minimal_plus(
        r#"
[events."user.updated"]
table = "hr.people"

[events."scorm.completed"]
params = { learner = "learner_id", content_id = "content_id", attempt = "id" }
"#,
    ))
    .expect("valid");
    let updated = config.rule(EventType::UserUpdated);
    let default = Rule::default_for(EventType::UserUpdated);
    assert_eq!(updated.table.to_string(), "hr.people");
    assert_eq!(updated.changed, default.changed);
    assert_eq!(updated.params, default.params);
    assert_eq!(updated.on, default.on);
    assert_eq!(config.tables()[0].to_string(), "public.users");
    assert!(config.tables().iter().any(|t| t.to_string() == "hr.people"));

    // Order as written, not alphabetical.
    let scorm = config.rule(EventType::ScormCompleted);
    let params: Vec<(&str, &str)> = scorm
        .params
        .iter()
        .map(|Param { name, column }| (name.as_str(), column.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("learner", "learner_id"),
            ("content_id", "content_id"),
            ("attempt", "id")
        ]
    );
}

#[test]
fn empty_changed_drops_the_column_filter() {
    let config = parse(&minimal_plus("[events.\"user.updated\"]\nchanged = []")).expect("valid");
    assert_eq!(config.rule(EventType::UserUpdated).changed, None);
}

#[test]
fn debug_never_shows_secrets() {
    let text = MINIMAL.replace(
        "url = \"https://hr.example.com/hooks\"",
        "url = \"https://hr.example.com/hooks\"\nsecret = \"${HR_WEBHOOK_SECRET}\"",
    );
    let config = parse(&text).expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2-db"), "{debug}");
    assert!(!debug.contains("c2VjcmV0LXNpZ25pbmcta2V5"), "{debug}");
    assert!(debug.contains("fuse_bridge:***@db.internal"), "{debug}");
    assert_eq!(
        config.postgres.url.redacted(),
        "postgres://fuse_bridge:***@db.internal:5432/fuse"
    );

    let dsn = MINIMAL.replace(
        "postgres://fuse_bridge:${DB_PASSWORD}@db.internal:5432/fuse",
        "host=db dbname=fuse password=${DB_PASSWORD}",
    );
    let debug = format!("{:?}", parse(&dsn).expect("valid"));
    assert!(!debug.contains("hunter2-db"), "{debug}");
}

#[test]
fn errors_never_show_secrets() {
    // A password-bearing URL with a bad scheme, and a string where a table belongs.
    let bad_scheme = MINIMAL.replace("postgres://", "mysql://");
    let wrong_type = MINIMAL.replace(
        "[postgres]\nurl = \"postgres://fuse_bridge:${DB_PASSWORD}@db.internal:5432/fuse\"",
        "postgres = \"postgres://u:${DB_PASSWORD}@h/db\"",
    );
    for text in [bad_scheme, wrong_type] {
        let message = error_of(&text);
        assert!(!message.contains("hunter2-db"), "{message}");
    }
}

#[test]
fn missing_required_key() {
    let message = error_of(&MINIMAL.replace("dir = \"/var/lib/fuse-cdc-bridge\"", ""));
    assert_contains(
        &message,
        &[
            "state.dir",
            "is required but missing",
            "add it, e.g. `dir = ",
        ],
    );

    let message = error_of(&MINIMAL.replace("name = \"hr\"", ""));
    assert_contains(&message, &["endpoints[0].name", "is required but missing"]);
}

#[test]
fn missing_section() {
    let text = MINIMAL.replace("[state]\ndir = \"/var/lib/fuse-cdc-bridge\"", "");
    assert_contains(
        &error_of(&text),
        &["state: is required but missing", "`[state]`"],
    );
}

#[test]
fn no_endpoints() {
    let text = &MINIMAL[..MINIMAL.find("[[endpoints]]").unwrap_or(MINIMAL.len())];
    assert_contains(
        &error_of(text),
        &["endpoints: ", "add an `[[endpoints]]` section"],
    );
}

#[test]
fn unknown_key() {
    let message = error_of(&minimal_plus("concurency = 4"));
    assert_contains(
        &message,
        &[
            "endpoints[0].concurency",
            "unknown key `concurency`",
            "correct its spelling",
            "`concurrency`",
        ],
    );
    let message = error_of(&minimal_plus(
        "backoff = { initial = \"1s\", maximum = \"1m\" }",
    ));
    assert_contains(
        &message,
        &["endpoints[0].backoff.maximum", "unknown key `maximum`"],
    );
    let message = error_of(&minimal_plus("[events.\"user.created\"]\ntables = \"x\""));
    assert_contains(&message, &["events.\"user.created\".tables", "unknown key"]);
}

#[test]
fn wrong_type() {
    let message = error_of(&minimal_plus("concurrency = \"16\""));
    assert_contains(
        &message,
        &[
            "endpoints[0].concurrency",
            "wrong type",
            "write an integer here",
            "line 11, column 15",
        ],
    );
    let message = error_of(&minimal_plus("events = \"user.created\""));
    assert_contains(&message, &["endpoints[0].events", "write an array here"]);
}

#[test]
fn unset_env_var() {
    let text = minimal_plus("secret = \"${HOOK_SECRET}\"");
    assert_contains(
        &error_of(&text),
        &[
            "endpoints[0].secret",
            "`HOOK_SECRET` is not set",
            "set it in the bridge's environment",
        ],
    );
}

#[test]
fn env_escape_is_literal() {
    let config = parse(&minimal_plus("secret = \"$${NOT_A_VAR}\"")).expect("valid");
    assert_eq!(
        config.endpoints[0].secret.as_ref().map(|s| s.expose()),
        Some("${NOT_A_VAR}")
    );
}

#[test]
fn bad_duration() {
    let message = error_of(&minimal_plus("backoff = { initial = \"1sec\" }"));
    assert_contains(
        &message,
        &[
            "endpoints[0].backoff.initial",
            "unknown unit \"sec\"",
            "\"500ms\", \"10s\"",
        ],
    );
    let message = error_of(&minimal_plus("[outbox]\nflush_interval = \"5\""));
    assert_contains(
        &message,
        &["outbox.flush_interval", "has no unit", "e.g. \"500ms\""],
    );
}

#[test]
fn backoff_initial_above_max() {
    let message = error_of(&minimal_plus(
        "backoff = { initial = \"1h\", max = \"10m\" }",
    ));
    assert_contains(
        &message,
        &["endpoints[0].backoff.initial", "make initial at most max"],
    );
}

#[test]
fn bad_urls() {
    let message =
        error_of(&MINIMAL.replace("https://hr.example.com/hooks", "ftp://hr.example.com/"));
    assert_contains(
        &message,
        &["endpoints[0].url", "\"ftp\"", "http or https URL"],
    );

    let message = error_of(&MINIMAL.replace("https://hr.example.com/hooks", "not a url"));
    assert_contains(&message, &["endpoints[0].url", "is not a valid URL"]);

    let message = error_of(&MINIMAL.replace("postgres://", "mysql://"));
    assert_contains(
        &message,
        &["postgres.url", "\"mysql\"", "write a URL such as"],
    );

    let message = error_of(&MINIMAL.replace(
        "postgres://fuse_bridge:${DB_PASSWORD}@db.internal:5432/fuse",
        "db.internal",
    ));
    assert_contains(
        &message,
        &["postgres.url", "neither a postgres:// URL nor a key=value"],
    );

    let dsn = MINIMAL.replace(
        "postgres://fuse_bridge:${DB_PASSWORD}@db.internal:5432/fuse",
        "host=db.internal dbname=fuse",
    );
    assert!(parse(&dsn).is_ok());
}

#[test]
fn unknown_event_type() {
    let message = error_of(&minimal_plus("[events.\"foo.bar\"]\ntable = \"x\""));
    assert_contains(
        &message,
        &[
            "events.\"foo.bar\"",
            "unknown event type",
            "\"user.created\"",
            "\"event_attendance.updated\"",
        ],
    );
    let message = error_of(&minimal_plus(
        "events = [\"user.created\", \"user.deleted\"]",
    ));
    assert_contains(
        &message,
        &[
            "endpoints[0].events[1]",
            "\"user.deleted\"",
            "use one of \"user.created\"",
        ],
    );
}

#[test]
fn duplicate_endpoint_name() {
    let message = error_of(&minimal_plus(
        "[[endpoints]]\nname = \"hr\"\nurl = \"https://other.example.com/\"",
    ));
    assert_contains(
        &message,
        &[
            "endpoints[1].name",
            "already the name of endpoints[0]",
            "unique name",
        ],
    );
}

#[test]
fn zero_concurrency() {
    let message = error_of(&minimal_plus("concurrency = 0"));
    assert_contains(
        &message,
        &["endpoints[0].concurrency", "is 0", "at least 1"],
    );
    let message = error_of(&minimal_plus("max_attempts = -3"));
    assert_contains(&message, &["endpoints[0].max_attempts", "at least 1"]);
}

#[test]
fn bad_rule_values() {
    let cases = [
        (
            "on = [\"upsert\"]",
            "events.\"user.created\".on[0]",
            "\"insert\", \"update\" or \"delete\"",
        ),
        ("on = []", "events.\"user.created\".on", "at least one of"),
        (
            "params = {}",
            "events.\"user.created\".params",
            "map each parameter to a column",
        ),
        (
            "becomes = { column = \"s\", values = [] }",
            "events.\"user.created\".becomes.values",
            "list the value",
        ),
        (
            "table = \"a.b.c\"",
            "events.\"user.created\".table",
            "\"schema.table\"",
        ),
    ];
    for (line, key, fix) in cases {
        let message = error_of(&minimal_plus(&format!("[events.\"user.created\"]\n{line}")));
        assert_contains(&message, &[key, fix]);
    }
    let message = error_of(&minimal_plus(
        "[events.\"user.created\"]\nbecomes = { values = [\"x\"] }",
    ));
    assert_contains(
        &message,
        &["events.\"user.created\".becomes.column", "is required"],
    );
}

#[test]
fn bad_names_and_formats() {
    let message = error_of(&MINIMAL.replace("[state]", "slot = \"Fuse-Slot\"\n[state]"));
    assert_contains(
        &message,
        &["postgres.slot", "lowercase letters, digits and underscores"],
    );
    let message = error_of(&minimal_plus("format = \"xml\""));
    assert_contains(&message, &["endpoints[0].format", "\"form\"", "\"json\""]);
    let message = error_of(&MINIMAL.replace("name = \"hr\"", "name = \"\""));
    assert_contains(&message, &["endpoints[0].name", "is empty"]);
    let message = error_of(&minimal_plus("[http]\nlisten = \"localhost\""));
    assert_contains(&message, &["http.listen", "127.0.0.1:9187"]);
}

#[test]
fn syntax_error_has_position() {
    let message = error_of("[postgres]\nurl = \"postgres://u:hunter2-db@h/db\n");
    assert_contains(&message, &["line 2, column", "invalid TOML"]);
    assert!(!message.contains("hunter2-db"), "{message}");
}

/// Every key of the file, set to a wrong type and (where the type allows one) a wrong value: the
/// error names the key by its full path. `(where, line, key path, words the message must have)`;
/// `where` is "postgres", "state", "endpoint" or a section header to add.
#[test]
fn every_field_with_a_wrong_value_is_named() {
    let rule = "[events.\"learning_plan.completed\"]";
    let cases: &[(&str, &str, &str, &str)] = &[
        ("postgres", "url = \"\"", "postgres.url", "is empty"),
        ("postgres", "url = 5", "postgres.url", "string"),
        (
            "postgres",
            "url = \"mysql://u@h/d\"",
            "postgres.url",
            "postgres://",
        ),
        (
            "postgres",
            "slot = \"\"",
            "postgres.slot",
            "lowercase letters, digits and underscores",
        ),
        (
            "postgres",
            "slot = \"a-b\"",
            "postgres.slot",
            "lowercase letters, digits and underscores",
        ),
        ("postgres", "slot = 7", "postgres.slot", "string"),
        (
            "postgres",
            "publication = \"Bad Pub\"",
            "postgres.publication",
            "lowercase letters, digits and underscores",
        ),
        (
            "postgres",
            "publication = true",
            "postgres.publication",
            "string",
        ),
        ("state", "dir = \"\"", "state.dir", "directory"),
        ("state", "dir = 1", "state.dir", "string"),
        (
            "[http]",
            "listen = \"127.0.0.1:99999\"",
            "http.listen",
            "127.0.0.1:9187",
        ),
        ("[http]", "listen = 9187", "http.listen", "string"),
        (
            "[outbox]",
            "max_pending = 0",
            "outbox.max_pending",
            "at least 1",
        ),
        (
            "[outbox]",
            "max_pending = -1",
            "outbox.max_pending",
            "at least 1",
        ),
        (
            "[outbox]",
            "max_pending = \"many\"",
            "outbox.max_pending",
            "integer",
        ),
        (
            "[outbox]",
            "flush_interval = \"-5ms\"",
            "outbox.flush_interval",
            "a whole number and a unit",
        ),
        (
            "[outbox]",
            "flush_interval = 5",
            "outbox.flush_interval",
            "string",
        ),
        (
            "endpoint",
            "url = [\"https://x\"]",
            "endpoints[0].url",
            "string",
        ),
        (
            "endpoint",
            "events = [\"user.deleted\"]",
            "endpoints[0].events[0]",
            "\"user.created\"",
        ),
        (
            "endpoint",
            "events = []",
            "endpoints[0].events",
            "at least one",
        ),
        ("endpoint", "events = [1]", "endpoints[0].events", "string"),
        ("endpoint", "format = 1", "endpoints[0].format", "string"),
        (
            "endpoint",
            "secret = \"\"",
            "endpoints[0].secret",
            "set a secret",
        ),
        ("endpoint", "secret = 42", "endpoints[0].secret", "string"),
        (
            "endpoint",
            "timeout = \"0s\"",
            "endpoints[0].timeout",
            "is zero",
        ),
        (
            "endpoint",
            "timeout = \"ten seconds\"",
            "endpoints[0].timeout",
            "a whole number and a unit",
        ),
        ("endpoint", "timeout = 10", "endpoints[0].timeout", "string"),
        (
            "endpoint",
            "concurrency = 1.5",
            "endpoints[0].concurrency",
            "integer",
        ),
        (
            "endpoint",
            "concurrency = 5000000000",
            "endpoints[0].concurrency",
            "at least 1",
        ),
        (
            "endpoint",
            "max_attempts = 0",
            "endpoints[0].max_attempts",
            "at least 1",
        ),
        (
            "endpoint",
            "max_attempts = \"20\"",
            "endpoints[0].max_attempts",
            "integer",
        ),
        (
            "endpoint",
            "max_age = \"forever\"",
            "endpoints[0].max_age",
            "a whole number and a unit",
        ),
        (
            "endpoint",
            "max_age = \"0d\"",
            "endpoints[0].max_age",
            "is zero",
        ),
        (
            "endpoint",
            "backoff = \"fast\"",
            "endpoints[0].backoff",
            "table",
        ),
        (
            "endpoint",
            "backoff = { max = \"0s\" }",
            "endpoints[0].backoff.max",
            "is zero",
        ),
        (
            "endpoint",
            "backoff = { initial = 1 }",
            "endpoints[0].backoff.initial",
            "string",
        ),
        (
            "endpoint",
            "backoff = { initial = \"1s\", jitter = true }",
            "endpoints[0].backoff.jitter",
            "unknown key",
        ),
        (
            rule,
            "table = \"\"",
            "events.\"learning_plan.completed\".table",
            "\"schema.table\"",
        ),
        (
            rule,
            "table = 3",
            "events.\"learning_plan.completed\".table",
            "string",
        ),
        (
            rule,
            "on = \"insert\"",
            "events.\"learning_plan.completed\".on",
            "array",
        ),
        (
            rule,
            "changed = \"status\"",
            "events.\"learning_plan.completed\".changed",
            "array",
        ),
        (
            rule,
            "changed = [\"\"]",
            "events.\"learning_plan.completed\".changed",
            "empty",
        ),
        (
            rule,
            "becomes = { column = \"\", values = [\"x\"] }",
            "events.\"learning_plan.completed\".becomes.column",
            "empty",
        ),
        (
            rule,
            "becomes = { column = \"status\", values = \"completed\" }",
            "events.\"learning_plan.completed\".becomes.values",
            "array",
        ),
        (
            rule,
            "becomes = \"completed\"",
            "events.\"learning_plan.completed\".becomes",
            "table",
        ),
        (
            rule,
            "params = { user_id = \"\" }",
            "events.\"learning_plan.completed\".params.user_id",
            "empty",
        ),
        (
            rule,
            "params = { user_id = 1 }",
            "events.\"learning_plan.completed\".params.user_id",
            "string",
        ),
        (
            rule,
            "params = [\"user_id\"]",
            "events.\"learning_plan.completed\".params",
            "table",
        ),
    ];
    let mut failures = Vec::new();
    for (place, line, key, words) in cases {
        let text = match *place {
            "postgres" => MINIMAL.replace("[state]", &format!("{line}\n[state]")),
            "state" => MINIMAL.replace("dir = \"/var/lib/fuse-cdc-bridge\"", line),
            "endpoint" => minimal_plus(line),
            header => minimal_plus(&format!("{header}\n{line}")),
        };
        // A key given twice is a TOML error of its own: replace the one that is there.
        let text = match line.split_once(" = ") {
            Some(("url", _)) if *place == "postgres" => text.replace(
                "url = \"postgres://fuse_bridge:${DB_PASSWORD}@db.internal:5432/fuse\"\n",
                "",
            ),
            Some(("url", _)) if *place == "endpoint" => {
                text.replace("url = \"https://hr.example.com/hooks\"\n", "")
            }
            _ => text,
        };
        match parse(&text) {
            Ok(_) => failures.push(format!("{line}: accepted")),
            Err(e) => {
                let message = e.to_string();
                if !(message.contains(key) && message.contains(words)) {
                    failures.push(format!(
                        "{line}: expected {key:?} and {words:?} in: {message}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
