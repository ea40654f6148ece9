//! One round of Fuse activity, one transaction per step: a learner signs up and signs in, edits
//! their profile, gets enrolled in a new plan and completes it, completes a SCORM course and has
//! their attendance marked; then something different each round. All six event types fire in
//! every round, so even a short demo shows each.

use super::Fuse;
use crate::config::EventType;
use crate::demo::expect::Expected;
use crate::Error;

const STEPS: usize = 14;

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Katherine",
    "Donald",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Johnson",
];
const JOBS: &[(&str, &str)] = &[
    ("Analyst", "Finance"),
    ("Nurse", "Ward 4"),
    ("Engineer", "Platform"),
    ("Sales Lead", "EMEA"),
    ("Pharmacist", "Dispensary"),
];
const PLANS: &[&str] = &[
    "Fire Safety 2025",
    "Data Protection Essentials",
    "New Manager Onboarding",
    "Infection Control",
    "Anti-Bribery",
];

const BOOKKEEPING: &str = "bookkeeping updates";
const NO_EVENT: &str = "rows no event is about";

/// The rows the current round works on.
#[derive(Default)]
pub(super) struct Ids {
    round: usize,
    /// Plays the instructor who marks attendance.
    first_user: Option<i64>,
    user: i64,
    plan: i64,
    previous_plan: Option<i64>,
    enrolment: i64,
    attempt: i64,
    content: i64,
    attendance: i64,
    event: i64,
    occurrence: i64,
    attendance_status: &'static str,
}

impl Fuse {
    pub(super) async fn step(&mut self, n: usize) -> Result<(), Error> {
        self.ids.round = n / STEPS;
        self.begin().await?;
        match n % STEPS {
            0 => self.sign_up().await,
            1 => self.sign_in().await,
            2 => self.edit_profile().await,
            3 => self.create_plan().await,
            4 => self.enrol().await,
            5 => self.progress().await,
            6 => self.complete_plan().await,
            7 => self.launch_scorm().await,
            8 => self.save_scorm().await,
            9 => self.complete_scorm().await,
            10 => self.register().await,
            11 => {
                let status = match self.ids.round % 2 {
                    0 => "attended",
                    _ => "not_attended",
                };
                self.mark_attendance(status).await
            }
            12 => self.resave_completed().await,
            _ => self.something_else().await,
        }
    }

    async fn sign_up(&mut self) -> Result<(), Error> {
        let r = self.ids.round;
        let (first, last) = (FIRST[r % FIRST.len()], LAST[r % LAST.len()]);
        let email = format!(
            "{}.{}{r}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let (job, department) = JOBS[r % JOBS.len()];
        let sql = "INSERT INTO users (email, first_name, last_name, job_title, department) \
                   VALUES ($1, $2, $3, $4, $5) RETURNING id";
        let id = self
            .id(sql, &[&email, &first, &last, &job, &department])
            .await?;
        self.ids.user = id;
        self.ids.first_user.get_or_insert(id);
        self.commit(vec![user(EventType::UserCreated, id)]).await
    }

    async fn sign_in(&mut self) -> Result<(), Error> {
        let u = self.ids.user;
        let sql = "UPDATE users SET last_sign_in_at = now(), sign_in_count = sign_in_count + 1, \
                   updated_at = now() WHERE id = $1";
        self.exec(sql, &[&u]).await?;
        let detail = format!("user {u} signed in (last_sign_in_at, sign_in_count, updated_at)");
        self.quiet("COMMIT", BOOKKEEPING, detail).await
    }

    async fn edit_profile(&mut self) -> Result<(), Error> {
        let u = self.ids.user;
        let job = format!("Senior {}", JOBS[self.ids.round % JOBS.len()].0);
        let sql = "UPDATE users SET job_title = $2, updated_at = now() WHERE id = $1";
        self.exec(sql, &[&u, &job]).await?;
        self.commit(vec![user(EventType::UserUpdated, u)]).await
    }

    async fn create_plan(&mut self) -> Result<(), Error> {
        let title = PLANS[self.ids.round % PLANS.len()];
        let sql = "INSERT INTO learning_plans (title, description, created_by) \
                   VALUES ($1, 'Mandatory for all staff', $2) RETURNING id";
        let id = self.id(sql, &[&title, &self.ids.first_user]).await?;
        self.ids.previous_plan = Some(self.ids.plan).filter(|p| *p > 0);
        self.ids.plan = id;
        let expected = Expected::new(
            EventType::LearningPlanCreated,
            &[("learning_plan_id", id.to_string())],
        );
        self.commit(vec![expected]).await
    }

    async fn enrol(&mut self) -> Result<(), Error> {
        let (u, p) = (self.ids.user, self.ids.plan);
        let sql = "INSERT INTO learning_plan_enrollments (user_id, learning_plan_id, status) \
                   VALUES ($1, $2, 'in_progress') RETURNING id";
        self.ids.enrolment = self.id(sql, &[&u, &p]).await?;
        let detail = format!("user {u} enrolled in plan {p} (in_progress)");
        self.quiet("COMMIT", NO_EVENT, detail).await
    }

    async fn progress(&mut self) -> Result<(), Error> {
        let sql = "UPDATE learning_plan_enrollments SET progress_percent = 60, updated_at = now() \
                   WHERE id = $1";
        self.exec(sql, &[&self.ids.enrolment]).await?;
        let detail = format!(
            "user {} is 60% through plan {}",
            self.ids.user, self.ids.plan
        );
        self.quiet("COMMIT", BOOKKEEPING, detail).await
    }

    async fn complete_plan(&mut self) -> Result<(), Error> {
        let sql = "UPDATE learning_plan_enrollments SET status = 'completed', \
                   progress_percent = 100, completed_at = now(), updated_at = now() WHERE id = $1";
        self.exec(sql, &[&self.ids.enrolment]).await?;
        self.commit(vec![completed(self.ids.user, self.ids.plan)])
            .await
    }

    async fn launch_scorm(&mut self) -> Result<(), Error> {
        let (u, content) = (self.ids.user, 4200 + (self.ids.round % 5) as i64);
        let sql = "INSERT INTO scorm_attempts (user_id, content_id) VALUES ($1, $2) RETURNING id";
        self.ids.attempt = self.id(sql, &[&u, &content]).await?;
        self.ids.content = content;
        let detail = format!("user {u} launched SCORM content {content}");
        self.quiet("COMMIT", NO_EVENT, detail).await
    }

    async fn save_scorm(&mut self) -> Result<(), Error> {
        let sql = "UPDATE scorm_attempts SET suspend_data = 'page=7;quiz=started', \
                   updated_at = now() WHERE id = $1";
        self.exec(sql, &[&self.ids.attempt]).await?;
        let detail = format!(
            "user {} saved SCORM progress (still incomplete)",
            self.ids.user
        );
        self.quiet("COMMIT", BOOKKEEPING, detail).await
    }

    async fn complete_scorm(&mut self) -> Result<(), Error> {
        let sql = "UPDATE scorm_attempts SET completion_status = 'completed', \
                   success_status = 'passed', score_raw = 80 + id % 20, updated_at = now() \
                   WHERE id = $1";
        self.exec(sql, &[&self.ids.attempt]).await?;
        let params = [
            ("user_id", self.ids.user.to_string()),
            ("content_id", self.ids.content.to_string()),
        ];
        self.commit(vec![Expected::new(EventType::ScormCompleted, &params)])
            .await
    }

    async fn register(&mut self) -> Result<(), Error> {
        let r = self.ids.round as i64;
        let (u, event, occurrence) = (self.ids.user, 77 + r % 3, 7700 + r);
        let sql = "INSERT INTO event_attendances (user_id, event_id, occurrence_id) \
                   VALUES ($1, $2, $3) RETURNING id";
        self.ids.attendance = self.id(sql, &[&u, &event, &occurrence]).await?;
        (self.ids.event, self.ids.occurrence) = (event, occurrence);
        let detail = format!("user {u} registered for event {event}, occurrence {occurrence}");
        self.quiet("COMMIT", NO_EVENT, detail).await
    }

    async fn mark_attendance(&mut self, status: &'static str) -> Result<(), Error> {
        let sql = "UPDATE event_attendances SET status = $2, marked_by = $3, marked_at = now(), \
                   updated_at = now() WHERE id = $1";
        let marker = self.ids.first_user;
        self.exec(sql, &[&self.ids.attendance, &status, &marker])
            .await?;
        self.ids.attendance_status = status;
        let params = [
            ("user_id", self.ids.user.to_string()),
            ("event_id", self.ids.event.to_string()),
            ("occurrence_id", self.ids.occurrence.to_string()),
            ("status", status.to_string()),
        ];
        self.commit(vec![Expected::new(
            EventType::EventAttendanceUpdated,
            &params,
        )])
        .await
    }

    /// `completed` → `completed` is no transition: no second webhook.
    async fn resave_completed(&mut self) -> Result<(), Error> {
        let sql = "UPDATE learning_plan_enrollments SET status = 'completed', updated_at = now() \
                   WHERE id = $1";
        self.exec(sql, &[&self.ids.enrolment]).await?;
        let detail = format!("user {}'s completed enrolment saved again", self.ids.user);
        self.quiet("COMMIT", "re-saves of completed rows", detail)
            .await
    }

    /// Varies by round: a rolled-back sign-up, a corrected attendance, an imported completion
    /// (an enrolment inserted already completed).
    async fn something_else(&mut self) -> Result<(), Error> {
        let (r, u) = (self.ids.round, self.ids.user);
        match (r % 3, self.ids.previous_plan) {
            (1, _) => {
                let corrected = match self.ids.attendance_status {
                    "attended" => "not_attended",
                    _ => "attended",
                };
                self.mark_attendance(corrected).await
            }
            (2, Some(p)) => {
                let sql = "INSERT INTO learning_plan_enrollments \
                           (user_id, learning_plan_id, status, progress_percent, completed_at) \
                           VALUES ($1, $2, 'completed', 100, now())";
                self.exec(sql, &[&u, &p]).await?;
                self.commit(vec![completed(u, p)]).await
            }
            _ => {
                let email = format!("rolled.back{r}@example.com");
                let sql = "INSERT INTO users (email, first_name) VALUES ($1, 'Temp')";
                self.exec(sql, &[&email]).await?;
                let detail = format!("a sign-up ({email}) was rolled back");
                self.quiet("ROLLBACK", "rolled-back transactions", detail)
                    .await
            }
        }
    }
}

fn user(event_type: EventType, id: i64) -> Expected {
    Expected::new(event_type, &[("user_id", id.to_string())])
}

fn completed(user: i64, plan: i64) -> Expected {
    let params = [
        ("user_id", user.to_string()),
        ("learning_plan_id", plan.to_string()),
    ];
    Expected::new(EventType::LearningPlanCompleted, &params)
}
