-- fuse-cdc-bridge: one-time database setup for the reference Fuse schema (sql/fuse_schema.sql).
--
-- For a DBA to run as a superuser, connected to the Fuse database:
--
--   psql -v ON_ERROR_STOP=1 -v bridge_password='…' -d fuse -f sql/setup.sql
--
-- It creates a least-privilege role for the bridge, so the bridge never needs a superuser, and
-- everything that role may not create itself. Running it again is harmless: it re-applies the
-- same state (and resets the password). Afterwards `fuse-cdc-bridge check` as fuse_bridge
-- reports no problem. Tables, publication and slot names match the config defaults; if your
-- config names others, edit them here too.

\set ON_ERROR_STOP on

-- The bridge's role: LOGIN to connect, REPLICATION to create and stream from a logical
-- replication slot. Not a superuser, and it owns nothing.
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fuse_bridge') AS bridge_role_missing
\gset
\if :bridge_role_missing
CREATE ROLE fuse_bridge;
\endif
ALTER ROLE fuse_bridge LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE
    PASSWORD :'bridge_password';

-- Read access to exactly the tables the rules watch, and nothing else. CONNECT is explicit for
-- databases that revoked it from PUBLIC.
GRANT CONNECT ON DATABASE :"DBNAME" TO fuse_bridge;
GRANT USAGE ON SCHEMA public TO fuse_bridge;
GRANT SELECT ON public.users, public.learning_plans, public.learning_plan_enrollments,
    public.scorm_attempts, public.event_attendances TO fuse_bridge;

-- The publication names the tables whose changes are streamed. Adding tables to it requires
-- owning them, which fuse_bridge does not, so it is created here. SET TABLE makes a re-run
-- converge on exactly these five.
SELECT NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'fuse_cdc_bridge')
    AS publication_missing
\gset
\if :publication_missing
CREATE PUBLICATION fuse_cdc_bridge FOR TABLE public.users, public.learning_plans,
    public.learning_plan_enrollments, public.scorm_attempts, public.event_attendances;
\else
ALTER PUBLICATION fuse_cdc_bridge SET TABLE public.users, public.learning_plans,
    public.learning_plan_enrollments, public.scorm_attempts, public.event_attendances;
ALTER PUBLICATION fuse_cdc_bridge SET (publish = 'insert, update, delete, truncate');
\endif

-- By default an UPDATE logs only the new row (and the old primary key when it changed). Rules
-- that compare old and new values need the whole old row:
--   users                     user.updated fires only when a profile column (`changed`) changed;
--   learning_plan_enrollments learning_plan.completed fires when status *becomes* completed;
--   scorm_attempts            scorm.completed fires when completion_status becomes completed;
--   event_attendances         event_attendance.updated fires when status becomes attended or
--                             not_attended.
-- Without it those rules cannot tell updates apart and fire on every update. The cost is more
-- WAL per update on these tables. ALTER TABLE takes a brief ACCESS EXCLUSIVE lock.
-- learning_plans needs nothing: its only rule fires on INSERT.
ALTER TABLE public.users REPLICA IDENTITY FULL;
ALTER TABLE public.learning_plan_enrollments REPLICA IDENTITY FULL;
ALTER TABLE public.scorm_attempts REPLICA IDENTITY FULL;
ALTER TABLE public.event_attendances REPLICA IDENTITY FULL;

-- The slot is where the bridge resumes: changes committed after it exists are kept for the
-- bridge, even before its first start. Until the bridge consumes it, the server keeps WAL for
-- it: if the bridge is not deployed soon, drop it with
--   SELECT pg_drop_replication_slot('fuse_cdc_bridge');
-- (fuse_bridge may also create it itself: `fuse-cdc-bridge setup`.)
SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'fuse_cdc_bridge')
    AS slot_missing
\gset
\if :slot_missing
SELECT slot_name FROM pg_create_logical_replication_slot('fuse_cdc_bridge', 'pgoutput');
\endif
