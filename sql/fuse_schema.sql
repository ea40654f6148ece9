-- The reference Fuse schema: the tables fuse-cdc-bridge's default rules describe.
-- A real Fuse database may name things differently; every table, column and value the rules use
-- is a setting in the TOML file (see config.example.toml).

CREATE TABLE IF NOT EXISTS users (
    id               bigserial PRIMARY KEY,
    email            text NOT NULL UNIQUE,
    first_name       text,
    last_name        text,
    job_title        text,
    department       text,
    locale           text NOT NULL DEFAULT 'en',
    avatar_url       text,
    bio              text,
    -- bookkeeping columns: changes to these are not profile changes
    sign_in_count    integer NOT NULL DEFAULT 0,
    last_sign_in_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS learning_plans (
    id           bigserial PRIMARY KEY,
    title        text NOT NULL,
    description  text,
    created_by   bigint REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS learning_plan_enrollments (
    id                bigserial PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id),
    learning_plan_id  bigint NOT NULL REFERENCES learning_plans (id),
    status            text NOT NULL DEFAULT 'not_started'
                      CHECK (status IN ('not_started', 'in_progress', 'completed')),
    progress_percent  integer NOT NULL DEFAULT 0,
    completed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, learning_plan_id)
);

CREATE TABLE IF NOT EXISTS scorm_attempts (
    id                 bigserial PRIMARY KEY,
    user_id            bigint NOT NULL REFERENCES users (id),
    content_id         bigint NOT NULL,
    attempt_number     integer NOT NULL DEFAULT 1,
    completion_status  text NOT NULL DEFAULT 'incomplete'
                       CHECK (completion_status IN ('not_attempted', 'incomplete', 'completed')),
    success_status     text CHECK (success_status IN ('passed', 'failed', 'unknown')),
    score_raw          numeric(6, 2),
    suspend_data       text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS event_attendances (
    id             bigserial PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users (id),
    event_id       bigint NOT NULL,
    occurrence_id  bigint NOT NULL,
    status         text NOT NULL DEFAULT 'registered'
                   CHECK (status IN ('registered', 'attended', 'not_attended', 'cancelled')),
    marked_by      bigint REFERENCES users (id),
    marked_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, occurrence_id)
);
