//! Event types and the rules that recognise them in row changes, with the defaults that match
//! the reference schema (`sql/fuse_schema.sql`).

use std::fmt;
use std::str::FromStr;

/// The six Fuse webhook event types, in the order of the design's events table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    UserCreated,
    UserUpdated,
    LearningPlanCreated,
    LearningPlanCompleted,
    ScormCompleted,
    EventAttendanceUpdated,
}

impl EventType {
    /// All event types, in table order.
    pub const ALL: [EventType; 6] = [
        EventType::UserCreated,
        EventType::UserUpdated,
        EventType::LearningPlanCreated,
        EventType::LearningPlanCompleted,
        EventType::ScormCompleted,
        EventType::EventAttendanceUpdated,
    ];

    /// The name used on the wire and in the file, e.g. `"user.created"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "user.created",
            EventType::UserUpdated => "user.updated",
            EventType::LearningPlanCreated => "learning_plan.created",
            EventType::LearningPlanCompleted => "learning_plan.completed",
            EventType::ScormCompleted => "scorm.completed",
            EventType::EventAttendanceUpdated => "event_attendance.updated",
        }
    }

    /// The valid names, quoted and comma-separated, for error messages.
    pub(crate) fn valid_list() -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|t| format!("\"{}\"", t.as_str()))
            .collect();
        names.join(", ")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

/// A kind of row change a rule listens to (`on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
    /// Parses `"insert"`, `"update"` or `"delete"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "insert" => Some(Operation::Insert),
            "update" => Some(Operation::Update),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// A schema-qualified table name, as written (PostgreSQL case folding is not applied).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// A table in schema `public`.
    pub fn public(name: &str) -> Self {
        TableName {
            schema: "public".to_owned(),
            name: name.to_owned(),
        }
    }

    /// Parses `"schema.table"`, or `"table"` meaning `public.table`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => ("public", *name),
            [schema, name] => (*schema, *name),
            _ => return Err(format!("{text:?} has more than one `.`")),
        };
        for part in [schema, name] {
            if part.is_empty() {
                return Err(format!("{text:?} has an empty name part"));
            }
            if part.len() > 63 {
                return Err(format!("{part:?} is longer than 63 bytes"));
            }
            if part.chars().any(|c| c.is_whitespace() || c == '"') {
                return Err(format!("{text:?} contains whitespace or quotes"));
            }
        }
        Ok(TableName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A transition condition: the new row's `column` is one of `values` and the old row's was not
/// the same value (or there was no old row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Becomes {
    pub column: String,
    pub values: Vec<String>,
}

/// One webhook parameter: its name and the column its value is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub column: String,
}

/// The effective rule for one event type: which changes to which table produce it, and which
/// columns become its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub event_type: EventType,
    pub table: TableName,
    /// The operations that can produce the event; never empty.
    pub on: Vec<Operation>,
    /// For updates: fire only when one of these columns changed. `None`: any update.
    pub changed: Option<Vec<String>>,
    pub becomes: Option<Becomes>,
    /// Parameters in the order they are sent; never empty.
    pub params: Vec<Param>,
}

impl Rule {
    /// The built-in rule for `event_type`, matching the reference schema.
    pub fn default_for(event_type: EventType) -> Rule {
        use Operation::{Insert, Update};
        let (table, on, changed, becomes, params): (_, &[Operation], _, _, &[(&str, &str)]) =
            match event_type {
                EventType::UserCreated => ("users", &[Insert], None, None, &[("user_id", "id")]),
                EventType::UserUpdated => (
                    "users",
                    &[Update],
                    Some(
                        [
                            "email",
                            "first_name",
                            "last_name",
                            "job_title",
                            "department",
                            "locale",
                        ]
                        .as_slice(),
                    ),
                    None,
                    &[("user_id", "id")],
                ),
                EventType::LearningPlanCreated => (
                    "learning_plans",
                    &[Insert],
                    None,
                    None,
                    &[("learning_plan_id", "id")],
                ),
                EventType::LearningPlanCompleted => (
                    "learning_plan_enrollments",
                    &[Insert, Update],
                    None,
                    Some(("status", ["completed"].as_slice())),
                    &[
                        ("user_id", "user_id"),
                        ("learning_plan_id", "learning_plan_id"),
                    ],
                ),
                EventType::ScormCompleted => (
                    "scorm_attempts",
                    &[Insert, Update],
                    None,
                    Some(("completion_status", ["completed"].as_slice())),
                    &[("user_id", "user_id"), ("content_id", "content_id")],
                ),
                EventType::EventAttendanceUpdated => (
                    "event_attendances",
                    &[Insert, Update],
                    None,
                    Some(("status", ["attended", "not_attended"].as_slice())),
                    &[
                        ("user_id", "user_id"),
                        ("event_id", "event_id"),
                        ("occurrence_id", "occurrence_id"),
                        ("status", "status"),
                    ],
                ),
            };
        Rule {
            event_type,
            table: TableName::public(table),
            on: on.to_vec(),
            changed: changed.map(|cols| cols.iter().map(|c| (*c).to_owned()).collect()),
            becomes: becomes.map(|(column, values)| Becomes {
                column: column.to_owned(),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            }),
            params: params
                .iter()
                .map(|(name, column)| Param {
                    name: (*name).to_owned(),
                    column: (*column).to_owned(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
        }
        assert!("foo.bar".parse::<EventType>().is_err());
    }

    #[test]
    fn table_names() {
        assert_eq!(TableName::parse("users"), Ok(TableName::public("users")));
        assert_eq!(
            TableName::parse("hr.people").map(|t| t.to_string()),
            Ok("hr.people".to_owned())
        );
        for bad in ["", "a.b.c", ".x", "x.", "my table"] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
